/**
 * Framing of binary-protocol requests from a client: 24-byte header, then `bodyLength` bytes.
 * Resumable at every byte. A request that lies within one pushed chunk is delivered as a view of
 * it; one spread over reads is gathered into a buffer of its own.
 *
 * A storage request (SET/ADD/REPLACE/APPEND/PREPEND and their quiet forms) whose value is larger
 * than the limit is never buffered: the decoder delivers its header, extras and key only (so the
 * delivered bytes are shorter than the header's body length: that is how the translator knows to
 * answer E2BIG, as memcached does) and then counts the value away. Any other request longer than
 * the limit cannot be a valid one and ends the stream (ProtocolError).
 *
 * The ArgView of a request holds its key, when it has one, as argument 0.
 */
import { ProtocolError, type ArgView, type RequestDecoder, type RequestLimits, type RequestSink } from '../codec.js';
import { HEADER_BYTES, REQUEST_MAGIC, isStorageOp } from './binary-protocol.js';

const enum State {
  /** Gathering the 24 header bytes. */
  Header,
  /** Gathering the body (or, for a too-large value, the extras and key). */
  Body,
  /** Counting away the value of a too-large storage request. */
  Swallow,
  /** A ProtocolError was thrown. */
  Dead,
}

export class BinaryRequestDecoder implements RequestDecoder {
  readonly #sink: RequestSink;
  readonly #maxValueBytes: number;
  #limits: RequestLimits | null = null;
  #state = State.Header;
  /** The request being gathered across reads: header, then what of the body is kept. */
  #held: Buffer = Buffer.alloc(HEADER_BYTES);
  #heldBytes = 0;
  /** Bytes the request being gathered keeps in all (header included). */
  #want = HEADER_BYTES;
  /** Whether the request being gathered is delivered short (value swallowed). */
  #short = false;
  #swallow = 0;
  readonly #args: ArgView = { count: 0, starts: new Int32Array(1), ends: new Int32Array(1) };

  /** `maxValueBytes`: the largest value a storage request may carry (memcached's item size limit). */
  constructor(sink: RequestSink, maxValueBytes: number) {
    this.#sink = sink;
    this.#maxValueBytes = maxValueBytes;
  }

  get buffered(): number {
    return this.#state === State.Header || this.#state === State.Body ? this.#heldBytes : 0;
  }

  setLimits(limits: RequestLimits | null): void {
    this.#limits = limits;
  }

  push(chunk: Buffer): void {
    let at = 0;
    const end = chunk.length;
    while (at < end) {
      switch (this.#state) {
        case State.Header: {
          if (this.#heldBytes === 0 && end - at >= HEADER_BYTES) {
            // The fast path: the header is in this chunk, maybe the whole request.
            const want = this.#plan(chunk, at);
            if (end - at >= want) {
              this.#deliver(want === end - at && at === 0 ? chunk : chunk.subarray(at, at + want));
              at += want;
              continue;
            }
            this.#hold(want);
            chunk.copy(this.#held, 0, at, end);
            this.#heldBytes = end - at;
            this.#state = State.Body;
            return;
          }
          const n = Math.min(HEADER_BYTES - this.#heldBytes, end - at);
          chunk.copy(this.#held, this.#heldBytes, at, at + n);
          this.#heldBytes += n;
          at += n;
          if (this.#heldBytes < HEADER_BYTES) return;
          const want = this.#plan(this.#held, 0);
          if (want === HEADER_BYTES) {
            this.#want = HEADER_BYTES;
            this.#completeHeld();
            continue;
          }
          const header = this.#held.subarray(0, HEADER_BYTES);
          this.#hold(want);
          header.copy(this.#held, 0);
          this.#state = State.Body;
          continue;
        }
        case State.Body: {
          const n = Math.min(this.#want - this.#heldBytes, end - at);
          chunk.copy(this.#held, this.#heldBytes, at, at + n);
          this.#heldBytes += n;
          at += n;
          if (this.#heldBytes === this.#want) this.#completeHeld();
          continue;
        }
        case State.Swallow: {
          const n = Math.min(this.#swallow, end - at);
          this.#swallow -= n;
          at += n;
          if (this.#swallow === 0) this.#state = State.Header;
          continue;
        }
        case State.Dead:
          return;
      }
    }
  }

  /**
   * Reads the header at `bytes[at]`: how many bytes of the request are kept (and whether its value
   * is swallowed). Throws on what cannot be a request.
   */
  #plan(bytes: Buffer, at: number): number {
    if (bytes[at] !== REQUEST_MAGIC) {
      this.#state = State.Dead;
      throw new ProtocolError(`bad magic 0x${bytes[at].toString(16).padStart(2, '0')} where a binary request must start`);
    }
    const opcode = bytes[at + 1];
    const keyLength = bytes.readUInt16BE(at + 2);
    const extrasLength = bytes[at + 4];
    const bodyLength = bytes.readUInt32BE(at + 8);
    const maxValue = this.#limits === null ? this.#maxValueBytes : Math.min(this.#maxValueBytes, this.#limits.maxArgBytes);
    const head = extrasLength + keyLength;
    this.#short = false;
    if (isStorageOp(opcode) && head <= bodyLength && bodyLength - head > maxValue) {
      this.#short = true;
      this.#swallow = bodyLength - head;
      return HEADER_BYTES + head;
    }
    if (bodyLength > maxValue + head) {
      this.#state = State.Dead;
      throw new ProtocolError(`binary request body of ${bodyLength} bytes is larger than poolside accepts (opcode 0x${opcode.toString(16)})`);
    }
    return HEADER_BYTES + bodyLength;
  }

  #hold(want: number): void {
    this.#want = want;
    if (this.#held.length < want || this.#held.length > Math.max(4096, want * 4)) this.#held = Buffer.allocUnsafe(Math.max(want, HEADER_BYTES));
  }

  #completeHeld(): void {
    const request = Buffer.from(this.#held.subarray(0, this.#want));
    this.#heldBytes = 0;
    if (this.#held.length > 4096) this.#held = Buffer.alloc(HEADER_BYTES);
    this.#deliver(request);
  }

  #deliver(request: Buffer): void {
    const short = this.#short;
    this.#state = short && this.#swallow > 0 ? State.Swallow : State.Header;
    const args = this.#args;
    const keyLength = request.readUInt16BE(2);
    const keyStart = HEADER_BYTES + request[4];
    if (keyLength > 0 && keyStart + keyLength <= request.length) {
      args.count = 1;
      args.starts[0] = keyStart;
      args.ends[0] = keyStart + keyLength;
    } else {
      args.count = 0;
    }
    this.#short = false;
    this.#sink.onRequest(request, args);
  }
}
