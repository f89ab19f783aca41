/**
 * Redis Cluster's key → hash slot: CRC16 (XMODEM: polynomial 0x1021, initial 0, no reflection) of
 * the key, modulo 16384. With a hash tag, only what lies between the first `{` and the first `}`
 * after it is hashed, when that is not empty (Redis's keyHashSlot, cluster.c).
 */

export const SLOTS = 16384;

const TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** CRC16/XMODEM of `bytes[start, end)`. */
export function crc16(bytes: Buffer, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >>> 8) ^ bytes[i]) & 0xff];
  return crc;
}

/** The hash slot of the key `bytes[start, end)` ({hash tag} rule included). */
export function keySlot(bytes: Buffer, start: number, end: number): number {
  let open = -1;
  for (let i = start; i < end; i++) {
    if (bytes[i] === 0x7b /* { */) {
      open = i;
      break;
    }
  }
  if (open >= 0) {
    for (let i = open + 1; i < end; i++) {
      if (bytes[i] === 0x7d /* } */) {
        // `{}` (nothing between): the whole key is hashed.
        if (i > open + 1) return crc16(bytes, open + 1, i) & (SLOTS - 1);
        break;
      }
    }
  }
  return crc16(bytes, start, end) & (SLOTS - 1);
}
