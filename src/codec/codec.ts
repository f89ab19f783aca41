/**
 * The seam between poolside and a wire protocol. A codec frames requests coming from clients and
 * responses coming from servers by counting bytes, and hands the original bytes on: poolside
 * forwards what it framed, it never re-encodes what it only needed to delimit.
 *
 * Decoders are resumable state machines: `push()` may be called with any split of the stream and
 * keeps its progress in fields between calls.
 */
import type { FailureReason } from '../errors.js';

/** Malformed bytes from the network: the stream can no longer be framed. */
export class ProtocolError extends Error {
  readonly code = 'PROTOCOL_ERROR' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Where the arguments of the request being delivered lie, as byte offsets into the request
 * buffer: argument i is `bytes.subarray(starts[i], ends[i])`. The arrays are owned and reused by
 * the decoder: read them synchronously inside the callback, never keep them.
 */
export interface ArgView {
  count: number;
  starts: Int32Array;
  ends: Int32Array;
}

export interface RequestSink {
  /**
   * One complete request, in stream order. `bytes` holds exactly the request's bytes (a view of
   * the pushed chunk when the request lay within one chunk, else a new buffer); the sink may keep
   * it. `args` is valid only during the call.
   */
  onRequest(bytes: Buffer, args: ArgView): void;
}

export interface ResponseSink {
  /** One complete response, in stream order; `bytes` may be kept by the sink. */
  onResponse(bytes: Buffer): void;
  /**
   * Optional: a large response delivered as it arrives instead of whole, so that poolside holds
   * about one read of it rather than all of it. Called instead of onResponse for that response,
   * once per piece in order, `end` true on the last; concatenated, the pieces are the response.
   * Pieces are views of the pushed chunks: the sink may keep them. A decoder that sees no such
   * method delivers every response whole.
   */
  onResponsePart?(bytes: Buffer, end: boolean): void;
  /**
   * What the request whose response comes next expects: the codec's own value, given with the
   * request (`ResponseTarget.expects`), or undefined when nothing waits. For protocols whose reply
   * framing depends on the request (memcached: `VALUE … END` only after a retrieval); RESP frames
   * without it.
   */
  headExpectation?(): unknown;
}

/**
 * Limits tighter than the pool's, for clients that have not authenticated yet (Redis refuses
 * more than 10 arguments or a 16 KiB argument before AUTH): a stranger cannot make poolside hold
 * a large request before it proved anything.
 */
export interface RequestLimits {
  maxArgs: number;
  maxArgBytes: number;
}

export interface RequestDecoder {
  /** Feeds bytes from the client; calls the sink once per complete request. Throws ProtocolError. */
  push(chunk: Buffer): void;
  /** Bytes held for an incomplete request. */
  readonly buffered: number;
  /**
   * Tightens the limits (null: back to the pool's). Takes effect from the next request framed,
   * also within the chunk being pushed, so a session may call it from inside onRequest.
   */
  setLimits(limits: RequestLimits | null): void;
}

export interface ResponseDecoder {
  /** Feeds bytes from a server; calls the sink once per complete response. Throws ProtocolError. */
  push(chunk: Buffer): void;
  /** True while part of a response has been read but not all of it. */
  readonly midFrame: boolean;
}

/**
 * How a command uses connections:
 * - `shared`: pipelined with other clients' requests on a shared connection.
 * - `select`: SELECT n; kept in the session and replayed on whichever shared connection serves it.
 * - `pin-open`: starts state that lives on one connection (MULTI, WATCH); the session is pinned to
 *   an exclusive connection until a `pin-close` command's reply.
 * - `pin-close`: ends that state (EXEC, DISCARD, UNWATCH).
 * - `pin-once`: blocks the connection (BLPOP…): runs alone on an exclusive connection, released
 *   after its reply.
 * - `pin-session`: changes connection state that cannot be replayed (AUTH, HELLO 3, CLIENT
 *   SETNAME…): the session keeps its exclusive connection until it leaves; the connection is
 *   RESET before anyone else gets it.
 * - `relay`: turns the connection into a push stream (SUBSCRIBE, MONITOR): pinned until the client
 *   leaves, every frame relayed, the connection closed afterwards.
 * - `quit`: answered +OK, then the client is closed.
 * - `ok`: answered +OK by poolside without forwarding (CLIENT SETINFO: library metadata that would
 *   label a shared connection with one client's name).
 * - `local`: answered by poolside for the poolside client (CLIENT ID, INFO, LIST, KILL ID, UNBLOCK,
 *   REPLY): see client-commands.ts and session-rules.ts.
 * - `unsupported`: refused with UNSUPPORTED_COMMAND; the client stays connected. Commands that
 *   would break poolside itself (SCRIPT DEBUG, SYNC): no configuration allows them.
 * - `denied`: refused with DENIED_COMMAND because the pool's command policy (`commands:`) denies
 *   it; the client stays connected. Only policy.ts produces it, never the tables.
 */
export type LeaseUse =
  | 'shared'
  | 'select'
  | 'pin-open'
  | 'pin-close'
  | 'pin-once'
  | 'pin-session'
  | 'relay'
  | 'quit'
  | 'ok'
  | 'local'
  | 'unsupported'
  | 'denied';

/** Where the keys of a command are, for routing by key. */
export type KeySpec =
  | { kind: 'none' }
  /** args[first], args[first + step], … up to args[last] (negative: from the end). */
  | { kind: 'range'; first: number; last: number; step: number }
  /** EVAL script numkeys key… / FCALL fn numkeys key… */
  | { kind: 'numkeys'; at: number }
  /** ZUNIONSTORE dest numkeys key…: the destination, then the numkeys keys after args[2]. */
  | { kind: 'store-numkeys' }
  /** XREAD/XREADGROUP … STREAMS key… id…: the first half of what follows STREAMS. */
  | { kind: 'streams' };

/**
 * How a request may go to several servers of a sharded pool (a router that places keys), in
 * parallel, its replies merged by the codec into the one reply the client gets:
 * - `keys`: when its keys map to more than one server, it is split: one request per server with
 *   the keys that live there (Codec.splitRequest), the replies merged in the client's key order
 *   (MGET, DEL; memcached `get k1 k2…`).
 * - `all`: sent as it is to every server of the pool, the replies merged (memcached `flush_all`).
 * Absent: it goes to one server, and keys on several servers are refused (CROSS_SERVER).
 */
export type Spread = 'keys' | 'all';

/**
 * One server's part of a request that went to several (see Spread), as Codec.mergeReplies sees
 * it: `keys` are the indices (in forEachKey order, ascending) of the client's keys it carried (none
 * for `all`); its reply, or why it has none (the codec's merge decides what the client gets then).
 */
export type FanoutPart =
  | { kind: 'reply'; keys: readonly number[]; bytes: Buffer }
  | { kind: 'failed'; keys: readonly number[]; reason: FailureReason; message: string };

export interface CommandSpec {
  name: string;
  use: LeaseUse;
  keys: KeySpec;
  /** Whether it may go to several servers of a sharded pool, and how (absent: never). */
  spread?: Spread;
  /** Safe to send again on another connection when no byte of the reply was read. */
  idempotent: boolean;
  /**
   * Only reads its keys (Redis's `readonly` flag, never `write`): a replica may answer it
   * (`read_from` in a cluster pool). Absent: it may write, so only a primary takes it.
   */
  readOnly?: true;
  /** Why it is refused or pinned, for the error text and the pin metric. */
  note: string;
  /**
   * What its response will look like, for a codec whose response framing depends on the request
   * (handed to the response decoder through `headExpectation`); absent for RESP.
   */
  expects?: unknown;
}
