/**
 * Frames memcached responses from a server by counting bytes. How a response is framed depends on
 * the request it answers (commands.ts, McExpect), which the connection tells through
 * headExpectation(): `VALUE` blocks up to `END` after a retrieval, a `VA` line and its data block
 * after a meta command, `STAT` lines up to `END` after stats, one line otherwise. A request
 * poolside sends itself (heartbeat `version`, reset `mn`) expects one line.
 *
 * Error lines (`ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`) end any response. A line that fits no
 * expectation is malformed: ProtocolError, and the connection is evicted.
 */
import { ProtocolError } from '../codec.js';
import type { ResponseDecoder, ResponseSink } from '../codec.js';
import type { McExpect } from './commands.js';
import { LF, SPACE } from './text.js';

/** Longest response line poolside reads (a `VALUE` line with a 250-byte key is under 330). */
const MAX_RESPONSE_LINE = 64 * 1024;
/**
 * A response with a data block at least this large, or of which this much is held while it is not
 * whole yet (many smaller blocks), is handed on piece by piece as it arrives (onResponsePart), as a
 * Redis bulk string of that size is: poolside holds about one read of it.
 */
const STREAM_MIN_BYTES = 1024 * 1024;

type Phase =
  /** Between responses. */
  | 'start'
  /** Reading lines of a multi-line response (values, list) or its first line. */
  | 'line'
  /** Reading a data block; then back to 'line' (values) or the end of the response (meta). */
  | 'data';

function startsWithWord(line: Buffer, word: string): boolean {
  if (line.length < word.length) return false;
  for (let i = 0; i < word.length; i++) if (line[i] !== word.charCodeAt(i)) return false;
  // The word ends at a space or at the line's end (\r\n).
  const next = line[word.length];
  return next === SPACE || next === 0x0d || next === LF;
}

export function isErrorLine(line: Buffer): boolean {
  return startsWithWord(line, 'ERROR') || startsWithWord(line, 'CLIENT_ERROR') || startsWithWord(line, 'SERVER_ERROR');
}

/** The size of a data block announced as the `index`th space-separated word of `line`, or null. */
function sizeWord(line: Buffer, index: number): number | null {
  let word = 0;
  let start = 0;
  let end = line.length;
  while (end > 0 && (line[end - 1] === LF || line[end - 1] === 0x0d)) end--;
  for (let i = 0; i <= end; i++) {
    if (i === end || line[i] === SPACE) {
      if (word === index) {
        if (i === start || i - start > 10) return null;
        let value = 0;
        for (let j = start; j < i; j++) {
          const digit = line[j] - 0x30;
          if (digit < 0 || digit > 9) return null;
          value = value * 10 + digit;
        }
        return value;
      }
      word++;
      start = i + 1;
    }
  }
  return null;
}

export class McResponseDecoder implements ResponseDecoder {
  readonly #sink: ResponseSink;
  #phase: Phase = 'start';
  #expect: McExpect = 'line';
  /** Pieces of the current response read in earlier chunks. */
  #parts: Buffer[] = [];
  #partBytes = 0;
  /** The current line's pieces from earlier chunks (a line split across reads). */
  #lineParts: Buffer[] = [];
  #lineBytes = 0;
  /** Data block bytes (with `\r\n`) still to read. */
  #remaining = 0;
  /** The current response is being handed on in pieces (it holds a large data block). */
  #streaming = false;
  readonly #streamMinBytes: number;

  constructor(sink: ResponseSink, streamMinBytes = STREAM_MIN_BYTES) {
    this.#sink = sink;
    this.#streamMinBytes = sink.onResponsePart === undefined ? Infinity : streamMinBytes;
  }

  get midFrame(): boolean {
    return this.#phase !== 'start' || this.#lineBytes > 0;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    /** Where the current response begins in this chunk (0 when it began in an earlier one). */
    let begin = 0;
    const length = chunk.length;
    while (pos < length) {
      if (this.#phase === 'start') {
        const expects = this.#sink.headExpectation?.();
        this.#expect = typeof expects === 'string' ? (expects as McExpect) : 'line';
        this.#phase = 'line';
        begin = pos;
      }
      if (this.#phase === 'data') {
        const take = Math.min(this.#remaining, length - pos);
        this.#remaining -= take;
        pos += take;
        if (this.#remaining > 0) break;
        if (this.#expect === 'meta') {
          this.#deliver(chunk, begin, pos);
          continue;
        }
        this.#phase = 'line';
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) {
        if (this.#lineBytes + length - pos > MAX_RESPONSE_LINE) throw new ProtocolError(`response line longer than ${MAX_RESPONSE_LINE} bytes`);
        this.#lineParts.push(chunk.subarray(pos));
        this.#lineBytes += length - pos;
        pos = length;
        break;
      }
      const piece = chunk.subarray(pos, lf + 1);
      const line = this.#lineParts.length === 0 ? piece : Buffer.concat([...this.#lineParts, piece]);
      this.#lineParts = [];
      this.#lineBytes = 0;
      pos = lf + 1;
      if (this.#onLine(line)) {
        this.#deliver(chunk, begin, pos);
      } else if (!this.#streaming && this.#remaining >= this.#streamMinBytes) {
        // A large block begins (#remaining is only set by a line that starts a data block): from
        // here on the response goes out as it arrives.
        this.#streaming = true;
        this.#part(chunk, begin, pos);
        begin = pos;
      }
    }
    if (this.#phase === 'start' || begin >= length) return;
    if (this.#streaming) {
      this.#part(chunk, begin, length);
      return;
    }
    // The response goes on in the next chunk. Many blocks each below the threshold add up too (a
    // get of hundreds of keys): once what is held of it reaches the threshold, it streams from
    // here on, so poolside holds about one read of any response, not its whole size.
    if (this.#partBytes + length - begin >= this.#streamMinBytes) {
      this.#streaming = true;
      this.#part(chunk, begin, length);
      return;
    }
    // Otherwise keep what this chunk holds of it.
    const held = chunk.subarray(begin);
    this.#parts.push(held);
    this.#partBytes += held.length;
  }

  /** A piece of a streamed response that is not its last: what was held, then chunk[begin, end). */
  #part(chunk: Buffer, begin: number, end: number): void {
    let bytes = chunk.subarray(begin, end);
    if (this.#partBytes > 0) {
      bytes = Buffer.concat([...this.#parts, bytes], this.#partBytes + end - begin);
      this.#parts = [];
      this.#partBytes = 0;
    }
    (this.#sink.onResponsePart as (bytes: Buffer, end: boolean) => void).call(this.#sink, bytes, false);
  }

  /** One whole line of the current response; true when it ends the response. */
  #onLine(line: Buffer): boolean {
    if (line.length < 2 || line[line.length - 2] !== 0x0d) throw new ProtocolError('response line not ended by \\r\\n');
    switch (this.#expect) {
      case 'line':
        return true;
      case 'meta': {
        if (!startsWithWord(line, 'VA')) return true;
        const size = sizeWord(line, 1);
        if (size === null) throw new ProtocolError('VA line without a valid size');
        this.#phase = 'data';
        this.#remaining = size + 2;
        return false;
      }
      case 'values': {
        if (startsWithWord(line, 'VALUE')) {
          const size = sizeWord(line, 3);
          if (size === null) throw new ProtocolError('VALUE line without a valid size');
          this.#phase = 'data';
          this.#remaining = size + 2;
          return false;
        }
        if (startsWithWord(line, 'END') || isErrorLine(line)) return true;
        throw new ProtocolError(`unexpected line in a retrieval response: ${JSON.stringify(line.toString('latin1', 0, Math.min(line.length, 40)))}`);
      }
      case 'list':
        return !(startsWithWord(line, 'STAT') || startsWithWord(line, 'ITEM') || startsWithWord(line, 'PREFIX'));
    }
  }

  /** The response that ends at `end` of this chunk is whole: hand it on. */
  #deliver(chunk: Buffer, begin: number, end: number): void {
    if (this.#streaming) {
      this.#streaming = false;
      this.#phase = 'start';
      (this.#sink.onResponsePart as (bytes: Buffer, end: boolean) => void).call(this.#sink, chunk.subarray(begin, end), true);
      return;
    }
    const parts = this.#parts;
    let bytes: Buffer;
    if (parts.length === 0) {
      bytes = chunk.subarray(begin, end);
    } else {
      bytes = Buffer.concat([...parts, chunk.subarray(0, end)], this.#partBytes + end);
      this.#parts = [];
      this.#partBytes = 0;
    }
    this.#phase = 'start';
    this.#sink.onResponse(bytes);
  }
}
