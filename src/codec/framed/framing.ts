/**
 * The arithmetic of a declared frame (FramedConfig): how long a frame is from its header, and the
 * request-id field read and written in place. Pure; framer.ts feeds bytes through it, load.ts
 * checks the configured heartbeat frames with it.
 */
import type { FieldSize, FramedConfig } from '../../config/schema.js';

export type FrameLength = { ok: true; bytes: number } | { ok: false; message: string };

/** An unsigned field of 1, 2, 4 or 8 bytes; 8-byte values above 2^53 come back as Infinity (too large anyway). */
export function readField(bytes: Buffer, offset: number, size: FieldSize, littleEndian: boolean): number {
  switch (size) {
    case 1:
      return bytes[offset];
    case 2:
      return littleEndian ? bytes.readUInt16LE(offset) : bytes.readUInt16BE(offset);
    case 4:
      return littleEndian ? bytes.readUInt32LE(offset) : bytes.readUInt32BE(offset);
    case 8: {
      const value = littleEndian ? bytes.readBigUInt64LE(offset) : bytes.readBigUInt64BE(offset);
      return value > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(value);
    }
  }
}

/**
 * The whole frame's size in bytes, header included, from its header (at least headerSize bytes at
 * `at`): checked against the header size (a frame shorter than its own header is malformed) and
 * maxFrameBytes before a byte of the body is buffered.
 */
export function frameLength(config: FramedConfig, bytes: Buffer, at = 0): FrameLength {
  const { length, headerSize, maxFrameBytes } = config;
  const field = readField(bytes, at + length.offset, length.size, length.endian === 'little');
  const total = field + length.adjustment + (length.includesHeader ? 0 : headerSize);
  if (total < headerSize) {
    return { ok: false, message: `malformed frame: its length field says ${field}, which makes the frame ${total} bytes, shorter than its ${headerSize}-byte header` };
  }
  if (total > maxFrameBytes) {
    return { ok: false, message: `frame of ${Number.isFinite(total) ? total : 'more than 2^53'} bytes is larger than framed.max_frame (${maxFrameBytes} bytes)` };
  }
  return { ok: true, bytes: total };
}

/** The request-id field's bytes (a copy, so the frame may be rewritten afterwards). */
export function readId(field: { offset: number; size: FieldSize }, frame: Buffer): Buffer {
  return Buffer.from(frame.subarray(field.offset, field.offset + field.size));
}

/** The id field as a number, for the connection's map of ids in flight (8-byte ids by their low 48 bits plus high bits folded: see idKey). */
export function idKey(field: { offset: number; size: FieldSize }, frame: Buffer): number {
  if (field.size === 8) {
    // poolside writes ids below 2^32, so a reply to one of its own requests always has the high half 0.
    const high = frame.readUInt32BE(field.offset);
    const low = frame.readUInt32BE(field.offset + 4);
    return high === 0 ? low : -1;
  }
  return readField(frame, field.offset, field.size, false);
}

/** Writes `id` (big-endian, below 2^(8·size) and 2^32) into the id field of `frame`, in place. */
export function writeId(field: { offset: number; size: FieldSize }, frame: Buffer, id: number): void {
  switch (field.size) {
    case 1:
      frame[field.offset] = id;
      return;
    case 2:
      frame.writeUInt16BE(id, field.offset);
      return;
    case 4:
      frame.writeUInt32BE(id, field.offset);
      return;
    case 8:
      frame.writeUInt32BE(0, field.offset);
      frame.writeUInt32BE(id, field.offset + 4);
  }
}

/** How many distinct ids poolside can give out on one connection with this field (capped at 2^32). */
export function idSpace(size: FieldSize): number {
  return size >= 4 ? 2 ** 32 : 2 ** (8 * size);
}
