import type { FailureReason } from '../errors.js';
import type { ArgView } from './codec.js';
import type { Codec } from './registry.js';
import { commandSpec, forEachKey, selectIndex } from './redis-commands.js';
import { RespRequestDecoder, RespResponseDecoder, commandName, encodeCommand, encodeError } from './resp.js';

const errorReplies = new Map<string, Buffer>();
const BUSY = Buffer.from('-BUSY');
const LOADING = Buffer.from('-LOADING');

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** Redis over RESP2/RESP3: the request and response framing in resp.ts, the command tables in redis-commands.ts. */
export const redisCodec: Codec = {
  protocol: 'redis',
  requestDecoder: (sink, maxRequestBytes) => new RespRequestDecoder(sink, { maxRequestBytes }),
  responseDecoder: (sink) => new RespResponseDecoder(sink),
  classify: (bytes: Buffer, args: ArgView) =>
    commandSpec(commandName(bytes, args), bytes, args.starts, args.ends, args.count),
  forEachKey: (spec, bytes, args, visit) => forEachKey(spec, bytes, args.starts, args.ends, args.count, visit),
  selectIndex: (bytes, args) => selectIndex(bytes, args.starts, args.ends, args.count),
  encodeSelect: (db) => encodeCommand(['SELECT', String(db)]),
  initRequests(username, password, db) {
    const out: Buffer[] = [];
    if (password !== null) out.push(encodeCommand(username === null ? ['AUTH', password] : ['AUTH', username, password]));
    if (db !== 0) out.push(encodeCommand(['SELECT', String(db)]));
    return out;
  },
  resetRequest: encodeCommand(['RESET']),
  heartbeatRequest: encodeCommand(['PING']),
  okReply: Buffer.from('+OK\r\n'),
  isErrorResponse: (bytes) => bytes[0] === 0x2d /* - */ || bytes[0] === 0x21 /* ! */,
  isBusyResponse: (bytes) => startsWith(bytes, BUSY) || startsWith(bytes, LOADING),
  isPush: (bytes) => bytes[0] === 0x3e /* > */,
  errorReply(reason: FailureReason, message: string): Buffer {
    // Most failures repeat the same text (one pool, one reason): build each reply once.
    const text = `ERR poolside ${reason} ${message}`;
    let reply = errorReplies.get(text);
    if (reply === undefined) {
      reply = encodeError(text);
      if (errorReplies.size < 4096) errorReplies.set(text, reply);
    }
    return reply;
  },
};
