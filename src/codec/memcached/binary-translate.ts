/**
 * A binary-protocol request, translated to one text/meta request for poolside's pooled (text)
 * connections, and that request's reply translated back into the binary response the client
 * expects: magic 0x81, the client's opcode and opaque, memcached's status codes and texts, CAS,
 * flags, the key for GETK/GATK.
 *
 * Every translated request is sent in its non-quiet form, so each has exactly one reply on the
 * shared connection, whoever else's requests are in flight there; the reply map returns null for
 * the outcomes a quiet opcode suppresses (a miss for GETQ/GETKQ/GATQ/GATKQ, success for the quiet
 * storage, delete, arithmetic and flush opcodes; errors are always sent, as memcached sends them).
 * The client's opaque never goes to a server: it is kept in the map and given back.
 *
 * Where memcached's binary handler answers without looking at its data (malformed lengths, an
 * unknown opcode, SASL, QUIT, NOOP) poolside answers itself, byte for byte as memcached 1.6 does; the
 * requests memcached closes the connection after (`close: true`) make poolside close it too.
 */
import type { FailureReason } from '../../errors.js';
import { FAILURE_REASONS } from '../../errors.js';
import { HEADER_BYTES, MAX_KEY_BYTES, Op, Status, binaryError, binaryResponse, isStorageOp, packet, readRequestHeader } from './binary-protocol.js';

/** What the client gets for a reply (the server's, or poolside's own error); null: nothing. */
export type BinaryReplyMap = (reply: Buffer) => Buffer | null;

export type BinaryIntake =
  /** Send `bytes` (one text/meta request, one reply) and give the client what `reply` makes of its answer. */
  | { kind: 'send'; bytes: Buffer; reply: BinaryReplyMap }
  /**
   * Answered by poolside (null: nothing, QUITQ). `close`: the client is closed once it is written
   * (QUIT, and what memcached closes the connection after: lengths that do not add up, a key too long).
   */
  | { kind: 'answer'; reply: Buffer | null; close: boolean };

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([name, code]) => [code, name]));

/** The opcode's name (`GETKQ`), or `binary 0x42` for one memcached does not know. */
export function opcodeName(opcode: number): string {
  return NAMES[opcode] ?? `binary 0x${opcode.toString(16).padStart(2, '0')}`;
}

/** Quiet opcodes and their loud forms. */
const LOUD: Readonly<Record<number, number>> = {
  [Op.GETQ]: Op.GET,
  [Op.GETKQ]: Op.GETK,
  [Op.SETQ]: Op.SET,
  [Op.ADDQ]: Op.ADD,
  [Op.REPLACEQ]: Op.REPLACE,
  [Op.DELETEQ]: Op.DELETE,
  [Op.INCREMENTQ]: Op.INCREMENT,
  [Op.DECREMENTQ]: Op.DECREMENT,
  [Op.QUITQ]: Op.QUIT,
  [Op.FLUSHQ]: Op.FLUSH,
  [Op.APPENDQ]: Op.APPEND,
  [Op.PREPENDQ]: Op.PREPEND,
  [Op.GATQ]: Op.GAT,
  [Op.GATKQ]: Op.GATK,
};

/** Reasons poolside fails a request for that a retry may cure: temporary failure (0x86), not internal (0x84). */
const TRANSIENT: ReadonlySet<string> = new Set<FailureReason>(['POOL_TIMEOUT', 'QUEUE_FULL', 'NO_HEALTHY_SERVER', 'REQUEST_TIMEOUT', 'DRAINING', 'TOO_MANY_CLIENTS']);
const REASONS: ReadonlySet<string> = new Set<string>(FAILURE_REASONS);

/** The largest exptime a text request takes (memcached parses it as a signed 32-bit number). */
const MAX_EXPTIME = 0x7fffffff;
/** INCREMENT/DECREMENT with this expiration do not create a missing item. */
const NO_CREATE = 0xffffffff;
const CRLF = '\r\n';

export function translateBinary(request: Buffer): BinaryIntake {
  const h = readRequestHeader(request);
  const opcode = h.opcode;
  const opaque = h.opaque;
  const loud = LOUD[opcode] ?? opcode;
  const quiet = loud !== opcode;
  const { keyLength, extrasLength, bodyLength } = h;

  const fail = (status: number, close: boolean, text?: string): BinaryIntake => ({ kind: 'answer', reply: binaryError(opcode, opaque, status, text), close });
  const shape = shapeError(request);
  if (shape !== null) return fail(shape, true);
  // The decoder delivered a storage request without its value: too large to buffer (memcached: E2BIG).
  if (request.length < HEADER_BYTES + bodyLength) return fail(Status.E2BIG, false);
  const extras = request.subarray(HEADER_BYTES, HEADER_BYTES + extrasLength);
  const key = request.subarray(HEADER_BYTES + extrasLength, HEADER_BYTES + extrasLength + keyLength);
  const value = request.subarray(HEADER_BYTES + extrasLength + keyLength, HEADER_BYTES + bodyLength);

  switch (loud) {
    case Op.GET:
    case Op.GETK: {
      return retrieve(opcode, opaque, key, null, loud === Op.GETK, quiet);
    }
    case Op.GAT:
    case Op.GATK:
    case Op.TOUCH: {
      return retrieve(opcode, opaque, key, exptime(extras.readUInt32BE(0)), loud === Op.GATK, quiet, loud === Op.TOUCH);
    }
    case Op.SET:
    case Op.ADD:
    case Op.REPLACE: {
      // With a CAS, memcached stores as `cas` whatever the opcode said (meta: mode S with C).
      const mode = h.cas !== 0n ? '' : loud === Op.ADD ? ' ME' : loud === Op.REPLACE ? ' MR' : '';
      const flags = ` F${extras.readUInt32BE(0)} T${exptime(extras.readUInt32BE(4))}`;
      return store(opcode, opaque, loud, quiet, key, value, `${flags}${casToken(h.cas)}${mode}`);
    }
    case Op.APPEND:
    case Op.PREPEND: {
      return store(opcode, opaque, loud, quiet, key, value, `${casToken(h.cas)} M${loud === Op.APPEND ? 'A' : 'P'}`);
    }
    case Op.DELETE: {
      const line = metaLine('md ', key, '', `${casToken(h.cas)}${CRLF}`);
      if (line === null) return fail(Status.EINVAL, false);
      return send(line, (reply) => {
        const meta = parseMeta(reply);
        if (meta.code === 'HD') return quiet ? null : packet(opcode, Status.OK, opaque, 0n, 0, 0, 0);
        if (meta.code === 'NF') return binaryError(opcode, opaque, Status.KEY_ENOENT);
        if (meta.code === 'EX') return binaryError(opcode, opaque, Status.KEY_EEXISTS);
        return errorResponse(opcode, opaque, reply);
      });
    }
    case Op.INCREMENT:
    case Op.DECREMENT: {
      const delta = extras.readBigUInt64BE(0);
      const initial = extras.readBigUInt64BE(8);
      const expiration = extras.readUInt32BE(16);
      const create = expiration === NO_CREATE ? '' : ` N${exptime(expiration)} J${initial}`;
      const mode = loud === Op.DECREMENT ? ' MD' : '';
      const line = metaLine('ma ', key, '', `${mode} D${delta}${create}${casToken(h.cas)} v c${CRLF}`);
      if (line === null) return fail(Status.EINVAL, false);
      return send(line, (reply) => {
        const meta = parseMeta(reply);
        if (meta.code === 'VA' && meta.data !== null) {
          if (quiet) return null;
          const out = packet(opcode, Status.OK, opaque, meta.cas, 0, 0, 8);
          out.writeBigUInt64BE(BigInt(meta.data.toString('latin1')), HEADER_BYTES);
          return out;
        }
        if (meta.code === 'NF') return binaryError(opcode, opaque, Status.KEY_ENOENT);
        if (meta.code === 'NS') return binaryError(opcode, opaque, Status.NOT_STORED);
        if (meta.code === 'EX') return binaryError(opcode, opaque, Status.KEY_EEXISTS);
        return errorResponse(opcode, opaque, reply);
      });
    }
    case Op.FLUSH: {
      const delay = extrasLength === 4 ? exptime(extras.readUInt32BE(0)) : 0;
      return send(delay > 0 ? `flush_all ${delay}${CRLF}` : `flush_all${CRLF}`, (reply) => {
        const line = lineOf(reply);
        if (line === 'OK') return quiet ? null : binaryResponse({ opcode, status: Status.OK, opaque });
        // memcached -F (flush_all disabled): the binary handler says auth error.
        if (line.startsWith('CLIENT_ERROR flush_all not allowed')) return binaryError(opcode, opaque, Status.AUTH_ERROR);
        return errorResponse(opcode, opaque, reply);
      });
    }
    case Op.NOOP: {
      // Answered by poolside, as `mn` is: replies reach the client in request order, so when its
      // turn comes every request before it has been answered, on whichever servers they ran.
      return { kind: 'answer', reply: binaryResponse({ opcode, status: Status.OK, opaque }), close: false };
    }
    case Op.VERSION: {
      return send(`version${CRLF}`, (reply) => {
        const line = lineOf(reply);
        if (line.startsWith('VERSION ')) return binaryResponse({ opcode, status: Status.OK, opaque, value: line.slice(8) });
        return errorResponse(opcode, opaque, reply);
      });
    }
    case Op.STAT: {
      const group = key.toString('latin1');
      // A group name goes on the text line as it is: no line breaks or control bytes in it.
      if (!/^[\x20-\x7e]*$/.test(group)) return fail(Status.KEY_ENOENT, false);
      return send(group === '' ? `stats${CRLF}` : `stats ${group}${CRLF}`, (reply) => statsResponse(opcode, opaque, reply));
    }
    case Op.QUIT: {
      return { kind: 'answer', reply: quiet ? null : binaryResponse({ opcode, status: Status.OK, opaque }), close: true };
    }
    case Op.SASL_LIST_MECHS:
    case Op.SASL_AUTH:
    case Op.SASL_STEP: {
      // memcached without SASL says "Unknown command"; poolside says why.
      return fail(Status.UNKNOWN_COMMAND, false, 'Unknown command: poolside does not do SASL (credentials to servers belong in its config)');
    }
    default:
      // VERBOSITY and everything memcached 1.6 does not know.
      return fail(Status.UNKNOWN_COMMAND, false);
  }
}

/**
 * What memcached answers, and then closes the connection, for a request whose lengths do not fit
 * its opcode (its dispatch_bin_command): EINVAL, or UNKNOWN_COMMAND when the key and extras do not
 * fit in the body; null when the request has the shape its opcode needs (or an opcode memcached
 * does not know, which it answers without closing).
 */
export function shapeError(request: Buffer): number | null {
  const opcode = request[1];
  const keyLength = request.readUInt16BE(2);
  const extrasLength = request[4];
  const bodyLength = request.readUInt32BE(8);
  if (keyLength > bodyLength || keyLength + extrasLength > bodyLength) return Status.UNKNOWN_COMMAND;
  if (keyLength > MAX_KEY_BYTES) return Status.EINVAL;
  // Only a storage request's value is ever counted away (binary-request.ts).
  if (request.length < HEADER_BYTES + bodyLength && !isStorageOp(opcode)) return Status.EINVAL;
  const bare = extrasLength === 0 && keyLength === 0 && bodyLength === 0;
  let fits: boolean;
  switch (LOUD[opcode] ?? opcode) {
    case Op.GET:
    case Op.GETK:
      fits = extrasLength === 0 && bodyLength === keyLength && keyLength > 0;
      break;
    case Op.GAT:
    case Op.GATK:
    case Op.TOUCH:
      fits = extrasLength === 4 && keyLength !== 0;
      break;
    case Op.SET:
    case Op.ADD:
    case Op.REPLACE:
      fits = extrasLength === 8 && keyLength !== 0 && bodyLength >= keyLength + 8;
      break;
    case Op.APPEND:
    case Op.PREPEND:
      fits = keyLength > 0 && extrasLength === 0;
      break;
    case Op.DELETE:
      fits = keyLength > 0 && extrasLength === 0 && bodyLength === keyLength;
      break;
    case Op.INCREMENT:
    case Op.DECREMENT:
      fits = keyLength > 0 && extrasLength === 20 && bodyLength === keyLength + extrasLength;
      break;
    case Op.FLUSH:
      fits = keyLength === 0 && bodyLength === extrasLength && (extrasLength === 0 || extrasLength === 4);
      break;
    case Op.NOOP:
    case Op.VERSION:
    case Op.QUIT:
    case Op.SASL_LIST_MECHS:
      fits = bare;
      break;
    case Op.STAT:
      fits = extrasLength === 0;
      break;
    case Op.SASL_AUTH:
    case Op.SASL_STEP:
      fits = extrasLength === 0 && keyLength !== 0;
      break;
    default:
      fits = true;
  }
  return fits ? null : Status.EINVAL;
}

function send(text: string | Buffer, reply: BinaryReplyMap): BinaryIntake {
  return { kind: 'send', bytes: typeof text === 'string' ? Buffer.from(text, 'latin1') : text, reply };
}

/** GET/GETK/GAT/GATK/TOUCH and quiet forms: `mg` with flags, CAS, value (not for TOUCH), a new TTL (GAT/TOUCH). */
function retrieve(opcode: number, opaque: number, key: Buffer, ttl: number | null, withKey: boolean, quiet: boolean, touchOnly = false): BinaryIntake {
  const line = metaLine('mg ', key, '', `${ttl === null ? '' : ` T${ttl}`} f${touchOnly ? '' : ' v'} c${CRLF}`);
  if (line === null) return { kind: 'answer', reply: binaryError(opcode, opaque, Status.EINVAL), close: false };
  // A view of the request: the session keeps request bytes as they are (never reused).
  const responseKey = withKey ? key : null;
  return send(line, (reply) => {
    const meta = parseMeta(reply);
    if (meta.code === 'VA' || meta.code === 'HD') {
      const data = touchOnly ? null : meta.data;
      const keyLength = responseKey === null ? 0 : responseKey.length;
      const out = packet(opcode, Status.OK, opaque, meta.cas, 4, keyLength, data === null ? 0 : data.length);
      out.writeUInt32BE(meta.flags, HEADER_BYTES);
      if (responseKey !== null) responseKey.copy(out, HEADER_BYTES + 4);
      if (data !== null) data.copy(out, HEADER_BYTES + 4 + keyLength);
      return out;
    }
    if (meta.code === 'EN') {
      if (quiet) return null;
      // GETK/GATK: the key, no text (memcached's write_bin_miss_response).
      if (responseKey !== null) return binaryResponse({ opcode, status: Status.KEY_ENOENT, opaque, key: responseKey });
      return binaryError(opcode, opaque, Status.KEY_ENOENT);
    }
    return errorResponse(opcode, opaque, reply);
  });
}

/** SET/ADD/REPLACE/APPEND/PREPEND (and quiet forms) as `ms … c`. */
function store(opcode: number, opaque: number, loud: number, quiet: boolean, key: Buffer, value: Buffer, flags: string): BinaryIntake {
  const head = metaLine('ms ', key, ` ${value.length}`, `${flags} c${CRLF}`);
  if (head === null) return { kind: 'answer', reply: binaryError(opcode, opaque, Status.EINVAL), close: false };
  const bytes = Buffer.allocUnsafe(head.length + value.length + 2);
  head.copy(bytes, 0);
  value.copy(bytes, head.length);
  bytes[bytes.length - 2] = 0x0d;
  bytes[bytes.length - 1] = 0x0a;
  return send(bytes, (reply) => {
    const meta = parseMeta(reply);
    switch (meta.code) {
      case 'HD':
        return quiet ? null : packet(opcode, Status.OK, opaque, meta.cas, 0, 0, 0);
      case 'NS':
        // What memcached's binary handler makes of NOT_STORED for each command.
        return binaryError(opcode, opaque, loud === Op.ADD ? Status.KEY_EEXISTS : loud === Op.REPLACE ? Status.KEY_ENOENT : Status.NOT_STORED);
      case 'EX':
        return binaryError(opcode, opaque, Status.KEY_EEXISTS);
      case 'NF':
        return binaryError(opcode, opaque, Status.KEY_ENOENT);
      default:
        return errorResponse(opcode, opaque, reply);
    }
  });
}

/** `STAT name value` lines → one packet each, then the empty packet that ends the answer. */
function statsResponse(opcode: number, opaque: number, reply: Buffer): Buffer {
  const text = reply.toString('latin1');
  const first = text.slice(0, text.indexOf('\r\n'));
  if (first.startsWith('ERROR') || first.startsWith('CLIENT_ERROR')) return binaryError(opcode, opaque, Status.KEY_ENOENT);
  if (first.startsWith('SERVER_ERROR')) return errorResponse(opcode, opaque, reply);
  const packets: Buffer[] = [];
  for (const line of text.split('\r\n')) {
    if (!line.startsWith('STAT ')) continue;
    const space = line.indexOf(' ', 5);
    const name = space < 0 ? line.slice(5) : line.slice(5, space);
    const value = space < 0 ? '' : line.slice(space + 1);
    packets.push(binaryResponse({ opcode, status: Status.OK, opaque, key: Buffer.from(name, 'latin1'), value }));
  }
  packets.push(binaryResponse({ opcode, status: Status.OK, opaque }));
  return Buffer.concat(packets);
}

/**
 * For a request poolside refuses unrun (DRAINING): its error line as a binary error with the
 * request's opcode and opaque, whatever translateBinary would have made of the request (NOOP and
 * the opcodes poolside refuses are answered here, with no map for an error line).
 */
export function refusalResponse(request: Buffer): (reply: Buffer) => Buffer {
  const h = readRequestHeader(request);
  return (reply) => errorResponse(h.opcode, h.opaque, reply);
}

/** An error line (the server's, or poolside's own `SERVER_ERROR poolside REASON …`) as a binary error. */
function errorResponse(opcode: number, opaque: number, reply: Buffer): Buffer {
  const line = lineOf(reply);
  if (line.startsWith('SERVER_ERROR ')) {
    const text = line.slice('SERVER_ERROR '.length);
    if (text.startsWith('poolside ')) {
      const reason = text.slice(9, text.indexOf(' ', 9) < 0 ? undefined : text.indexOf(' ', 9));
      return binaryError(opcode, opaque, REASONS.has(reason) && TRANSIENT.has(reason) ? Status.ETMPFAIL : Status.EINTERNAL, text);
    }
    if (text === 'object too large for cache') return binaryError(opcode, opaque, Status.E2BIG);
    if (/out of memory/i.test(text)) return binaryError(opcode, opaque, Status.ENOMEM);
    return binaryError(opcode, opaque, Status.EINTERNAL, text);
  }
  if (line.startsWith('CLIENT_ERROR ')) {
    const text = line.slice('CLIENT_ERROR '.length);
    if (text.startsWith('cannot increment or decrement non-numeric value')) return binaryError(opcode, opaque, Status.DELTA_BADVAL);
    return binaryError(opcode, opaque, Status.EINVAL, text);
  }
  if (line === 'ERROR') return binaryError(opcode, opaque, Status.UNKNOWN_COMMAND);
  return binaryError(opcode, opaque, Status.EINTERNAL, `poolside: unexpected reply from the server: ${line.slice(0, 200)}`);
}

interface MetaReply {
  /** The two-letter code (`VA`, `HD`, `EN`…), or '' for any other reply (`VERSION`, errors). */
  code: string;
  flags: number;
  cas: bigint;
  /** The data block of a `VA` reply. */
  data: Buffer | null;
}

const SPACE = 0x20;
const CR = 0x0d;

/** The reply's first line, without its CRLF. */
function lineOf(reply: Buffer): string {
  const eol = reply.indexOf(CRLF);
  return reply.toString('latin1', 0, eol < 0 ? reply.length : eol);
}

/** Digits `[from, to)` as a number (flags are 32-bit; a CAS is 64-bit, exact as a bigint). */
function digits(reply: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + (reply[i] - 0x30);
  return n;
}

/** A meta reply read byte by byte: its code, the `f` and `c` flags it returned, its data block. */
function parseMeta(reply: Buffer): MetaReply {
  const length = reply.length;
  const code = length >= 3 && (reply[2] === SPACE || reply[2] === CR) ? String.fromCharCode(reply[0], reply[1]) : '';
  let flags = 0;
  let cas = 0n;
  let data: Buffer | null = null;
  if (code !== 'VA' && code !== 'HD') return { code, flags, cas, data };
  let i = 2;
  let size = 0;
  if (code === 'VA') {
    const from = ++i;
    while (i < length && reply[i] !== SPACE && reply[i] !== CR) i++;
    size = digits(reply, from, i);
  }
  while (i < length && reply[i] !== CR) {
    if (reply[i] === SPACE) {
      i++;
      continue;
    }
    const letter = reply[i];
    const from = ++i;
    while (i < length && reply[i] !== SPACE && reply[i] !== CR) i++;
    if (letter === 0x66) flags = digits(reply, from, i);
    // Past 2^53 a number loses digits: those CAS values are read as text.
    else if (letter === 0x63) cas = i - from < 16 ? BigInt(digits(reply, from, i)) : BigInt(reply.toString('latin1', from, i));
  }
  if (code === 'VA') data = reply.subarray(i + 2, i + 2 + size);
  return { code, flags, cas, data };
}

/**
 * A meta request line: `prefix`, the key, `afterKey`, the `b` flag when the key goes base64, then
 * `rest`. The key's bytes are copied as they are when a text line can carry them (printable, no
 * space); else base64 with `b` (memcached decodes it: the same item). null when even that does not
 * fit in a text key's 250 bytes (a binary key over 187 bytes with a space or control byte in it).
 */
function metaLine(prefix: string, key: Buffer, afterKey: string, rest: string): Buffer | null {
  const k = metaKey(key);
  if (k === null) return null;
  if (k.b === '') {
    const out = Buffer.allocUnsafe(prefix.length + key.length + afterKey.length + rest.length);
    let at = out.write(prefix, 0, 'latin1');
    at += key.copy(out, at);
    at += out.write(afterKey, at, 'latin1');
    out.write(rest, at, 'latin1');
    return out;
  }
  return Buffer.from(`${prefix}${k.token}${afterKey}${k.b}${rest}`, 'latin1');
}

/**
 * The key as a meta-command token: as it is when it is printable without spaces, else base64 with
 * the `b` flag (memcached decodes it: the same item). null when even that does not fit in a text
 * key's 250 bytes (a binary key over 187 bytes with a space or control byte in it).
 */
export function metaKey(key: Buffer): { token: string; b: string } | null {
  let plain = true;
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c <= 0x20 || c === 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) return { token: key.toString('latin1'), b: '' };
  const encoded = key.toString('base64');
  return encoded.length > MAX_KEY_BYTES ? null : { token: encoded, b: ' b' };
}

function casToken(cas: bigint): string {
  return cas === 0n ? '' : ` C${cas}`;
}

/** A binary exptime (unsigned 32-bit) as text takes it: clamped to the largest signed one. */
function exptime(seconds: number): number {
  return seconds > MAX_EXPTIME ? MAX_EXPTIME : seconds;
}
