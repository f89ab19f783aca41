/**
 * Frames memcached text and meta requests from a client, by counting bytes: a command line up to
 * `\n`, and for a storage command whose line memcached accepts, the data block of the size the
 * line gives plus two bytes (which should be `\r\n`; whether they are is intake's to judge, as
 * memcached reads exactly that many bytes either way). A request is delivered as its original
 * bytes: the line, then the data block.
 *
 * A data block larger than the pool's max_item_size is never held: the line is delivered alone
 * (intake answers `SERVER_ERROR object too large for cache`, as memcached does) and the block is
 * counted away as it arrives.
 *
 * A line longer than memcached would read (2048 bytes, except get/gets whose key lists are
 * unbounded up to max_request_size) cannot be framed safely: ProtocolError, the client is closed,
 * as memcached closes it.
 */
import { ProtocolError } from '../codec.js';
import type { RequestDecoder, RequestLimits, RequestSink } from '../codec.js';
import { dataBlockSize, lookup } from './commands.js';
import { LF, MAX_LINE_BYTES, SPACE, Tokens, tokenize } from './text.js';

const EMPTY = Buffer.alloc(0);

type Phase =
  /** Reading a command line. */
  | 'line'
  /** Reading the data block (and its `\r\n`) of the line in #line. */
  | 'data'
  /** Counting away a data block too large to hold. */
  | 'swallow';

export interface McRequestLimits {
  /** Longest get/gets line (the pool's max_request_size). */
  maxRequestBytes: number;
  /** Largest data block poolside holds (the pool's max_item_size). */
  maxItemBytes: number;
}

export class McRequestDecoder implements RequestDecoder {
  readonly #sink: RequestSink;
  readonly #limits: McRequestLimits;
  readonly #tokens = new Tokens();
  #phase: Phase = 'line';
  /** Pieces of the current request read in earlier chunks. */
  #parts: Buffer[] = [];
  #partBytes = 0;
  /** The current storage request's line (whole), while its data block is read. */
  #line: Buffer = EMPTY;
  /** Bytes of data block (with its `\r\n`) still to read or to count away. */
  #remaining = 0;

  constructor(sink: RequestSink, limits: McRequestLimits) {
    this.#sink = sink;
    this.#limits = limits;
  }

  get buffered(): number {
    return this.#partBytes + (this.#phase === 'data' ? this.#line.length : 0);
  }

  /** memcached has no per-client request limits before authentication: nothing to tighten. */
  setLimits(_limits: RequestLimits | null): void {}

  push(chunk: Buffer): void {
    let pos = 0;
    const length = chunk.length;
    while (pos < length) {
      if (this.#phase === 'swallow') {
        const take = Math.min(this.#remaining, length - pos);
        this.#remaining -= take;
        pos += take;
        if (this.#remaining === 0) this.#phase = 'line';
        continue;
      }
      if (this.#phase === 'data') {
        const take = Math.min(this.#remaining, length - pos);
        this.#remaining -= take;
        if (this.#remaining > 0) {
          this.#parts.push(chunk.subarray(pos, pos + take));
          this.#partBytes += take;
          return;
        }
        const last = chunk.subarray(pos, pos + take);
        pos += take;
        const parts = this.#parts;
        const line = this.#line;
        this.#reset();
        // The line and the block in one buffer; a view when both lay in this chunk.
        const bytes =
          parts.length === 0 && line.buffer === chunk.buffer && line.byteOffset >= chunk.byteOffset && line.byteOffset + line.length === last.byteOffset
            ? chunk.subarray(line.byteOffset - chunk.byteOffset, pos)
            : Buffer.concat([line, ...parts, last]);
        this.#sink.onRequest(bytes, this.#tokens);
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) {
        this.#parts.push(pos === 0 ? chunk : chunk.subarray(pos));
        this.#partBytes += length - pos;
        this.#checkLineLength();
        return;
      }
      const piece = chunk.subarray(pos, lf + 1);
      pos = lf + 1;
      const line = this.#parts.length === 0 ? piece : Buffer.concat([...this.#parts, piece]);
      this.#parts = [];
      this.#partBytes = 0;
      this.#frameLine(line);
    }
  }

  #frameLine(line: Buffer): void {
    const tokens = this.#tokens;
    if (line.length > MAX_LINE_BYTES && !this.#multiGet(line)) {
      throw new ProtocolError(`line too long: more than ${MAX_LINE_BYTES} bytes before its newline`);
    }
    if (line.length > this.#limits.maxRequestBytes) throw new ProtocolError(`request larger than max_request_size (${this.#limits.maxRequestBytes} bytes)`);
    tokenize(line, line.length - 1, tokens);
    const command = lookup(line, tokens.starts, tokens.ends, tokens.count);
    const size = dataBlockSize(command, line, tokens.starts, tokens.ends, tokens.count);
    if (size === null) {
      this.#sink.onRequest(line, tokens);
      return;
    }
    if (size > this.#limits.maxItemBytes) {
      // Delivered alone (intake answers it), the block counted away, never held.
      this.#phase = 'swallow';
      this.#remaining = size + 2;
      this.#sink.onRequest(line, tokens);
      return;
    }
    this.#phase = 'data';
    this.#line = line;
    this.#remaining = size + 2;
  }

  #reset(): void {
    this.#phase = 'line';
    this.#parts = [];
    this.#partBytes = 0;
    this.#line = EMPTY;
  }

  /** A line still without its newline: as long as memcached would wait for it, no longer. */
  #checkLineLength(): void {
    const held = this.#partBytes;
    if (held <= MAX_LINE_BYTES) return;
    // Only its start matters: up to 100 spaces, then the command.
    const head = this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts, Math.min(held, 110));
    if (!this.#multiGet(head)) throw new ProtocolError(`line too long: no newline in its first ${MAX_LINE_BYTES} bytes`);
    if (held > this.#limits.maxRequestBytes) throw new ProtocolError(`request larger than max_request_size (${this.#limits.maxRequestBytes} bytes)`);
  }

  /** `get ` or `gets ` after at most 100 spaces, as memcached checks for a long line. */
  #multiGet(line: Buffer): boolean {
    let i = 0;
    while (i < line.length && i <= 100 && line[i] === SPACE) i++;
    if (i > 100) return false;
    if (line[i] !== 0x67 || line[i + 1] !== 0x65 || line[i + 2] !== 0x74) return false;
    if (line[i + 3] === SPACE) return true;
    return line[i + 3] === 0x73 && line[i + 4] === SPACE;
  }
}
