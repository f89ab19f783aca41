import type { PoolConfig } from '../../config/schema.js';
import type { FailureReason } from '../../errors.js';
import type { ArgView } from '../codec.js';
import type { Codec, PoolEnv } from '../registry.js';
import { ClientAuth } from './client-auth.js';
import { CLIENT_ID_REQUEST, parseIntegerReply } from './client-commands.js';
import { RedisSessionRules } from './session-rules.js';
import { forEachKey, requestSpec, selectIndex } from './commands.js';
import { CommandPolicy } from './policy.js';
import { mergeReplies, splitRequest } from './fanout.js';
import { ClusterClassifier, clusterMerge } from './cluster-keyspace.js';
import { SlotOrder } from './scan-cursor.js';
import type { CommandSpec } from './commands.js';
import { RespRequestDecoder, RespResponseDecoder, encodeCommand, encodeError } from './resp.js';

/**
 * Error replies built once per text. Texts can quote client bytes (a command name, cut at
 * MAX_NAME_BYTES), so the cache is bounded by bytes as well as entries, and a long text is
 * never kept.
 */
const errorReplies = new Map<string, Buffer>();
const ERROR_CACHE_MAX_ENTRIES = 4096;
const ERROR_CACHE_MAX_TEXT = 256;
const ERROR_CACHE_MAX_BYTES = 256 * 1024;
let errorRepliesBytes = 0;
/** Longest message in an error reply; the rest is cut (a message may quote a client's bytes). */
const MAX_ERROR_MESSAGE = 512;
const BUSY = Buffer.from('-BUSY');
const LOADING = Buffer.from('-LOADING');
/** Lets a Redis Cluster replica answer reads of its primary's slots on this connection. */
const READONLY_REQUEST = encodeCommand(['READONLY']);

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** Redis always has a heartbeat (PING) and an error reply. */
type RedisCodec = { readonly heartbeatRequest: Buffer; errorReply(reason: FailureReason, message: string): Buffer } & Codec;

/** Redis over RESP2/RESP3: the request and response framing in resp.ts, the command tables in commands.ts. */
export const redisCodec: RedisCodec = {
  protocol: 'redis',
  sessionKind: 'requests',
  requestDecoder: (sink, maxRequestBytes) => new RespRequestDecoder(sink, { maxRequestBytes }),
  responseDecoder: (sink) => new RespResponseDecoder(sink),
  sessionRules: () => new RedisSessionRules(null),
  classify: (bytes: Buffer, args: ArgView) => requestSpec(bytes, args),
  forPool(config: PoolConfig, env: PoolEnv): Codec {
    // Built once per pool: classify then refuses what the pool's command policy denies, and each
    // session's rules check client_auth.
    const policy = new CommandPolicy(config.name, config.commands);
    const auth = config.clientAuth === null ? null : new ClientAuth(config.clientAuth, { clock: env.clock, log: env.log, pool: config.name });
    // A cluster pool that reads from replicas: every node connection (and every reset of an
    // exclusive one: RESET turns it off) is READONLY, after AUTH and before the readiness PING.
    // Harmless on a primary, and a primary demoted by a failover keeps serving reads as a replica.
    const readOnly = config.routing === 'cluster' && config.cluster.readFrom !== 'primary';
    const init = readOnly ? { initRequests: (username: string | null, password: string | null, db: number) => [...redisCodec.initRequests(username, password, db), READONLY_REQUEST] } : {};
    const classify = (bytes: Buffer, args: ArgView): CommandSpec =>
      policy.apply(requestSpec(bytes, args), bytes, args);
    const slotOwner = env.slotOwner;
    if (slotOwner === undefined) return { ...redisCodec, ...init, sessionRules: () => new RedisSessionRules(auth), classify };
    // A cluster pool: keyless and keyspace-wide commands as its keyspace table says (cluster-keyspace.ts).
    const cluster = new ClusterClassifier();
    const starts = new SlotOrder(slotOwner);
    const random = (): number => env.clock.random();
    return {
      ...redisCodec,
      ...init,
      sessionRules: () => new RedisSessionRules(auth, starts),
      classify: (bytes: Buffer, args: ArgView) => cluster.apply(classify(bytes, args)),
      mergeReplies: (spec, _request, keyCount, parts) => mergeReplies(spec, keyCount, parts, redisCodec.errorReply, clusterMerge(spec), random),
    };
  },
  forEachKey: (spec, bytes, args, visit) => forEachKey(spec, bytes, args.starts, args.ends, args.count, visit),
  splitRequest,
  mergeReplies: (spec, _request, keyCount, parts) => mergeReplies(spec, keyCount, parts, redisCodec.errorReply),
  selectIndex: (bytes, args) => selectIndex(bytes, args.starts, args.ends, args.count),
  encodeSelect: (db) => encodeCommand(['SELECT', String(db)]),
  initRequests(username, password, db) {
    const out: Buffer[] = [];
    if (password !== null) out.push(encodeCommand(username === null ? ['AUTH', password] : ['AUTH', username, password]));
    if (db !== 0) out.push(encodeCommand(['SELECT', String(db)]));
    return out;
  },
  resetRequest: encodeCommand(['RESET']),
  identifyRequest: CLIENT_ID_REQUEST,
  parseIdentity: parseIntegerReply,
  heartbeatRequest: encodeCommand(['PING']),
  okReply: Buffer.from('+OK\r\n'),
  isErrorResponse: (bytes) => bytes[0] === 0x2d /* - */ || bytes[0] === 0x21 /* ! */,
  isBusyResponse: (bytes) => startsWith(bytes, BUSY) || startsWith(bytes, LOADING),
  isPush: (bytes) => bytes[0] === 0x3e /* > */,
  errorReply(reason: FailureReason, message: string): Buffer {
    // Most failures repeat the same text (one pool, one reason): build each reply once.
    const cut = message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}…` : message;
    const text = `ERR poolside ${reason} ${cut}`;
    let reply = errorReplies.get(text);
    if (reply === undefined) {
      reply = encodeError(text);
      const cost = text.length + reply.length;
      if (text.length <= ERROR_CACHE_MAX_TEXT && errorReplies.size < ERROR_CACHE_MAX_ENTRIES && errorRepliesBytes + cost <= ERROR_CACHE_MAX_BYTES) {
        errorReplies.set(text, reply);
        errorRepliesBytes += cost;
      }
    }
    return reply;
  },
};
