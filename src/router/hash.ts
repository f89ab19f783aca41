/**
 * Key hashes for ketama routing, bit-exact with twemproxy's hashkit (src/hashkit/nc_*.c) as built
 * for x86-64 Linux, which is what operators migrating from twemproxy run.
 *
 * Two platform facts are baked in, because they change results:
 *  - `char` is signed on x86-64. twemproxy reads keys through `const char *`, so wherever it widens
 *    a byte without masking (`(uint32_t)key[x]`), bytes 0x80..0xff are sign-extended: `signExtend`
 *    below. That affects fnv1*, one_at_a_time and one branch of hsieh; md5, murmur, crc*, jenkins
 *    read unsigned bytes.
 *  - Little-endian word loads (murmur reads `*(unsigned int *)data`).
 *
 * Hot path: every function takes `(key, start, end)` over the request buffer, allocates nothing
 * and never converts the key to a string. All arithmetic is int32 (`Math.imul`, `| 0`, `>>> 0`).
 */

import type { KetamaHash } from '../config/schema.js';

/** Hashes `key[start, end)` to a uint32. */
export type HashFunction = (key: Buffer, start: number, end: number) => number;

/** `(uint32_t)(char)b` on a signed-char platform, kept as int32 bits. */
function signExtend(b: number): number {
  return (b << 24) >> 24;
}

// nc_fnv.c. The two "64-bit" variants return `(uint32_t)hash`; only the low 32 bits of a 64-bit
// product depend only on the low 32 bits of its operands, so both run entirely in 32 bits:
// hash_fnv1a_64 already does (it truncates its state and prime up front), and hash_fnv1_64's
// truncated result equals a 32-bit run with the truncated init and prime.
const FNV_64_INIT_LOW = 0x84222325; // (uint32_t)0xcbf29ce484222325
const FNV_64_PRIME_LOW = 0x000001b3; // (uint32_t)0x100000001b3
const FNV_32_INIT = 0x811c9dc5;
const FNV_32_PRIME = 0x01000193;

/** hash_fnv1_64 */
function fnv1_64(key: Buffer, start: number, end: number): number {
  let hash = FNV_64_INIT_LOW | 0;
  for (let i = start; i < end; i++) {
    hash = Math.imul(hash, FNV_64_PRIME_LOW);
    hash ^= signExtend(key[i]);
  }
  return hash >>> 0;
}

/** hash_fnv1a_64 (a 32-bit hash despite its name, as in twemproxy) */
function fnv1a_64(key: Buffer, start: number, end: number): number {
  let hash = FNV_64_INIT_LOW | 0;
  for (let i = start; i < end; i++) {
    hash ^= signExtend(key[i]);
    hash = Math.imul(hash, FNV_64_PRIME_LOW);
  }
  return hash >>> 0;
}

/** hash_fnv1_32 */
function fnv1_32(key: Buffer, start: number, end: number): number {
  let hash = FNV_32_INIT | 0;
  for (let i = start; i < end; i++) {
    hash = Math.imul(hash, FNV_32_PRIME);
    hash ^= signExtend(key[i]);
  }
  return hash >>> 0;
}

/** hash_fnv1a_32 */
function fnv1a_32(key: Buffer, start: number, end: number): number {
  let hash = FNV_32_INIT | 0;
  for (let i = start; i < end; i++) {
    hash ^= signExtend(key[i]);
    hash = Math.imul(hash, FNV_32_PRIME);
  }
  return hash >>> 0;
}

/** hash_one_at_a_time (nc_one_at_a_time.c) */
function oneAtATime(key: Buffer, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) {
    value = (value + signExtend(key[i])) | 0;
    value = (value + (value << 10)) | 0;
    value ^= value >>> 6;
  }
  value = (value + (value << 3)) | 0;
  value ^= value >>> 11;
  value = (value + (value << 15)) | 0;
  return value >>> 0;
}

// nc_crc32.c's table: the reflected CRC-32 polynomial 0xedb88320. Generated rather than copied.
const CRC32_TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC32_TABLE[n] = c;
}

/**
 * hash_crc32: libmemcached's variant, which is not CRC-32 as published: it returns 15 bits of the
 * checksum (`((~crc) >> 16) & 0x7fff`). Because the result is below 2^15, a ketama pool using it
 * sends nearly every key to whichever server owns the lowest continuum points; that is
 * twemproxy's behaviour too.
 */
function crc32(key: Buffer, start: number, end: number): number {
  let crc = -1;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ CRC32_TABLE[(crc ^ key[i]) & 0xff];
  return (~crc >>> 16) & 0x7fff;
}

/** hash_crc32a: the standard CRC-32 (the check value of "123456789" is 0xcbf43926). */
function crc32a(key: Buffer, start: number, end: number): number {
  let crc = -1;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ CRC32_TABLE[(crc ^ key[i]) & 0xff];
  return ~crc >>> 0;
}

// nc_crc16.c as released in twemproxy 0.5.0: the CRC-16/XMODEM table (polynomial 0x1021, not
// reflected). Later twemproxy sources replaced it with a CRC-16/ARC table; 0.5.0 is the release
// operators run, and the golden file was recorded against it.
const CRC16_TABLE = new Uint16Array(256);
for (let n = 0; n < 256; n++) {
  let c = n << 8;
  for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  CRC16_TABLE[n] = c;
}

/**
 * hash_crc16 (0.5.0): CRC-16/XMODEM kept in a uint32_t that is never masked to 16 bits, so the
 * `crc << 8` bits pile up above bit 15. The low 16 bits are the XMODEM checksum; the whole 32 bits
 * are the hash.
 */
function crc16(key: Buffer, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = (crc << 8) ^ CRC16_TABLE[((crc >>> 8) ^ key[i]) & 0xff];
  return crc >>> 0;
}

const MURMUR_M = 0x5bd1e995;

/** hash_murmur (nc_murmur.c): MurmurHash2 with twemproxy's length-derived seed. */
function murmur(key: Buffer, start: number, end: number): number {
  let length = end - start;
  const seed = Math.imul(0xdeadbeef | 0, length);
  let h = seed ^ length;
  let i = start;
  while (length >= 4) {
    let k = key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24);
    k = Math.imul(k, MURMUR_M);
    k ^= k >>> 24;
    k = Math.imul(k, MURMUR_M);
    h = Math.imul(h, MURMUR_M);
    h ^= k;
    i += 4;
    length -= 4;
  }
  // The C switch falls through from 3 to 2 to 1.
  if (length >= 3) h ^= key[i + 2] << 16;
  if (length >= 2) h ^= key[i + 1] << 8;
  if (length >= 1) {
    h ^= key[i];
    h = Math.imul(h, MURMUR_M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR_M);
  h ^= h >>> 15;
  return h >>> 0;
}

/** hash_hsieh (nc_hsieh.c): Paul Hsieh's SuperFastHash. */
function hsieh(key: Buffer, start: number, end: number): number {
  let length = end - start;
  if (length <= 0) return 0;
  let hash = 0;
  let i = start;
  const rem = length & 3;
  length >>>= 2;
  for (; length > 0; length--) {
    hash = (hash + (key[i] | (key[i + 1] << 8))) | 0;
    const tmp = ((key[i + 2] | (key[i + 3] << 8)) << 11) ^ hash;
    hash = (hash << 16) ^ tmp;
    i += 4;
    hash = (hash + (hash >>> 11)) | 0;
  }
  switch (rem) {
    case 3:
      hash = (hash + (key[i] | (key[i + 1] << 8))) | 0;
      hash ^= hash << 16;
      // `(uint32_t)key[sizeof (uint16_t)] << 18` widens a signed char: sign-extended.
      hash ^= signExtend(key[i + 2]) << 18;
      hash = (hash + (hash >>> 11)) | 0;
      break;
    case 2:
      hash = (hash + (key[i] | (key[i + 1] << 8))) | 0;
      hash ^= hash << 11;
      hash = (hash + (hash >>> 17)) | 0;
      break;
    case 1:
      hash = (hash + key[i]) | 0;
      hash ^= hash << 10;
      hash = (hash + (hash >>> 1)) | 0;
      break;
    default:
      break;
  }
  hash ^= hash << 3;
  hash = (hash + (hash >>> 5)) | 0;
  hash ^= hash << 4;
  hash = (hash + (hash >>> 17)) | 0;
  hash ^= hash << 25;
  hash = (hash + (hash >>> 6)) | 0;
  return hash >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * hash_jenkins (nc_jenkins.c): Bob Jenkins' lookup3 `hashlittle` with initval 13. On a
 * little-endian machine its word-aligned, half-word-aligned and byte-at-a-time paths give the same
 * result, so only the byte path is written here.
 */
function jenkins(key: Buffer, start: number, end: number): number {
  let length = end - start;
  let a = (0xdeadbeef + length + 13) | 0;
  let b = a;
  let c = a;
  let i = start;
  while (length > 12) {
    a = (a + (key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24))) | 0;
    b = (b + (key[i + 4] | (key[i + 5] << 8) | (key[i + 6] << 16) | (key[i + 7] << 24))) | 0;
    c = (c + (key[i + 8] | (key[i + 9] << 8) | (key[i + 10] << 16) | (key[i + 11] << 24))) | 0;
    // mix(a,b,c)
    a = (a - c) | 0; a ^= rotl(c, 4); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rotl(a, 6); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rotl(b, 8); b = (b + a) | 0;
    a = (a - c) | 0; a ^= rotl(c, 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rotl(a, 19); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rotl(b, 4); b = (b + a) | 0;
    length -= 12;
    i += 12;
  }
  if (length === 0) return c >>> 0; // zero-length input (or none left) gets no final mixing
  // The C switch falls through from 12 down to 1.
  if (length >= 12) c = (c + (key[i + 11] << 24)) | 0;
  if (length >= 11) c = (c + (key[i + 10] << 16)) | 0;
  if (length >= 10) c = (c + (key[i + 9] << 8)) | 0;
  if (length >= 9) c = (c + key[i + 8]) | 0;
  if (length >= 8) b = (b + (key[i + 7] << 24)) | 0;
  if (length >= 7) b = (b + (key[i + 6] << 16)) | 0;
  if (length >= 6) b = (b + (key[i + 5] << 8)) | 0;
  if (length >= 5) b = (b + key[i + 4]) | 0;
  if (length >= 4) a = (a + (key[i + 3] << 24)) | 0;
  if (length >= 3) a = (a + (key[i + 2] << 16)) | 0;
  if (length >= 2) a = (a + (key[i + 1] << 8)) | 0;
  a = (a + key[i]) | 0;
  // final(a,b,c)
  c ^= b; c = (c - rotl(b, 14)) | 0;
  a ^= c; a = (a - rotl(c, 11)) | 0;
  b ^= a; b = (b - rotl(a, 25)) | 0;
  c ^= b; c = (c - rotl(b, 16)) | 0;
  a ^= c; a = (a - rotl(c, 4)) | 0;
  b ^= a; b = (b - rotl(a, 14)) | 0;
  c ^= b; c = (c - rotl(b, 24)) | 0;
  return c >>> 0;
}

// MD5 (RFC 1321), written out so the hot path allocates nothing: node:crypto would create a Hash
// object and a digest Buffer per key. Checked against node:crypto in the tests.
const MD5_K = new Int32Array(64);
for (let i = 0; i < 64; i++) MD5_K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 0x100000000) | 0;
const MD5_S = Uint8Array.of(
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
);
const md5State = new Int32Array(4);
const md5Words = new Int32Array(16);
const md5Tail = new Uint8Array(128);

function md5Block(bytes: Uint8Array, offset: number): void {
  for (let w = 0; w < 16; w++) {
    const p = offset + w * 4;
    md5Words[w] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
  }
  let a = md5State[0];
  let b = md5State[1];
  let c = md5State[2];
  let d = md5State[3];
  for (let i = 0; i < 64; i++) {
    let f: number;
    let g: number;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) & 15;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) & 15;
    }
    const t = d;
    d = c;
    c = b;
    b = (b + rotl((a + f + MD5_K[i] + md5Words[g]) | 0, MD5_S[i])) | 0;
    a = t;
  }
  md5State[0] = (md5State[0] + a) | 0;
  md5State[1] = (md5State[1] + b) | 0;
  md5State[2] = (md5State[2] + c) | 0;
  md5State[3] = (md5State[3] + d) | 0;
}

/**
 * hash_md5 (nc_md5.c): the first four bytes of the MD5 digest read little-endian, which is the
 * digest's first state word.
 */
function md5(key: Buffer, start: number, end: number): number {
  md5State[0] = 0x67452301;
  md5State[1] = 0xefcdab89 | 0;
  md5State[2] = 0x98badcfe | 0;
  md5State[3] = 0x10325476;
  const length = end - start;
  let p = start;
  for (; end - p >= 64; p += 64) md5Block(key, p);
  const rest = end - p;
  for (let i = 0; i < rest; i++) md5Tail[i] = key[p + i];
  md5Tail[rest] = 0x80;
  const tailLength = rest < 56 ? 64 : 128;
  md5Tail.fill(0, rest + 1, tailLength - 8);
  const bitsLow = (length * 8) >>> 0;
  const bitsHigh = Math.floor(length / 0x20000000);
  const q = tailLength - 8;
  md5Tail[q] = bitsLow;
  md5Tail[q + 1] = bitsLow >>> 8;
  md5Tail[q + 2] = bitsLow >>> 16;
  md5Tail[q + 3] = bitsLow >>> 24;
  md5Tail[q + 4] = bitsHigh;
  md5Tail[q + 5] = bitsHigh >>> 8;
  md5Tail[q + 6] = bitsHigh >>> 16;
  md5Tail[q + 7] = bitsHigh >>> 24;
  md5Block(md5Tail, 0);
  if (tailLength === 128) md5Block(md5Tail, 64);
  return md5State[0] >>> 0;
}

const HASHES: Readonly<Record<KetamaHash, HashFunction>> = {
  one_at_a_time: oneAtATime,
  md5,
  crc16,
  crc32,
  crc32a,
  fnv1_64,
  fnv1a_64,
  fnv1_32,
  fnv1a_32,
  hsieh,
  murmur,
  jenkins,
};

/** The key hash twemproxy selects with `hash: <name>` (conf_set_hash → hash_algos[]). */
export function hashFunction(name: KetamaHash): HashFunction {
  return HASHES[name];
}

/**
 * Index of the first `byte` in `key[from, end)`, or -1: twemproxy's nc_strchr. Only the first
 * occurrence counts, so `{a}{b}` tags `a`.
 */
function indexOfByte(key: Buffer, from: number, end: number, byte: number): number {
  for (let i = from; i < end; i++) if (key[i] === byte) return i;
  return -1;
}

/** The two tag bytes, or -1 when hash tags are off. Throws on a tag twemproxy would not accept. */
function tagByte(tag: string, position: 0 | 1): number {
  if (tag.length === 0) return -1;
  const code = tag.charCodeAt(position);
  // conf_set_hashtag requires exactly two bytes; ASCII keeps one char = one byte.
  if (tag.length !== 2 || code > 0x7f) {
    throw new RangeError(`hash tag must be two ASCII characters such as "{}", got ${JSON.stringify(tag)}`);
  }
  return code;
}

/**
 * The byte range of `key[start, end)` that twemproxy hashes under `hash_tag: <tag>`
 * (server_pool_idx; req_forward in older releases): the bytes strictly between the first `tag[0]`
 * and the first `tag[1]` after it. When either is missing, or the tagged part is empty (`{}`), the
 * whole key is hashed; a later non-empty tag is not looked for (`x{}{y}` hashes all of it).
 * `tag === ''` means hash tags are off.
 *
 * Returns a fresh tuple; the per-request path uses `hashKey`, which allocates nothing.
 */
export function hashTagRange(key: Buffer, start: number, end: number, tag: string): [number, number] {
  const left = tagByte(tag, 0);
  if (left < 0) return [start, end];
  const open = indexOfByte(key, start, end, left);
  if (open < 0) return [start, end];
  const close = indexOfByte(key, open + 1, end, tagByte(tag, 1));
  if (close - open > 1) return [open + 1, close];
  return [start, end];
}

/**
 * The continuum position of a key, as twemproxy computes it in server_pool_idx +
 * server_pool_hash: apply the hash tag, then hash — except that an empty key hashes to 0 without
 * calling the hash function (server_pool_hash's `keylen == 0` case). The single-server shortcut
 * in server_pool_idx needs no mirroring: a one-server continuum answers 0 for every hash.
 */
export function hashKey(hash: HashFunction, key: Buffer, start: number, end: number, tag: string): number {
  let from = start;
  let to = end;
  const left = tagByte(tag, 0);
  if (left >= 0) {
    const open = indexOfByte(key, start, end, left);
    if (open >= 0) {
      const close = indexOfByte(key, open + 1, end, tagByte(tag, 1));
      if (close - open > 1) {
        from = open + 1;
        to = close;
      }
    }
  }
  if (to === from) return 0;
  return hash(key, from, to);
}
