/**
 * A resumable frame splitter for a declared framing (FramedConfig): bytes in any split, whole
 * frames out, in order. The frame's length is read from its header as soon as the header is in,
 * and checked (shorter than its own header: malformed; above max_frame: too large) before a byte
 * of its body is buffered. A frame that lies within one chunk is handed on as a view of it; a
 * frame split across chunks is gathered as views of them and joined once, when it is whole. Memory
 * follows the bytes that arrived, never the length a header claims: a 20-byte header that says
 * 16 MB costs 20 bytes until the rest comes.
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
  /** The frame being gathered across chunks, once its header is known: its size, and the pieces read so far. */
  #total = 0;
  #pieces: Buffer[] = [];
  #filled = 0;
  /** The frame being gathered is handed on piece by piece as it arrives (`part`), not held. */
  #streaming = false;
  /** Where pieces of a large frame go (null: every frame whole), and from what size a frame is streamed. */
  readonly #part: ((piece: Buffer, end: boolean) => void) | null;
  readonly #streamMin: number;

  /**
   * `limit`: the largest frame taken (max_frame, or less: a pool's max_request_size for requests).
   * `part`: a frame of `streamMin` bytes or more that arrives over several reads is handed on as
   * it arrives, piece by piece (`end` on the last; the first holds the whole header), instead of
   * whole to `emit`; null: every frame whole.
   */
  constructor(config: FramedConfig, limit: number, emit: (frame: Buffer) => void, part: ((piece: Buffer, end: boolean) => void) | null = null, streamMin = Infinity) {
    this.#config = config;
    this.#limit = limit;
    this.#emit = emit;
    this.#part = part;
    this.#streamMin = part === null ? Infinity : streamMin;
    this.#head = Buffer.alloc(config.headerSize);
  }

  /** Bytes held for a frame not yet whole. */
  get buffered(): number {
    return this.#total > 0 ? this.#filled : this.#headFilled;
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
      if (this.#total > 0) {
        const n = Math.min(this.#total - this.#filled, chunk.length - off);
        this.#filled += n;
        const piece = chunk.subarray(off, off + n);
        off += n;
        if (this.#streaming) this.#streamPiece(piece);
        else {
          this.#pieces.push(piece);
          if (this.#filled === this.#total) this.#emitGathered();
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
        // The reused header buffer is copied out: the frame keeps its own.
        this.#begin(total, Buffer.from(this.#head));
        continue;
      }
      const total = this.#length(chunk, off);
      if (chunk.length - off >= total) {
        this.#emit(chunk.subarray(off, off + total));
        off += total;
        continue;
      }
      this.#begin(total, chunk.subarray(off));
      off = chunk.length;
    }
  }

  /** A frame of `total` bytes whose first piece (the header at least) is `first`, not yet whole. */
  #begin(total: number, first: Buffer): void {
    this.#total = total;
    this.#filled = first.length;
    if (total === first.length) {
      this.#pieces.push(first);
      this.#emitGathered();
      return;
    }
    this.#streaming = total >= this.#streamMin;
    if (this.#streaming) this.#streamPiece(first);
    else this.#pieces.push(first);
  }

  #streamPiece(piece: Buffer): void {
    const end = this.#filled === this.#total;
    if (end) {
      this.#total = 0;
      this.#filled = 0;
      this.#streaming = false;
    }
    (this.#part as (piece: Buffer, end: boolean) => void)(piece, end);
  }

  #emitGathered(): void {
    const pieces = this.#pieces;
    const frame = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, this.#total);
    this.#pieces = [];
    this.#total = 0;
    this.#filled = 0;
    this.#emit(frame);
  }

  #length(bytes: Buffer, at: number): number {
    const length = frameLength(this.#config, bytes, at);
    if (!length.ok) throw new ProtocolError(length.message);
    if (length.bytes > this.#limit) throw new ProtocolError(`frame of ${length.bytes} bytes is larger than the ${this.#limit}-byte limit (max_request_size)`);
    return length.bytes;
  }
}
