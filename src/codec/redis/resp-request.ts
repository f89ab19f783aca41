/**
 * Framing of client requests in RESP (see resp.ts for the grammar). The multibulk path is the hot
 * path: it walks the length lines byte by byte, skips payloads by count, and hands the sink the
 * original bytes plus argument offsets. Inline commands are rare (telnet, redis-cli pipes), so they
 * are re-encoded as a multibulk: everything downstream then only ever sees one request shape.
 */
import { ProtocolError, type ArgView, type RequestDecoder, type RequestLimits, type RequestSink } from '../codec.js';

export interface RespRequestDecoderOptions {
  /** Largest request, all framing included (Redis's proto-max-bulk-len is 512 MiB). */
  maxRequestBytes?: number;
  /**
   * Largest argument count in one multibulk. By default only maxRequestBytes bounds it (every
   * argument takes at least 6 bytes, `$0\r\n\r\n`), as Redis 7 bounds it only by its query buffer.
   */
  maxArgs?: number;
  /** Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE). */
  maxInlineBytes?: number;
}

const DEFAULTS = {
  maxRequestBytes: 512 * 1024 * 1024,
  maxInlineBytes: 64 * 1024,
} as const;

// ArgView offsets are Int32, so no request may be larger than this.
const MAX_OFFSET = 0x7fffffff;
/** The smallest argument on the wire: `$0\r\n\r\n`. */
const MIN_ARG_BYTES = 6;
/**
 * Redis parses counts with string2ll: any negative count down to LLONG_MIN (-2^63) means an empty
 * request. Digits add up in a double, so the bound is 2^63 give or take the rounding.
 */
const MAX_NEGATIVE_COUNT = 9.3e18;
/** First size of the buffer that holds a request spread over reads; it doubles from there. */
const MIN_HELD = 64;
const EMPTY = Buffer.alloc(0);

/** First capacity of an ArgView (arguments); it doubles from there. */
const MIN_ARGS = 16;
/** Past this many arguments the scratch view goes back to MIN_ARGS after the push (one huge MSET does not keep its offsets). */
const MAX_SCRATCH_ARGS = 1024;

/**
 * The argument offsets every decoder's push() frames into: a push runs to its end before any
 * other starts (data events come one at a time), and the view is valid only during onRequest.
 * A decoder keeps a view of its own only while a request's arguments span pushes, so an idle
 * client costs no typed arrays.
 */
const SCRATCH: ArgView = newArgView(MIN_ARGS);
let scratchInUse = false;

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a;
const DOLLAR = 0x24;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

// Longest command name built byte by byte; longer ones are garbage and take the slow path.
const MAX_SHORT_NAME = 32;
/** Longest name commandName returns whole (Redis's longest command name is 20 bytes). */
export const MAX_NAME_BYTES = 64;

const INVALID_MULTIBULK = 'Protocol error: invalid multibulk length';
const INVALID_BULK = 'Protocol error: invalid bulk length';
// Redis's words for the limits it puts on clients that have not authenticated yet.
const UNAUTHENTICATED_MULTIBULK = 'Protocol error: unauthenticated multibulk length';
const UNAUTHENTICATED_BULK = 'Protocol error: unauthenticated bulk length';

const enum State {
  /** Between requests: the next byte decides multibulk or inline. */
  Idle,
  /** Digits of `*<n>`, up to the CR. */
  Count,
  CountLF,
  /** Expecting the `$` of the next argument. */
  Dollar,
  /** Digits of `$<len>`, up to the CR. */
  Length,
  LengthLF,
  /** Skipping the argument's payload by count. */
  Payload,
  PayloadCR,
  PayloadLF,
  /** Looking for the LF that ends an inline command line. */
  Inline,
  /** A ProtocolError was thrown; the client is being closed. */
  Dead,
}

export class RespRequestDecoder implements RequestDecoder {
  readonly #sink: RequestSink;
  readonly #maxRequestBytes: number;
  readonly #maxArgs: number;
  readonly #maxInlineBytes: number;

  /** Tighter limits set by setLimits (clients not yet authenticated); null: the options' limits. */
  #limits: RequestLimits | null = null;

  #state = State.Idle;
  /**
   * The current request's bytes from earlier chunks, copied into one buffer that grows by
   * doubling. Never a list of the chunks themselves: a request trickling in a byte per read would
   * cost a Buffer object per byte (~65x the bytes held), and a view of a chunk keeps all of it.
   */
  #held: Buffer = EMPTY;
  #heldBytes = 0;

  // The number being read on a length line, digit by digit.
  #num = 0;
  #numDigits = 0;
  #numNegative = false;

  /** Arguments announced by `*<n>`; the ArgView's `count` says how many have been read so far. */
  #argCount = 0;
  /** Payload bytes of the current argument not yet seen. */
  #payloadLeft = 0;
  /**
   * This decoder's own ArgView, only while a request's arguments span pushes (or a push ran
   * inside another decoder's); otherwise push() borrows the process's SCRATCH, so a client costs
   * no typed arrays until it sends a request split across reads.
   */
  #args: ArgView | null = null;

  constructor(sink: RequestSink, options: RespRequestDecoderOptions = {}) {
    this.#sink = sink;
    this.#maxRequestBytes = limit('maxRequestBytes', options.maxRequestBytes ?? DEFAULTS.maxRequestBytes);
    const argsFit = Math.max(1, Math.floor(this.#maxRequestBytes / MIN_ARG_BYTES));
    this.#maxArgs = Math.min(argsFit, limit('maxArgs', options.maxArgs ?? argsFit));
    this.#maxInlineBytes = limit('maxInlineBytes', options.maxInlineBytes ?? DEFAULTS.maxInlineBytes);
  }

  get buffered(): number {
    return this.#heldBytes;
  }

  /** Applies from the next length line read, also within the chunk being pushed. */
  setLimits(limits: RequestLimits | null): void {
    this.#limits = limits;
  }

  push(chunk: Buffer): void {
    if (this.#state === State.Dead) throw new ProtocolError('Protocol error: stream already failed');
    let args = this.#args;
    if (args !== null || scratchInUse) {
      // A request begun in an earlier push, or a push inside another decoder's (a sink that
      // pushed): a view of its own, not the scratch another push is using.
      args ??= this.#args = newArgView(MIN_ARGS);
      this.#frame(chunk, args);
      if (!this.#midMultibulk()) this.#args = null;
      return;
    }
    scratchInUse = true;
    try {
      this.#frame(chunk, SCRATCH);
    } finally {
      scratchInUse = false;
      // Only a multibulk's argument offsets outlive the push: they move to a view of its own.
      if (this.#midMultibulk()) this.#args = copyArgView(SCRATCH);
      if (SCRATCH.starts.length > MAX_SCRATCH_ARGS) {
        SCRATCH.starts = new Int32Array(MIN_ARGS);
        SCRATCH.ends = new Int32Array(MIN_ARGS);
      }
    }
  }

  /** Between a multibulk's count and its last argument: the offsets read so far are needed by the next push. */
  #midMultibulk(): boolean {
    return this.#state >= State.Dollar && this.#state <= State.PayloadLF;
  }

  /** The state machine over one chunk; `args` is where the current request's offsets go. */
  #frame(chunk: Buffer, args: ArgView): void {
    const n = chunk.length;
    let i = 0;
    // Where the current request starts in this chunk (0 when it began in an earlier one), and the
    // request-relative offset of chunk[0]: request offset of chunk[i] is `base + i`.
    let start = 0;
    let base = this.#heldBytes;

    while (i < n) {
      switch (this.#state) {
        case State.Idle: {
          start = i;
          base = -i;
          // The usual request, whole in this chunk: framed in one pass with locals.
          const end = this.#limits === null ? this.#frameWhole(chunk, i, n, args) : -1;
          if (end > 0) {
            i = end;
            this.#sink.onRequest(chunk.subarray(start, end), args);
            break;
          }
          if (chunk[i] === STAR) {
            i++;
            this.#startNumber();
            this.#state = State.Count;
          } else {
            this.#state = State.Inline;
          }
          break;
        }

        case State.Count: {
          const b = chunk[i++];
          if (b === CR) this.#state = State.CountLF;
          else if (b === MINUS && this.#numDigits === 0 && !this.#numNegative) this.#numNegative = true;
          // Under setLimits, any count up to INT_MAX gets Redis's unauthenticated error at its end.
          else this.#digit(b, this.#numNegative ? MAX_NEGATIVE_COUNT : this.#limits !== null ? MAX_OFFSET : this.#maxArgs, INVALID_MULTIBULK);
          break;
        }

        case State.CountLF:
          if (chunk[i++] !== LF || this.#numDigits === 0) throw this.#fail(INVALID_MULTIBULK);
          if (this.#numNegative && this.#num === 0) throw this.#fail(INVALID_MULTIBULK); // `*-0`, as string2ll
          if (!this.#numNegative && this.#limits !== null && this.#num > this.#limits.maxArgs) {
            throw this.#fail(UNAUTHENTICATED_MULTIBULK);
          }
          if (!this.#numNegative && this.#num > this.#maxArgs) throw this.#fail(INVALID_MULTIBULK);
          if (this.#numNegative || this.#num === 0) {
            // Redis takes `*0` and any negative count as an empty request and ignores it; so do
            // we, dropping any piece held for it.
            this.#reset();
          } else {
            this.#argCount = this.#num;
            args.count = 0;
            this.#state = State.Dollar;
          }
          break;

        case State.Dollar: {
          const b = chunk[i++];
          if (b !== DOLLAR) throw this.#fail(`Protocol error: expected '$', got '${printable(b)}'`);
          this.#startNumber();
          this.#state = State.Length;
          break;
        }

        case State.Length: {
          const b = chunk[i++];
          if (b === CR) this.#state = State.LengthLF;
          else this.#digit(b, this.#maxRequestBytes, INVALID_BULK);
          break;
        }

        case State.LengthLF: {
          if (chunk[i++] !== LF || this.#numDigits === 0) throw this.#fail(INVALID_BULK);
          const argStart = base + i;
          const len = this.#num;
          if (this.#limits !== null && len > this.#limits.maxArgBytes) throw this.#fail(UNAUTHENTICATED_BULK);
          if (argStart + len + 2 > this.#maxRequestBytes) {
            throw this.#fail(`Protocol error: request larger than ${this.#maxRequestBytes} bytes`);
          }
          const k = args.count;
          if (k === args.starts.length) grow(args, k * 2);
          args.starts[k] = argStart;
          args.ends[k] = argStart + len;
          this.#payloadLeft = len;
          this.#state = len === 0 ? State.PayloadCR : State.Payload;
          break;
        }

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
          if (++args.count < this.#argCount) {
            this.#state = State.Dollar;
          } else {
            const bytes = this.#heldBytes === 0 ? chunk.subarray(start, i) : this.#assemble(chunk, i);
            this.#reset();
            this.#sink.onRequest(bytes, args);
          }
          break;

        case State.Inline: {
          const lf = chunk.indexOf(LF, i);
          const end = lf === -1 ? n : lf;
          if (base + end > this.#maxInlineBytes) throw this.#fail('Protocol error: too big inline request');
          i = end;
          if (lf === -1) break;
          const line = this.#heldBytes === 0 ? chunk.subarray(start, lf) : this.#assemble(chunk, lf);
          i = lf + 1;
          this.#reset();
          this.#inline(line, args);
          break;
        }
      }
    }

    if (this.#state !== State.Idle && start < n) this.#hold(chunk, start, n, false);
  }

  /**
   * Frames the multibulk request at `chunk[from]` when all of it is in the chunk and it is plain
   * (digits without leading zeros, a count the argument view holds, within the limits): fills the
   * argument view and returns where the request ends. Returns -1 for anything else, having
   * changed nothing, and the state machine then reads the same bytes (and says what is wrong).
   */
  #frameWhole(chunk: Buffer, from: number, n: number, args: ArgView): number {
    if (chunk[from] !== STAR) return -1;
    let i = from + 1;
    let count = 0;
    let digits = 0;
    for (let b = chunk[i]; b >= ZERO && b <= NINE; b = chunk[++i]) {
      if (digits > 0 && count === 0) return -1;
      count = count * 10 + (b - ZERO);
      if (++digits > 9) return -1;
    }
    if (digits === 0 || count === 0 || count > this.#maxArgs || i + 1 >= n || chunk[i] !== CR || chunk[i + 1] !== LF) return -1;
    if (count > args.starts.length) return -1;
    const starts = args.starts;
    const ends = args.ends;
    const max = this.#maxRequestBytes;
    i += 2;
    for (let k = 0; k < count; k++) {
      if (i >= n || chunk[i] !== DOLLAR) return -1;
      i++;
      let len = 0;
      digits = 0;
      for (let b = chunk[i]; b >= ZERO && b <= NINE; b = chunk[++i]) {
        if (digits > 0 && len === 0) return -1;
        len = len * 10 + (b - ZERO);
        if (++digits > 9) return -1;
      }
      if (digits === 0 || i + 1 >= n || chunk[i] !== CR || chunk[i + 1] !== LF) return -1;
      i += 2;
      const argStart = i - from;
      if (argStart + len + 2 > max) return -1;
      i += len;
      if (i + 1 >= n || chunk[i] !== CR || chunk[i + 1] !== LF) return -1;
      starts[k] = argStart;
      ends[k] = argStart + len;
      i += 2;
    }
    args.count = count;
    return i;
  }

  /**
   * Copies `chunk[start, end)` after the bytes held, growing the buffer by doubling: never more
   * than four times what was received, whatever a length line announced. Within an argument's
   * payload the growth stops at the argument's end, so a large value that ends its request
   * (SET k <value>) is held in a buffer of exactly its request's size.
   */
  #hold(chunk: Buffer, start: number, end: number, complete: boolean): void {
    const needed = this.#heldBytes + end - start;
    if (needed > this.#held.length) {
      // A complete request gets exactly its size: nothing more will be added.
      let capacity = complete ? needed : Math.max(this.#held.length * 2, MIN_HELD);
      const announced = this.#announcedRest();
      // A quarter of the argument's end received: room for all of it at once (at most 4x what
      // was received), which saves the last doublings' allocations and copies.
      if (announced > 0) capacity = needed * 4 >= needed + announced ? needed + announced : Math.min(capacity, needed + announced);
      // The state machine bounds a held request by maxRequestBytes (or maxInlineBytes).
      capacity = Math.max(needed, Math.min(capacity, this.#maxRequestBytes));
      const grown = Buffer.allocUnsafe(capacity);
      this.#held.copy(grown, 0, 0, this.#heldBytes);
      this.#held = grown;
    }
    chunk.copy(this.#held, this.#heldBytes, start, end);
    this.#heldBytes = needed;
  }

  /** Bytes of the current argument (its CRLF included) still to come; 0 outside a payload. */
  #announcedRest(): number {
    switch (this.#state) {
      case State.Payload:
        return this.#payloadLeft + 2;
      case State.PayloadCR:
        return 2;
      case State.PayloadLF:
        return 1;
      default:
        return 0;
    }
  }

  #inline(line: Buffer, args: ArgView): void {
    // The LF ends the line; a CR before it belongs to the line ending too.
    const end = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
    const tokens = splitInline(line.subarray(0, end));
    if (tokens === null) throw this.#fail('Protocol error: unbalanced quotes in request');
    // Blank lines are how telnet users say nothing; Redis skips them.
    if (tokens.length === 0) return;
    if (tokens.length > args.starts.length) grow(args, tokens.length);
    const bytes = writeMultibulk(tokens, args);
    this.#sink.onRequest(bytes, args);
  }

  /**
   * The held bytes plus `chunk[0, end)`, in a buffer the sink may keep: the held buffer is handed
   * over (it is at most twice the request's size), and the next request starts a new one.
   */
  #assemble(chunk: Buffer, end: number): Buffer {
    this.#hold(chunk, 0, end, true);
    return this.#held.subarray(0, this.#heldBytes);
  }

  #reset(): void {
    this.#state = State.Idle;
    if (this.#held !== EMPTY) {
      this.#held = EMPTY;
      this.#heldBytes = 0;
    }
  }

  #startNumber(): void {
    this.#num = 0;
    this.#numDigits = 0;
    this.#numNegative = false;
  }

  /** One digit of a length line. Like Redis's string2ll: no sign but `-`, no leading zeros. */
  #digit(b: number, max: number, message: string): void {
    if (b < ZERO || b > NINE || (this.#numDigits > 0 && this.#num === 0)) throw this.#fail(message);
    this.#num = this.#num * 10 + (b - ZERO);
    this.#numDigits++;
    // Checked per digit so a huge length fails at once instead of after a long run of digits.
    if (this.#num > max) throw this.#fail(message);
  }

  #fail(message: string): ProtocolError {
    this.#args = null;
    this.#state = State.Dead;
    this.#held = EMPTY;
    this.#heldBytes = 0;
    return new ProtocolError(message);
  }
}

/** A command as a multibulk request, strings encoded as UTF-8. */
function newArgView(capacity: number): ArgView {
  return { count: 0, starts: new Int32Array(capacity), ends: new Int32Array(capacity) };
}

/** A copy of a view mid-request: its `count` arguments and the one being read (its offsets are written at its length line). */
function copyArgView(from: ArgView): ArgView {
  const view = newArgView(Math.max(MIN_ARGS, from.count + 1));
  const written = Math.min(from.count + 1, from.starts.length);
  view.starts.set(from.starts.subarray(0, written));
  view.ends.set(from.ends.subarray(0, written));
  view.count = from.count;
  return view;
}

function grow(args: ArgView, capacity: number): void {
  const starts = new Int32Array(capacity);
  const ends = new Int32Array(capacity);
  starts.set(args.starts.subarray(0, args.count));
  ends.set(args.ends.subarray(0, args.count));
  args.starts = starts;
  args.ends = ends;
}

export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  return writeMultibulk(args.map((arg) => (typeof arg === 'string' ? Buffer.from(arg, 'utf8') : arg)), null);
}

/**
 * Argument 0 in ASCII upper case, e.g. `GET`; '' for a request without arguments. A name longer
 * than MAX_NAME_BYTES is no command: it is cut there and ends in `…` (not latin1, so it matches
 * no command), so that error texts, logs and caches never hold a client's megabytes.
 */
export function commandName(bytes: Buffer, args: ArgView): string {
  if (args.count === 0) return '';
  const start = args.starts[0];
  let end = args.ends[0];
  // Only a-z change: Redis compares command names ASCII-case-insensitively, and String#toUpperCase
  // would also change latin1 letters (and turn ß into SS).
  if (end - start > MAX_SHORT_NAME) {
    const cut = end - start > MAX_NAME_BYTES;
    if (cut) end = start + MAX_NAME_BYTES;
    const name = bytes.toString('latin1', start, end).replace(/[a-z]+/g, (run) => run.toUpperCase());
    return cut ? `${name}…` : name;
  }
  // Real command names are short; building them in JS is about twice as fast as toString().
  let name = '';
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    name += String.fromCharCode(b >= 0x61 && b <= 0x7a ? b - 0x20 : b);
  }
  return name;
}

/** `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument; records payload offsets in `view` if given. */
function writeMultibulk(args: readonly Buffer[], view: ArgView | null): Buffer {
  let size = 3 + decimalLength(args.length);
  for (const arg of args) size += 5 + decimalLength(arg.length) + arg.length;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (let k = 0; k < args.length; k++) {
    const arg = args[k];
    at += out.write(`$${arg.length}\r\n`, at, 'latin1');
    if (view !== null) {
      view.starts[k] = at;
      view.ends[k] = at + arg.length;
    }
    at += arg.copy(out, at);
    out[at++] = CR;
    out[at++] = LF;
  }
  if (view !== null) view.count = args.length;
  return out;
}

function decimalLength(n: number): number {
  return n < 10 ? 1 : String(n).length;
}

const SPACE = 0x20;
const TAB = 0x09;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const BACKSLASH = 0x5c;

/** C's isspace(), which sdssplitargs uses between tokens and after a closing quote. */
function isSpace(b: number): boolean {
  return b === SPACE || (b >= TAB && b <= CR);
}

/**
 * Redis's sdssplitargs: blanks separate tokens; "double quotes" take \n \r \t \b \a \xHH and
 * \<any> escapes; 'single quotes' take only \'; a closing quote must be followed by a blank or the
 * end. Returns null on unbalanced quotes. Redis runs it on a C string, so a NUL byte ends the line.
 */
function splitInline(line: Buffer): Buffer[] | null {
  const nul = line.indexOf(0);
  const end = nul === -1 ? line.length : nul;
  const tokens: Buffer[] = [];
  const token: number[] = [];
  let p = 0;
  for (;;) {
    while (p < end && isSpace(line[p])) p++;
    if (p === end) return tokens;
    let quote = 0;
    token.length = 0;
    for (;;) {
      if (quote === 0) {
        const b = p < end ? line[p] : 0;
        if (b === SPACE || b === LF || b === CR || b === TAB || b === 0) break;
        if (b === DQUOTE || b === SQUOTE) quote = b;
        else token.push(b);
        p++;
        continue;
      }
      if (p === end) return null;
      const b = line[p];
      const next = p + 1 < end ? line[p + 1] : -1;
      if (b === quote) {
        if (next !== -1 && !isSpace(next)) return null;
        p++;
        break;
      }
      if (b === BACKSLASH && quote === DQUOTE && next !== -1) {
        const hex = next === 0x78 && p + 3 < end ? hexByte(line[p + 2], line[p + 3]) : -1;
        if (hex !== -1) {
          token.push(hex);
          p += 4;
        } else {
          token.push(unescape(next));
          p += 2;
        }
      } else if (b === BACKSLASH && quote === SQUOTE && next === SQUOTE) {
        token.push(SQUOTE);
        p += 2;
      } else {
        token.push(b);
        p++;
      }
    }
    tokens.push(Buffer.from(token));
  }
}

function unescape(b: number): number {
  switch (b) {
    case 0x6e: return LF; // n
    case 0x72: return CR; // r
    case 0x74: return TAB; // t
    case 0x62: return 0x08; // b
    case 0x61: return 0x07; // a
    default: return b;
  }
}

function hexByte(hi: number, lo: number): number {
  const h = hexDigit(hi);
  const l = hexDigit(lo);
  return h === -1 || l === -1 ? -1 : h * 16 + l;
}

function hexDigit(b: number): number {
  if (b >= ZERO && b <= NINE) return b - ZERO;
  const lower = b | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** A byte for an error message: itself when printable ASCII, else `\xHH`. */
export function printable(b: number): string {
  return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
}

function limit(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_OFFSET) {
    throw new RangeError(`${name} must be an integer from 1 to ${MAX_OFFSET}, got ${value}`);
  }
  return value;
}
