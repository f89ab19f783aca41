/**
 * memcached's text and meta protocols behind the codec seam: request framing in
 * request-decoder.ts, response framing (by what the request expects) in response-decoder.ts, the
 * command table in commands.ts, noreply/quiet and local answers in session-rules.ts.
 */
import type { PoolConfig } from '../../config/schema.js';
import { DEFAULTS } from '../../config/schema.js';
import type { FailureReason } from '../../errors.js';
import type { ArgView, CommandSpec } from '../codec.js';
import type { Codec } from '../registry.js';
import { ClientRequestDecoder, classifyBinary, isBinaryRequest } from './binary-codec.js';
import { commandOf, lookup } from './commands.js';
import { mergeReplies, splitRequest } from './fanout.js';
import { McRequestDecoder } from './request-decoder.js';
import { isErrorLine, McResponseDecoder } from './response-decoder.js';
import { firstFlag, McSessionRules, metaFlag } from './session-rules.js';

/** Longest message in an error reply; the rest is cut (a message may quote a client's bytes). */
const MAX_ERROR_MESSAGE = 512;
const EMPTY = Buffer.alloc(0);
const B = 0x62;

const errorReplies = new Map<string, Buffer>();
const ERROR_CACHE_MAX_ENTRIES = 1024;

/** The keys of a request, as the server will read them: base64 keys (meta `b` flag) decoded. */
function forEachKey(spec: CommandSpec, bytes: Buffer, args: ArgView, visit: (start: number, end: number, source?: Buffer) => void): number {
  const keys = spec.keys;
  if (keys.kind !== 'range') return 0;
  const { starts, ends, count } = args;
  const command = commandOf(spec);
  const kind = command.kind;
  if (kind === 'mg' || kind === 'ms' || kind === 'md' || kind === 'ma' || kind === 'me') {
    if (count < 2) return 0;
    const base64 = kind === 'me' ? count > 2 && bytes[starts[2]] === B && ends[2] - starts[2] === 1 : metaFlag(bytes, args, firstFlag(kind), B).kind !== 'none';
    if (base64) {
      const decoded = Buffer.from(bytes.toString('latin1', starts[1], ends[1]), 'base64');
      visit(0, decoded.length, decoded);
    } else {
      visit(starts[1], ends[1]);
    }
    return 1;
  }
  const last = keys.last < 0 ? count + keys.last : Math.min(keys.last, count - 1);
  let n = 0;
  for (let i = keys.first; i <= last; i += keys.step) {
    visit(starts[i], ends[i]);
    n++;
  }
  return n;
}

function decoderFor(maxItemBytes: number): Codec['requestDecoder'] {
  // Text or binary, as the client's first byte says (binary-codec.ts).
  return (sink, maxRequestBytes) => new ClientRequestDecoder(sink, () => new McRequestDecoder(sink, { maxRequestBytes, maxItemBytes }), maxItemBytes);
}

/** memcached always has an error reply (a SERVER_ERROR line): callers here may rely on it. */
type MemcachedCodec = { errorReply(reason: FailureReason, message: string): Buffer } & Codec;

export const memcachedCodec: MemcachedCodec = {
  protocol: 'memcached',
  sessionKind: 'requests',
  requestDecoder: decoderFor(DEFAULTS.pool.maxItemBytes),
  responseDecoder: (sink) => new McResponseDecoder(sink),
  sessionRules: () => new McSessionRules(),
  classify: (bytes: Buffer, args: ArgView) => (isBinaryRequest(bytes, args) ? classifyBinary(bytes) : lookup(bytes, args.starts, args.ends, args.count).spec),
  forPool(config: PoolConfig): Codec {
    return { ...memcachedCodec, requestDecoder: decoderFor(config.maxItemBytes) };
  },
  forEachKey,
  splitRequest,
  mergeReplies: (spec, request, keyCount, parts) => mergeReplies(spec, request, keyCount, parts, memcachedCodec.errorReply),
  selectIndex: () => null,
  encodeSelect: () => {
    throw new Error('memcached has no databases');
  },
  // No authentication in the text protocol, no databases.
  initRequests: () => [],
  // A memcached connection carries no state a client could leave on it (noreply and quiet never
  // reach the server): `mn` only checks that the connection still answers in order.
  resetRequest: Buffer.from('mn\r\n'),
  identifyRequest: null,
  parseIdentity: () => null,
  // Every memcached version answers `version` (meta `mn` needs 1.6).
  heartbeatRequest: Buffer.from('version\r\n'),
  // quit closes the client without a word.
  okReply: EMPTY,
  isErrorResponse: isErrorLine,
  isBusyResponse: () => false,
  isPush: () => false,
  errorReply(reason: FailureReason, message: string): Buffer {
    // One line: no CR or LF from a quoted request may end it early.
    const cut = message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}…` : message;
    const text = `SERVER_ERROR poolside ${reason} ${cut}`.replace(/[\r\n]+/g, ' ');
    let reply = errorReplies.get(text);
    if (reply === undefined) {
      reply = Buffer.from(`${text}\r\n`, 'utf8');
      if (errorReplies.size < ERROR_CACHE_MAX_ENTRIES && text.length <= 256) errorReplies.set(text, reply);
    }
    return reply;
  },
};
