/**
 * memcached's binary protocol, as far as poolside speaks it: the 24-byte header, the opcodes the
 * PHP extension (libmemcached) sends, the status codes, and how a response packet is built.
 * Numbers are big-endian on the wire. Layout of a request (magic 0x80) and a response (0x81):
 *
 *   0 magic · 1 opcode · 2-3 key length · 4 extras length · 5 data type · 6-7 vbucket (request) or
 *   status (response) · 8-11 total body length · 12-15 opaque · 16-23 CAS · body: extras, key, value
 */

export const HEADER_BYTES = 24;
export const REQUEST_MAGIC = 0x80;
export const RESPONSE_MAGIC = 0x81;
/** memcached's KEY_MAX_LENGTH: a binary key may hold any byte, but no more than this many. */
export const MAX_KEY_BYTES = 250;

export const Op = {
  GET: 0x00,
  SET: 0x01,
  ADD: 0x02,
  REPLACE: 0x03,
  DELETE: 0x04,
  INCREMENT: 0x05,
  DECREMENT: 0x06,
  QUIT: 0x07,
  FLUSH: 0x08,
  GETQ: 0x09,
  NOOP: 0x0a,
  VERSION: 0x0b,
  GETK: 0x0c,
  GETKQ: 0x0d,
  APPEND: 0x0e,
  PREPEND: 0x0f,
  STAT: 0x10,
  SETQ: 0x11,
  ADDQ: 0x12,
  REPLACEQ: 0x13,
  DELETEQ: 0x14,
  INCREMENTQ: 0x15,
  DECREMENTQ: 0x16,
  QUITQ: 0x17,
  FLUSHQ: 0x18,
  APPENDQ: 0x19,
  PREPENDQ: 0x1a,
  VERBOSITY: 0x1b,
  TOUCH: 0x1c,
  GAT: 0x1d,
  GATQ: 0x1e,
  SASL_LIST_MECHS: 0x20,
  SASL_AUTH: 0x21,
  SASL_STEP: 0x22,
  GATK: 0x23,
  GATKQ: 0x24,
} as const;

export const Status = {
  OK: 0x00,
  KEY_ENOENT: 0x01,
  KEY_EEXISTS: 0x02,
  E2BIG: 0x03,
  EINVAL: 0x04,
  NOT_STORED: 0x05,
  DELTA_BADVAL: 0x06,
  AUTH_ERROR: 0x20,
  UNKNOWN_COMMAND: 0x81,
  ENOMEM: 0x82,
  NOT_SUPPORTED: 0x83,
  EINTERNAL: 0x84,
  EBUSY: 0x85,
  ETMPFAIL: 0x86,
} as const;

/** The value memcached puts in an error response when it gives no text of its own (write_bin_error). */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  [Status.KEY_ENOENT]: 'Not found',
  [Status.KEY_EEXISTS]: 'Data exists for key.',
  [Status.E2BIG]: 'Too large.',
  [Status.EINVAL]: 'Invalid arguments',
  [Status.NOT_STORED]: 'Not stored.',
  [Status.DELTA_BADVAL]: 'Non-numeric server-side value for incr or decr',
  [Status.AUTH_ERROR]: 'Auth failure.',
  [Status.UNKNOWN_COMMAND]: 'Unknown command',
  [Status.ENOMEM]: 'Out of memory',
};

/** The storage opcodes: their value is the part of the body a too-large request may not buffer. */
export function isStorageOp(opcode: number): boolean {
  return (
    (opcode >= Op.SET && opcode <= Op.REPLACE) ||
    opcode === Op.APPEND ||
    opcode === Op.PREPEND ||
    (opcode >= Op.SETQ && opcode <= Op.REPLACEQ) ||
    opcode === Op.APPENDQ ||
    opcode === Op.PREPENDQ
  );
}

/** The parts of a request header poolside reads (the vbucket and data type mean nothing to memcached). */
export interface RequestHeader {
  opcode: number;
  keyLength: number;
  extrasLength: number;
  bodyLength: number;
  /** Four bytes, kept as the client sent them: they are only ever given back. */
  opaque: number;
  cas: bigint;
}

export function readRequestHeader(bytes: Buffer): RequestHeader {
  return {
    opcode: bytes[1],
    keyLength: bytes.readUInt16BE(2),
    extrasLength: bytes[4],
    bodyLength: bytes.readUInt32BE(8),
    opaque: bytes.readUInt32BE(12),
    cas: bytes.readBigUInt64BE(16),
  };
}

export interface ResponseParts {
  opcode: number;
  status: number;
  opaque: number;
  cas?: bigint;
  extras?: Buffer;
  key?: Buffer;
  value?: Buffer | string;
}

/** A response packet's header, written into a buffer with room for its body (the caller writes the body). */
export function packet(opcode: number, status: number, opaque: number, cas: bigint, extrasLength: number, keyLength: number, valueLength: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + extrasLength + keyLength + valueLength);
  out[0] = RESPONSE_MAGIC;
  out[1] = opcode;
  out.writeUInt16BE(keyLength, 2);
  out[4] = extrasLength;
  out[5] = 0;
  out.writeUInt16BE(status, 6);
  out.writeUInt32BE(extrasLength + keyLength + valueLength, 8);
  out.writeUInt32BE(opaque, 12);
  out.writeBigUInt64BE(cas, 16);
  return out;
}

/** One response packet. */
export function binaryResponse(parts: ResponseParts): Buffer {
  const extras = parts.extras;
  const key = parts.key;
  const value = typeof parts.value === 'string' ? Buffer.from(parts.value, 'latin1') : parts.value;
  const out = packet(parts.opcode, parts.status, parts.opaque, parts.cas ?? 0n, extras?.length ?? 0, key?.length ?? 0, value?.length ?? 0);
  let at = HEADER_BYTES;
  if (extras !== undefined) at += extras.copy(out, at);
  if (key !== undefined) at += key.copy(out, at);
  if (value !== undefined) value.copy(out, at);
  return out;
}

/** An error response as memcached writes it: no extras, no key, the text as the value. */
export function binaryError(opcode: number, opaque: number, status: number, text?: string): Buffer {
  return binaryResponse({ opcode, status, opaque, value: text ?? STATUS_TEXT[status] ?? '' });
}

/** Parts of a response packet, for tests and for reading a server's answer (all views of `bytes`). */
export interface ParsedResponse {
  opcode: number;
  status: number;
  opaque: number;
  cas: bigint;
  extras: Buffer;
  key: Buffer;
  value: Buffer;
  /** The whole packet. */
  bytes: Buffer;
}

/**
 * Splits `bytes` into whole response packets; the rest (an incomplete packet) is returned as
 * `rest`. Throws on a byte that is not a response's magic where a packet must start.
 */
export function parseResponses(bytes: Buffer): { packets: ParsedResponse[]; rest: Buffer } {
  const packets: ParsedResponse[] = [];
  let at = 0;
  while (bytes.length - at >= HEADER_BYTES) {
    if (bytes[at] !== RESPONSE_MAGIC) throw new Error(`not a binary response at byte ${at}: 0x${bytes[at].toString(16)}`);
    const bodyLength = bytes.readUInt32BE(at + 8);
    if (bytes.length - at < HEADER_BYTES + bodyLength) break;
    const extrasLength = bytes[at + 4];
    const keyLength = bytes.readUInt16BE(at + 2);
    const body = at + HEADER_BYTES;
    packets.push({
      opcode: bytes[at + 1],
      status: bytes.readUInt16BE(at + 6),
      opaque: bytes.readUInt32BE(at + 12),
      cas: bytes.readBigUInt64BE(at + 16),
      extras: bytes.subarray(body, body + extrasLength),
      key: bytes.subarray(body + extrasLength, body + extrasLength + keyLength),
      value: bytes.subarray(body + extrasLength + keyLength, body + bodyLength),
      bytes: bytes.subarray(at, body + bodyLength),
    });
    at = body + bodyLength;
  }
  return { packets, rest: bytes.subarray(at) };
}

export interface RequestParts {
  opcode: number;
  opaque?: number;
  cas?: bigint;
  extras?: Buffer;
  key?: Buffer | string;
  value?: Buffer | string;
}

/** One request packet (tests and benches build requests with it; poolside itself never sends one). */
export function binaryRequest(parts: RequestParts): Buffer {
  const key = typeof parts.key === 'string' ? Buffer.from(parts.key, 'latin1') : parts.key;
  const value = typeof parts.value === 'string' ? Buffer.from(parts.value, 'latin1') : parts.value;
  const extrasLength = parts.extras?.length ?? 0;
  const keyLength = key?.length ?? 0;
  const valueLength = value?.length ?? 0;
  const out = Buffer.alloc(HEADER_BYTES + extrasLength + keyLength + valueLength);
  out[0] = REQUEST_MAGIC;
  out[1] = parts.opcode;
  out.writeUInt16BE(keyLength, 2);
  out[4] = extrasLength;
  out.writeUInt32BE(extrasLength + keyLength + valueLength, 8);
  out.writeUInt32BE(parts.opaque ?? 0, 12);
  out.writeBigUInt64BE(parts.cas ?? 0n, 16);
  let at = HEADER_BYTES;
  if (parts.extras !== undefined) at += parts.extras.copy(out, at);
  if (key !== undefined) at += key.copy(out, at);
  if (value !== undefined) value.copy(out, at);
  return out;
}
