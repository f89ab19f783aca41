/**
 * A resumable frame splitter for a declared framing (FramedConfig): bytes in any split, whole
 * frames out, in order. The frame's length is read from its header as soon as the header is in,
 * and checked (shorter than its own header: malformed; above max_frame: too large) before a byte
 * of its body is buffered. A frame that lies within one chunk is handed on as a view of it; only
 * a frame split across chunks is copied, once, into a buffer of its exact size.
 */
import type { FramedConfig } from '../../config/schema.js';
import { ProtocolError } from '../codec.js';
import { frameLength } from './framing.js';

export class Framer {
  readonly #config: FramedConfig;
  readonly #limit: number;
  readonly #emit: (frame: Buffer) => void;
  /** The header being gathered across chunks (headerSize bytes; #headFilled of them read). */
  readonly #head: Buffer;
  #headFilled = 0;
  /** The frame being gathered across chunks, once its header is known; #filled of it read. */
  #frame: Buffer | null = null;
  #filled = 0;

  /** `limit`: the largest frame taken (max_frame, or less: a pool's max_request_size for requests). */
  constructor(config: FramedConfig, limit: number, emit: (frame: Buffer) => void) {
    this.#config = config;
    this.#limit = limit;
    this.#emit = emit;
    this.#head = Buffer.alloc(config.headerSize);
  }

  /** Bytes held for a frame not yet whole. */
  get buffered(): number {
    return this.#frame !== null ? this.#filled : this.#headFilled;
  }

  /** Part of a frame has been read but not all of it. */
  get midFrame(): boolean {
    return this.buffered > 0;
  }

  /** Throws ProtocolError for a malformed or oversized frame: the stream cannot be framed after it. */
  push(chunk: Buffer): void {
    const headerSize = this.#config.headerSize;
    let off = 0;
    while (off < chunk.length) {
      const frame = this.#frame;
      if (frame !== null) {
        const n = Math.min(frame.length - this.#filled, chunk.length - off);
        chunk.copy(frame, this.#filled, off, off + n);
        this.#filled += n;
        off += n;
        if (this.#filled === frame.length) {
          this.#frame = null;
          this.#filled = 0;
          this.#emit(frame);
        }
        continue;
      }
      if (this.#headFilled > 0 || chunk.length - off < headerSize) {
        const n = Math.min(headerSize - this.#headFilled, chunk.length - off);
        chunk.copy(this.#head, this.#headFilled, off, off + n);
        this.#headFilled += n;
        off += n;
        if (this.#headFilled < headerSize) return;
        const total = this.#length(this.#head, 0);
        this.#headFilled = 0;
        const whole = Buffer.allocUnsafe(total);
        this.#head.copy(whole, 0, 0, headerSize);
        if (total === headerSize) {
          this.#emit(whole);
        } else {
          this.#frame = whole;
          this.#filled = headerSize;
        }
        continue;
      }
      const total = this.#length(chunk, off);
      if (chunk.length - off >= total) {
        this.#emit(chunk.subarray(off, off + total));
        off += total;
        continue;
      }
      const whole = Buffer.allocUnsafe(total);
      chunk.copy(whole, 0, off);
      this.#frame = whole;
      this.#filled = chunk.length - off;
      off = chunk.length;
    }
  }

  #length(bytes: Buffer, at: number): number {
    const length = frameLength(this.#config, bytes, at);
    if (!length.ok) throw new ProtocolError(length.message);
    if (length.bytes > this.#limit) throw new ProtocolError(`frame of ${length.bytes} bytes is larger than the ${this.#limit}-byte limit (max_request_size)`);
    return length.bytes;
  }
}
