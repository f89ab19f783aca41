import type { PoolConfig, Protocol } from '../config/schema.js';
import type { FailureReason } from '../errors.js';
import type { ArgView, RequestDecoder, RequestSink, ResponseDecoder, ResponseSink } from './codec.js';
import { framedCodec } from './framed/codec.js';
import { memcachedCodec } from './memcached/codec.js';
import { redisCodec } from './redis/codec.js';
import { tcpCodec } from './tcp/codec.js';
import type { CommandSpec, FanoutPart } from './codec.js';
import type { SessionRules } from './session-rules.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/log.js';

/**
 * Everything protocol-specific that the session, the connection and the pool need, behind one
 * interface. A new protocol is one object implementing this, registered below; nothing else in
 * poolside switches on the protocol name.
 */
/** What a pool's codec may use: the pool's clock and logger (rate-limited warnings). */
export interface PoolEnv {
  clock: Clock;
  log: Logger;
  /**
   * A cluster pool's slot map, read when a request needs it (its topology is built after the
   * codec): the node that owns `slot` now, compared by identity only, or null. Absent on other pools.
   */
  slotOwner?: (slot: number) => object | null;
}

/**
 * How a protocol's clients are served: `requests`: framed, classified and multiplexed over shared
 * connections (session/client-session.ts); `relay`: raw bytes both ways over one exclusive
 * connection per client for its whole life (session/relay-session.ts; pool/exclusive-pool.ts keeps
 * the warm connections).
 */
export type SessionKind = 'requests' | 'relay';

export interface Codec {
  readonly protocol: Protocol;
  readonly sessionKind: SessionKind;
  requestDecoder(sink: RequestSink, maxRequestBytes: number): RequestDecoder;
  responseDecoder(sink: ResponseSink): ResponseDecoder;
  /** The protocol's rules for one new session (session-rules.ts). Only on a pool's codec (forPool). */
  sessionRules(): SessionRules;
  /** How the request uses connections, where its keys are, whether it may be retried. */
  classify(bytes: Buffer, args: ArgView): CommandSpec;
  /**
   * This codec bound to one pool's settings (its command policy: `classify` then refuses what the
   * pool denies, with use `denied`). Called once when the pool is built, never per request.
   */
  forPool(config: PoolConfig, env: PoolEnv): Codec;
  /**
   * Calls visit for each key's byte range in `bytes` (or in `source`, for a key the request carries
   * encoded, such as a memcached base64 key, decoded); returns how many keys there were.
   */
  forEachKey(spec: CommandSpec, bytes: Buffer, args: ArgView, visit: (start: number, end: number, source?: Buffer) => void): number;
  /**
   * For a `spread: 'keys'` request whose keys map to several servers: one request per group of
   * its keys, each carrying only those keys (and what belongs to each, MSET's value), in the order
   * given. `groups` holds key indices in forEachKey order, ascending within a group. Called while
   * `args` is valid (inside onRequest).
   */
  splitRequest(spec: CommandSpec, bytes: Buffer, args: ArgView, groups: readonly (readonly number[])[]): Buffer[];
  /**
   * The one reply the client gets for a request that went to several servers (Spread), from its
   * parts in the order they were made. `request`: the client's request as it was split or
   * broadcast (for a codec whose replies name their keys: memcached's `VALUE key …`); `keyCount`:
   * how many keys it had. A failed part is the codec's to judge: an error for the whole, or what
   * the protocol allows without it; never a reply torn between the two.
   */
  mergeReplies(spec: CommandSpec, request: Buffer, keyCount: number, parts: readonly FanoutPart[]): Buffer;
  /** For a `select` request: the database it selects, or null when the server should judge it. */
  selectIndex(bytes: Buffer, args: ArgView): number | null;
  encodeSelect(db: number): Buffer;
  /** Requests that prepare a new connection (authentication, database); each answers once. */
  initRequests(username: string | null, password: string | null, db: number): Buffer[];
  /**
   * Returns a connection to its fresh state after a session changed it; one reply. null: the
   * protocol keeps no state on a connection (framed): a connection given back is clean as it is.
   */
  readonly resetRequest: Buffer | null;
  /** Asks the server for its id of a new connection (one reply), or null when the protocol has none. */
  readonly identifyRequest: Buffer | null;
  /** The id in the reply to identifyRequest, or null. */
  parseIdentity(bytes: Buffer): number | null;
  /**
   * The cheapest no-op request, one reply; sent on idle connections and as a new connection's last
   * setup step. null: the protocol has none (framed, tcp without a configured heartbeat): a
   * connection is ready once connected, and the pool sends no heartbeats (interval 0).
   */
  readonly heartbeatRequest: Buffer | null;
  /**
   * How a reply to heartbeatRequest is judged (framed: the configured `expect`). Absent: an error
   * reply fails it, a busy one (isBusyResponse) proves the server alive, anything else is `ok`.
   */
  heartbeatReply?(bytes: Buffer): HeartbeatReply;
  /**
   * Responses carry their request's id (framed with request_id) and may come out of order: the
   * connection gives each request an id unique on it and matches responses by id (RequestIds).
   * Absent: responses come in request order, matched first in, first out.
   */
  readonly requestIds?: RequestIds;
  /**
   * A frame from the server that is its own request to poolside (a heartbeat servers such as Dubbo
   * send their clients): the reply to write back, or null when it is not one. Checked before the
   * frame is matched to a request. Absent: servers send no requests.
   */
  answerServer?(frame: Buffer): Buffer | null;
  /**
   * A response that answers nothing waiting (nothing in flight, an id not given out): `drop` it
   * (counted) or `close` the connection, whose reply stream can no longer be trusted. Absent: close.
   */
  readonly unasked?: 'drop' | 'close';
  /** The reply to QUIT and to commands poolside accepts without forwarding (CLIENT SETINFO). */
  readonly okReply: Buffer;
  isErrorResponse(bytes: Buffer): boolean;
  /**
   * An error reply that proves the server alive but unable to serve now (Redis `-BUSY` while a
   * script runs, `-LOADING` while it loads its dataset): slow, not gone.
   */
  isBusyResponse(bytes: Buffer): boolean;
  /** An out-of-band frame the server sends unasked (RESP3 push: tracking invalidations, pub/sub). */
  isPush(bytes: Buffer): boolean;
  /**
   * A native error reply: `-ERR poolside REASON message`. null: the protocol has no error reply
   * poolside could make (framed RPC): the client is closed at that reply's turn instead.
   */
  errorReply(reason: FailureReason, message: string): Buffer | null;
}

/**
 * Ids written into requests and read back from responses, for a codec whose responses may come
 * out of order. Ids are poolside's, below `space`; each is unique among a connection's requests in
 * flight, so two clients that both use id 1 never collide.
 */
export interface RequestIds {
  /** How many distinct ids the field holds (at most 2^32). */
  readonly space: number;
  /** The client's own id as `request` carries it, to put back into the response. */
  original(request: Buffer): Buffer;
  /** A copy of `request` carrying poolside's `id` (the client's bytes are left as they are). */
  tag(request: Buffer, id: number): Buffer;
  /** poolside's id in a response, or -1 when it cannot be one poolside gave. */
  idOf(response: Buffer): number;
  /** Puts the client's id back into `response`, in place (poolside's own buffer). */
  restore(response: Buffer, original: Buffer): void;
}

/** How a heartbeat was answered: `busy` (Redis -BUSY, -LOADING) is an error that proves the server alive. */
export type HeartbeatReply = 'ok' | 'busy' | 'error';

/** The codec's verdict on a reply to its heartbeatRequest. */
export function judgeHeartbeat(codec: Codec, bytes: Buffer): HeartbeatReply {
  if (codec.heartbeatReply !== undefined) return codec.heartbeatReply(bytes);
  return !codec.isErrorResponse(bytes) ? 'ok' : codec.isBusyResponse(bytes) ? 'busy' : 'error';
}

/** Every protocol has its codec: a Protocol without one does not type-check. */
const codecs: Record<Protocol, Codec> = { redis: redisCodec, memcached: memcachedCodec, framed: framedCodec, tcp: tcpCodec };

export function codecFor(protocol: Protocol): Codec {
  return codecs[protocol];
}
