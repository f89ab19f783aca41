/**
 * Reading memcached's text lines the way memcached does (proto_text.c): a line ends at `\n`, one
 * `\r` before it is dropped, tokens are separated by spaces (runs of them count as one), and the
 * line ends early at a NUL byte (memcached's tokenizer reads a C string). A tab or another control
 * character is part of a token, as it is for memcached.
 */

export const SPACE = 0x20;
export const CR = 0x0d;
export const LF = 0x0a;

/** memcached's KEY_MAX_LENGTH. */
export const KEY_MAX_BYTES = 250;
/**
 * memcached closes a connection whose line has no `\n` within its first 2048 bytes, unless it is a
 * `get`/`gets` (multi-gets are unbounded): no other command line is longer.
 */
export const MAX_LINE_BYTES = 2048;
/** memcached's MFLAG_MAX_OPT_LENGTH: a meta command with this many tokens or more is refused. */
export const META_MAX_TOKENS = 20;
/** memcached refuses data blocks longer than INT_MAX - 2. */
export const MAX_DATA_BYTES = 0x7fff_ffff - 2;

/**
 * Token positions of one line, relative to the start of the buffer the line begins (the request's
 * own bytes). Owned by its decoder and reused: read them while the request is delivered.
 */
export class Tokens {
  count = 0;
  starts = new Int32Array(16);
  ends = new Int32Array(16);

  push(start: number, end: number): void {
    if (this.count === this.starts.length) {
      const starts = new Int32Array(this.count * 2);
      const ends = new Int32Array(this.count * 2);
      starts.set(this.starts);
      ends.set(this.ends);
      this.starts = starts;
      this.ends = ends;
    }
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.count++;
  }
}

/**
 * Tokenizes `line[0, lf)` (lf: the index of its `\n`) into `out`. Returns nothing; `out.count` is
 * the number of tokens.
 */
export function tokenize(line: Buffer, lf: number, out: Tokens): void {
  out.count = 0;
  let end = lf;
  if (end > 1 && line[end - 1] === CR) end--;
  let start = -1;
  for (let i = 0; i < end; i++) {
    const c = line[i];
    if (c === 0) {
      end = i;
      break;
    }
    if (c === SPACE) {
      if (start >= 0) {
        out.push(start, i);
        start = -1;
      }
    } else if (start < 0) {
      start = i;
    }
  }
  if (start >= 0) out.push(start, end);
}

/** Whether token `i` of `bytes` is exactly `word` (ASCII). */
export function tokenIs(bytes: Buffer, starts: Int32Array, ends: Int32Array, i: number, word: string): boolean {
  const start = starts[i];
  if (ends[i] - start !== word.length) return false;
  for (let j = 0; j < word.length; j++) if (bytes[start + j] !== word.charCodeAt(j)) return false;
  return true;
}

/**
 * An unsigned decimal number in `bytes[start, end)`, or null when it is not one or exceeds `max`.
 * Stricter than memcached's strtoul (no sign, no spaces): poolside refuses what memcached might
 * read differently, so a line it forwards is never one memcached reads otherwise.
 */
export function parseUnsigned(bytes: Buffer, start: number, end: number, max: number): number | null {
  if (end <= start || end - start > 20) return null;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = bytes[i] - 0x30;
    if (digit < 0 || digit > 9) return null;
    value = value * 10 + digit;
  }
  return value > max ? null : value;
}

/** A signed 32-bit decimal number, or null. */
export function parseInt32(bytes: Buffer, start: number, end: number): number | null {
  if (end > start && bytes[start] === 0x2d /* - */) {
    const magnitude = parseUnsigned(bytes, start + 1, end, 0x8000_0000);
    return magnitude === null ? null : -magnitude;
  }
  return parseUnsigned(bytes, start, end, 0x7fff_ffff);
}

/** An unsigned 64-bit decimal number (a CAS unique), checked without precision loss. */
export function isUint64(bytes: Buffer, start: number, end: number): boolean {
  const length = end - start;
  if (length <= 0 || length > 20) return false;
  for (let i = start; i < end; i++) {
    const c = bytes[i];
    if (c < 0x30 || c > 0x39) return false;
  }
  return length < 20 || bytes.toString('latin1', start, end) <= '18446744073709551615';
}
