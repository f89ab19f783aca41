/**
 * The seam between poolside and a wire protocol. A codec frames requests coming from clients and
 * responses coming from servers by counting bytes, and hands the original bytes on: poolside
 * forwards what it framed, it never re-encodes what it only needed to delimit.
 *
 * Decoders are resumable state machines: `push()` may be called with any split of the stream and
 * keeps its progress in fields between calls.
 */

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
