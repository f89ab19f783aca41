/**
 * Framing of server responses in RESP2 and RESP3 (see resp.ts for the grammar). It only counts
 * bytes: line contents are not parsed, because poolside forwards responses and never needs their
 * values. Nesting is tracked with an explicit stack of remaining element counts, so a deeply nested
 * reply cannot overflow the call stack.
 */
import { ProtocolError, type ResponseDecoder, type ResponseSink } from '../codec.js';
import { printable } from './resp-request.js';

export interface RespResponseDecoderOptions {
  /** Largest bulk payload (and simple line) accepted from a server. */
  maxBulkBytes?: number;
  /**
   * A top-level bulk string at least this long is handed on in pieces as it arrives (to a sink
   * with onResponsePart) rather than held until whole: a GET of a 200 MB value costs one read of
   * memory, not 200 MB, and reaches the client as soon as it starts arriving.
   */
  streamMinBytes?: number;
}

const DEFAULT_MAX_BULK_BYTES = 512 * 1024 * 1024;
const DEFAULT_STREAM_MIN_BYTES = 1024 * 1024;
// Largest element count of one aggregate; far beyond anything a server can reply with.
const MAX_COUNT = 0x7fffffff;

const CR = 0x0d;
const LF = 0x0a;
const ZERO = 0x30;
const NINE = 0x39;

// Type bytes. Lines: + - : _ , # ( and `.` (end of a streamed aggregate).
const PLUS = 0x2b;
const MINUS = 0x2d;
const COLON = 0x3a;
const UNDERSCORE = 0x5f;
const COMMA = 0x2c;
const HASH = 0x23;
const LPAREN = 0x28;
const DOT = 0x2e;
// Length-prefixed payloads, and `;` for a chunk of a streamed string.
const DOLLAR = 0x24;
const BANG = 0x21;
const EQUALS = 0x3d;
const SEMICOLON = 0x3b;
// Aggregates.
const STAR = 0x2a;
const PERCENT = 0x25;
const TILDE = 0x7e;
const GT = 0x3e;
const PIPE = 0x7c;
const QUESTION = 0x3f;

/** Remaining-count marker of a streamed aggregate (`*?`), which ends at `.` instead. */
const STREAMED = -1;

const enum State {
  /** Expecting the type byte of the next value. */
  Type,
  /** Skipping a simple line up to its CR. */
  Line,
  LineLF,
  /** Digits (or `-1`, `?`) after a length-prefixed type byte, up to the CR. */
  Length,
  LengthLF,
  /** Skipping a bulk payload by count. */
  Payload,
  PayloadCR,
  PayloadLF,
  /** Inside a streamed string (`$?`), expecting the `;` of the next chunk. */
  Chunk,
  /** A ProtocolError was thrown; the connection is being destroyed. */
  Dead,
}

const enum Sign {
  None,
  /** `-1`: RESP2 null bulk string or null array. */
  Null,
  /** `?`: RESP3 streamed string or aggregate. */
  Streamed,
}

export class RespResponseDecoder implements ResponseDecoder {
  readonly #sink: ResponseSink;
  readonly #maxBulkBytes: number;
  /** Infinity when the sink takes only whole responses. */
  readonly #streamMinBytes: number;

  #state = State.Type;
  /** True from the first byte of a response until its last. */
  #midFrame = false;
  /** Pieces of the current response from earlier chunks, concatenated once when it completes. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** The current response is being handed on in pieces: nothing of it is held. */
  #streaming = false;

  /** Type byte of the value being read. */
  #type = 0;
  #lineLength = 0;
  #num = 0;
  #numDigits = 0;
  #sign = Sign.None;
  #payloadLeft = 0;
  #streamingString = false;

  /**
   * Open aggregates, innermost last: elements still to come (or STREAMED), and whether it is an
   * attribute, which annotates the value after it and so is not an element of its parent.
   */
  #remaining: number[] = [];
  #attribute: boolean[] = [];
  #depth = 0;

  constructor(sink: ResponseSink, options: RespResponseDecoderOptions = {}) {
    const max = options.maxBulkBytes ?? DEFAULT_MAX_BULK_BYTES;
    if (!Number.isInteger(max) || max < 1 || max > Number.MAX_SAFE_INTEGER / 10) {
      throw new RangeError(`maxBulkBytes must be a positive integer, got ${max}`);
    }
    const streamMin = options.streamMinBytes ?? DEFAULT_STREAM_MIN_BYTES;
    if (!Number.isInteger(streamMin) || streamMin < 1) {
      throw new RangeError(`streamMinBytes must be a positive integer, got ${streamMin}`);
    }
    this.#sink = sink;
    this.#maxBulkBytes = max;
    this.#streamMinBytes = sink.onResponsePart === undefined ? Infinity : streamMin;
  }

  get midFrame(): boolean {
    return this.#midFrame;
  }

  push(chunk: Buffer): void {
    if (this.#state === State.Dead) throw new ProtocolError('Protocol error: stream already failed');
    const n = chunk.length;
    let i = 0;
    // Where the current response starts in this chunk; 0 when it began in an earlier one.
    let start = 0;

    while (i < n) {
      switch (this.#state) {
        case State.Type: {
          if (!this.#midFrame) {
            this.#midFrame = true;
            start = i;
          }
          const type = chunk[i++];
          this.#type = type;
          if (type === DOT && (this.#depth === 0 || this.#remaining[this.#depth - 1] !== STREAMED)) {
            throw this.#fail("Protocol error: '.' outside a streamed aggregate");
          }
          switch (type) {
            case DOT: case PLUS: case MINUS: case COLON: case UNDERSCORE: case COMMA: case HASH: case LPAREN:
              this.#lineLength = 0;
              this.#state = State.Line;
              break;
            case DOLLAR: case BANG: case EQUALS:
            case STAR: case PERCENT: case TILDE: case GT: case PIPE:
              this.#startNumber();
              this.#state = State.Length;
              break;
            default:
              throw this.#fail(`Protocol error: unknown reply type byte '${printable(type)}'`);
          }
          break;
        }

        case State.Line: {
          const from = i;
          while (i < n && chunk[i] !== CR) i++;
          this.#lineLength += i - from;
          if (this.#lineLength > this.#maxBulkBytes) throw this.#fail('Protocol error: line too long');
          if (i < n) {
            i++;
            this.#state = State.LineLF;
          }
          break;
        }

        case State.LineLF:
          if (chunk[i++] !== LF) throw this.#fail('Protocol error: expected LF after CR');
          if (this.#type === DOT) {
            if (this.#lineLength !== 0) throw this.#fail("Protocol error: invalid streamed aggregate end");
            this.#depth--;
          }
          if (this.#valueEnded()) this.#emit(chunk, start, i);
          break;

        case State.Length: {
          const b = chunk[i++];
          if (b === CR) this.#state = State.LengthLF;
          else this.#lengthByte(b);
          break;
        }

        case State.LengthLF:
          if (chunk[i++] !== LF) throw this.#fail(this.#lengthError());
          if (this.#numDigits === 0 && this.#sign !== Sign.Streamed) throw this.#fail(this.#lengthError());
          if (this.#sign === Sign.Null && this.#num !== 1) throw this.#fail(this.#lengthError());
          if (this.#lengthEnded()) this.#emit(chunk, start, i);
          else if ((this.#state as State) === State.Payload && this.#depth === 0 && this.#type === DOLLAR && this.#payloadLeft >= this.#streamMinBytes) {
            // A large top-level bulk string: hand on what is held (its header) and then every
            // later piece as it arrives.
            this.#streaming = true;
            this.#emitPart(chunk, start, i);
            start = i;
          }
          break;

        case State.Payload: {
          const take = Math.min(this.#payloadLeft, n - i);
          i += take;
          this.#payloadLeft -= take;
          if (this.#payloadLeft === 0) this.#state = State.PayloadCR;
          break;
        }

        case State.PayloadCR:
          if (chunk[i++] !== CR) throw this.#fail('Protocol error: expected CRLF after bulk string');
          this.#state = State.PayloadLF;
          break;

        case State.PayloadLF:
          if (chunk[i++] !== LF) throw this.#fail('Protocol error: expected CRLF after bulk string');
          if (this.#streamingString) this.#state = State.Chunk;
          else if (this.#valueEnded()) this.#emit(chunk, start, i);
          break;

        case State.Chunk: {
          const b = chunk[i++];
          if (b !== SEMICOLON) throw this.#fail(`Protocol error: expected ';', got '${printable(b)}'`);
          this.#type = SEMICOLON;
          this.#startNumber();
          this.#state = State.Length;
          break;
        }
      }
    }

    if (this.#streaming) {
      if (start < n) this.#emitPart(chunk, start, n);
    } else if (this.#midFrame && start < n) {
      this.#held.push(chunk.subarray(start));
      this.#heldBytes += n - start;
    }
  }

  /** One byte of a length line other than its CR. */
  #lengthByte(b: number): void {
    const type = this.#type;
    if (this.#numDigits === 0 && this.#sign === Sign.None) {
      if (b === MINUS && (type === DOLLAR || type === STAR)) {
        this.#sign = Sign.Null;
        return;
      }
      if (b === QUESTION && (type === DOLLAR || type === STAR || type === PERCENT || type === TILDE)) {
        this.#sign = Sign.Streamed;
        return;
      }
    }
    if (b < ZERO || b > NINE || this.#sign === Sign.Streamed || (this.#numDigits > 0 && this.#num === 0)) {
      throw this.#fail(this.#lengthError());
    }
    this.#num = this.#num * 10 + (b - ZERO);
    this.#numDigits++;
    const max = this.#sign === Sign.Null ? 1 : isAggregate(type) ? MAX_COUNT : this.#maxBulkBytes;
    if (this.#num > max) throw this.#fail(this.#lengthError());
  }

  /** A valid length line was read; returns true when that completed the response. */
  #lengthEnded(): boolean {
    const type = this.#type;
    const num = this.#num;
    this.#state = State.Type;
    if (this.#sign === Sign.Null) return this.#valueEnded();

    if (!isAggregate(type)) {
      if (this.#sign === Sign.Streamed) {
        this.#streamingString = true;
        this.#state = State.Chunk;
        return false;
      }
      if (type === SEMICOLON && num === 0) {
        // `;0` is the last chunk of a streamed string; it has no payload.
        this.#streamingString = false;
        return this.#valueEnded();
      }
      this.#payloadLeft = num;
      this.#state = num === 0 ? State.PayloadCR : State.Payload;
      return false;
    }

    if (this.#sign === Sign.Streamed) {
      this.#open(STREAMED, false);
      return false;
    }
    const elements = type === PERCENT || type === PIPE ? num * 2 : num;
    if (elements > 0) {
      this.#open(elements, type === PIPE);
      return false;
    }
    // An empty attribute annotates the next value; an empty aggregate is a value itself.
    return type === PIPE ? false : this.#valueEnded();
  }

  #open(remaining: number, attribute: boolean): void {
    this.#remaining[this.#depth] = remaining;
    this.#attribute[this.#depth] = attribute;
    this.#depth++;
  }

  /** A value (not an attribute) just ended; returns true when it was the whole response. */
  #valueEnded(): boolean {
    this.#state = State.Type;
    while (this.#depth > 0) {
      const top = this.#depth - 1;
      const left = this.#remaining[top];
      if (left === STREAMED) return false;
      if (left > 1) {
        this.#remaining[top] = left - 1;
        return false;
      }
      this.#depth = top;
      // An attribute that just ended still waits for the value it annotates.
      if (this.#attribute[top]) return false;
    }
    return true;
  }

  #emit(chunk: Buffer, start: number, end: number): void {
    this.#midFrame = false;
    if (this.#streaming) {
      this.#streaming = false;
      (this.#sink.onResponsePart as (bytes: Buffer, end: boolean) => void).call(this.#sink, chunk.subarray(start, end), true);
      return;
    }
    let bytes: Buffer;
    if (this.#heldBytes === 0) {
      bytes = chunk.subarray(start, end);
    } else {
      this.#held.push(chunk.subarray(0, end));
      bytes = Buffer.concat(this.#held, this.#heldBytes + end);
      this.#held = [];
      this.#heldBytes = 0;
    }
    this.#sink.onResponse(bytes);
  }

  /** A piece of a streamed response that is not its last: what is held, then chunk[start, end). */
  #emitPart(chunk: Buffer, start: number, end: number): void {
    let bytes = chunk.subarray(start, end);
    if (this.#heldBytes > 0) {
      this.#held.push(bytes);
      bytes = Buffer.concat(this.#held, this.#heldBytes + end - start);
      this.#held = [];
      this.#heldBytes = 0;
    }
    (this.#sink.onResponsePart as (bytes: Buffer, end: boolean) => void).call(this.#sink, bytes, false);
  }

  #startNumber(): void {
    this.#num = 0;
    this.#numDigits = 0;
    this.#sign = Sign.None;
  }

  #lengthError(): string {
    return isAggregate(this.#type) ? 'Protocol error: invalid multibulk length' : 'Protocol error: invalid bulk length';
  }

  #fail(message: string): ProtocolError {
    this.#state = State.Dead;
    this.#streaming = false;
    this.#held = [];
    this.#heldBytes = 0;
    return new ProtocolError(message);
  }
}

function isAggregate(type: number): boolean {
  return type === STAR || type === PERCENT || type === TILDE || type === GT || type === PIPE;
}

/**
 * An error response, `-<message>\r\n`. Like Redis's addReplyError, trailing line breaks are
 * trimmed and any inside become spaces, so the message cannot break the framing.
 */
export function encodeError(message: string): Buffer {
  const line = message.replace(/[\r\n]+$/, '').replace(/[\r\n]/g, ' ');
  return Buffer.from(`-${line}\r\n`, 'utf8');
}
