/**
 * The binary request framer and the translator's own answers, without a server: framing whole,
 * byte by byte and split at every position; a too-large value counted away, never buffered; what
 * poolside answers itself (malformed lengths, unknown opcodes, SASL, QUIT) and how poolside's own
 * errors and the server's error lines become binary statuses. What memcached answers is checked
 * against memcached itself in test/integration/memcached-binary-oracle.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ProtocolError, type ArgView } from '../../src/codec/codec.js';
import { HEADER_BYTES, Op, Status, binaryRequest, parseResponses } from '../../src/codec/memcached/binary-protocol.js';
import { BinaryRequestDecoder } from '../../src/codec/memcached/binary-request.js';
import { metaKey, translateBinary, type BinaryIntake } from '../../src/codec/memcached/binary-translate.js';
import { memcachedCodec } from '../../src/codec/memcached/codec.js';

interface Framed {
  bytes: Buffer;
  key: string | null;
}

function frame(chunks: Buffer[], maxValue = 1024): { framed: Framed[]; decoder: BinaryRequestDecoder } {
  const framed: Framed[] = [];
  const decoder = new BinaryRequestDecoder(
    {
      onRequest(bytes: Buffer, args: ArgView) {
        framed.push({ bytes: Buffer.from(bytes), key: args.count > 0 ? bytes.toString('latin1', args.starts[0], args.ends[0]) : null });
      },
    },
    maxValue,
  );
  for (const chunk of chunks) decoder.push(chunk);
  return { framed, decoder };
}

function setExtras(flags: number, exp: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(flags, 0);
  b.writeUInt32BE(exp, 4);
  return b;
}

const REQUESTS = [
  binaryRequest({ opcode: Op.GETKQ, opaque: 1, key: 'a' }),
  binaryRequest({ opcode: Op.SET, opaque: 2, key: 'key', extras: setExtras(7, 0), value: 'hello world' }),
  binaryRequest({ opcode: Op.NOOP, opaque: 3 }),
  binaryRequest({ opcode: Op.INCREMENT, opaque: 4, key: 'n', extras: Buffer.alloc(20) }),
  binaryRequest({ opcode: Op.VERSION, opaque: 5 }),
];
const STREAM = Buffer.concat(REQUESTS);

function sendLine(intake: BinaryIntake): string {
  if (intake.kind !== 'send') throw new Error(`expected a send, got ${intake.kind}`);
  return intake.bytes.toString('latin1');
}

function only(bytes: Buffer | null) {
  if (bytes === null) throw new Error('expected a response, got nothing');
  const { packets, rest } = parseResponses(bytes);
  expect(rest.length).toBe(0);
  expect(packets.length).toBe(1);
  return packets[0];
}

function mapReply(intake: BinaryIntake, reply: string): Buffer | null {
  if (intake.kind !== 'send') throw new Error(`expected a send, got ${intake.kind}`);
  return intake.reply(Buffer.from(reply, 'latin1'));
}

describe('BinaryRequestDecoder', () => {
  it('frames requests whole, byte by byte and split at every position, with the key as argument 0', () => {
    const whole = frame([STREAM]).framed;
    expect(whole.map((f) => f.bytes)).toEqual(REQUESTS);
    expect(whole.map((f) => f.key)).toEqual(['a', 'key', null, 'n', null]);
    expect(frame([...STREAM].map((b) => Buffer.from([b]))).framed).toEqual(whole);
    for (let i = 1; i < STREAM.length; i++) {
      for (const j of [i + 1, i + 7, i + 30]) {
        if (j >= STREAM.length) continue;
        expect(frame([STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)]).framed).toEqual(whole);
      }
    }
  });

  it('delivers a too-large storage request without its value, counts the value away, and frames what follows', () => {
    const big = binaryRequest({ opcode: Op.SETQ, opaque: 9, key: 'big', extras: setExtras(0, 0), value: Buffer.alloc(5000, 0x61) });
    const next = binaryRequest({ opcode: Op.GET, opaque: 10, key: 'b' });
    const stream = Buffer.concat([big, next]);
    for (const size of [1, 7, 100, 4096, stream.length]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      const { framed, decoder } = frame(chunks, 1024);
      expect(framed.map((f) => f.bytes.length)).toEqual([HEADER_BYTES + 8 + 3, next.length]);
      expect(framed[1].bytes).toEqual(next);
      expect(decoder.buffered).toBe(0);
      const answer = translateBinary(framed[0].bytes);
      expect(answer.kind).toBe('answer');
      const p = only(answer.kind === 'answer' ? answer.reply : null);
      expect([p.opcode, p.status, p.opaque, p.value.toString()]).toEqual([Op.SETQ, Status.E2BIG, 9, 'Too large.']);
    }
  });

  it('holds no more than the request being framed while a value arrives slowly', () => {
    const { decoder } = frame([binaryRequest({ opcode: Op.SET, key: 'k', extras: setExtras(0, 0), value: Buffer.alloc(1000) }).subarray(0, 500)], 1024);
    expect(decoder.buffered).toBe(500);
  });

  it('refuses a stream that is not binary requests, and a non-storage body past the limit', () => {
    const bad = Buffer.from(binaryRequest({ opcode: Op.NOOP }));
    bad[0] = 0x81;
    expect(() => frame([bad])).toThrow(ProtocolError);
    const huge = Buffer.alloc(HEADER_BYTES);
    huge[0] = 0x80;
    huge[1] = Op.GET;
    huge.writeUInt32BE(10_000_000, 8);
    expect(() => frame([huge], 1024)).toThrow(/larger than poolside accepts/);
  });
});

describe('translateBinary', () => {
  it('sends each request as one non-quiet meta request', () => {
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.GETKQ, key: 'k' })))).toBe('mg k f v c\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.GATQ, key: 'k', extras: Buffer.from([0, 0, 0, 60]) })))).toBe('mg k T60 f v c\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.TOUCH, key: 'k', extras: Buffer.from([0, 0, 0, 60]) })))).toBe('mg k T60 f c\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.ADDQ, key: 'k', extras: setExtras(3, 10), value: 'v' })))).toBe('ms k 1 F3 T10 ME c\r\nv\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.REPLACE, key: 'k', extras: setExtras(0, 0), value: 'v', cas: 5n })))).toBe('ms k 1 F0 T0 C5 c\r\nv\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.PREPENDQ, key: 'k', value: 'v' })))).toBe('ms k 1 MP c\r\nv\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.DELETEQ, key: 'k' })))).toBe('md k\r\n');
    const incr = Buffer.alloc(20);
    incr.writeBigUInt64BE(2n, 0);
    incr.writeBigUInt64BE(10n, 8);
    incr.writeUInt32BE(0xffffffff, 16);
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.INCREMENTQ, key: 'n', extras: incr })))).toBe('ma n D2 v c\r\n');
    incr.writeUInt32BE(0xfffffffe, 16);
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.DECREMENT, key: 'n', extras: incr })))).toBe('ma n MD D2 N2147483647 J10 v c\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.FLUSHQ, extras: Buffer.from([0, 0, 0, 9]) })))).toBe('flush_all 9\r\n');
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.STAT, key: 'items' })))).toBe('stats items\r\n');
  });

  it('sends keys a text line cannot carry as base64 (b flag), and refuses those too long for it', () => {
    expect(metaKey(Buffer.from('plain\xe9', 'latin1'))).toEqual({ token: 'plain\xe9', b: '' });
    expect(sendLine(translateBinary(binaryRequest({ opcode: Op.SET, key: 'a b', extras: setExtras(0, 0), value: 'v' })))).toBe('ms YSBi 1 b F0 T0 c\r\nv\r\n');
    const long = translateBinary(binaryRequest({ opcode: Op.GET, opaque: 4, key: ' '.repeat(200) }));
    expect(long.kind).toBe('answer');
    const p = only(long.kind === 'answer' ? long.reply : null);
    expect([p.status, p.opaque]).toEqual([Status.EINVAL, 4]);
  });

  it('answers what memcached answers without its data, closing where memcached closes', () => {
    const cases: [Buffer, number, boolean, Buffer | null][] = [
      [binaryRequest({ opcode: Op.GET, opaque: 1 }), Status.EINVAL, true, null],
      [binaryRequest({ opcode: Op.GET, opaque: 1, key: 'x'.repeat(251) }), Status.EINVAL, true, null],
      [binaryRequest({ opcode: Op.SET, opaque: 1, key: 'k', value: 'v' }), Status.EINVAL, true, null],
      [binaryRequest({ opcode: Op.VERBOSITY, opaque: 1, extras: Buffer.alloc(4) }), Status.UNKNOWN_COMMAND, false, null],
      [binaryRequest({ opcode: 0x42, opaque: 1 }), Status.UNKNOWN_COMMAND, false, null],
      [binaryRequest({ opcode: Op.SASL_LIST_MECHS, opaque: 1 }), Status.UNKNOWN_COMMAND, false, null],
      [binaryRequest({ opcode: Op.SASL_AUTH, opaque: 1, key: 'PLAIN', value: '\0u\0p' }), Status.UNKNOWN_COMMAND, false, null],
    ];
    for (const [request, status, close] of cases) {
      const intake = translateBinary(request);
      expect(intake.kind).toBe('answer');
      if (intake.kind !== 'answer') continue;
      const p = only(intake.reply);
      expect([p.opcode, p.status, p.opaque, intake.close]).toEqual([request[1], status, 1, close]);
    }
    const sasl = translateBinary(binaryRequest({ opcode: Op.SASL_LIST_MECHS }));
    expect(only(sasl.kind === 'answer' ? sasl.reply : null).value.toString()).toMatch(/poolside does not do SASL/);
    // key + extras longer than the body: memcached closes with "unknown command".
    const torn = binaryRequest({ opcode: Op.GET, key: 'abc' });
    torn.writeUInt32BE(2, 8);
    const tornIntake = translateBinary(torn.subarray(0, HEADER_BYTES + 2));
    expect(tornIntake.kind === 'answer' && tornIntake.close).toBe(true);
    expect(only(tornIntake.kind === 'answer' ? tornIntake.reply : null).status).toBe(Status.UNKNOWN_COMMAND);
    const quit = translateBinary(binaryRequest({ opcode: Op.QUIT, opaque: 7 }));
    expect(quit.kind === 'answer' && quit.close).toBe(true);
    expect(only(quit.kind === 'answer' ? quit.reply : null).status).toBe(Status.OK);
    const quitq = translateBinary(binaryRequest({ opcode: Op.QUITQ, opaque: 7 }));
    expect(quitq).toEqual({ kind: 'answer', reply: null, close: true });
  });

  it("maps replies back with the client's opcode and opaque, nothing for what quiet forms suppress", () => {
    const getkq = translateBinary(binaryRequest({ opcode: Op.GETKQ, opaque: 0xdeadbeef, key: 'k' }));
    expect(mapReply(getkq, 'EN\r\n')).toBeNull();
    const hit = only(mapReply(getkq, 'VA 3 f9 c77\r\nabc\r\n'));
    expect([hit.opcode, hit.status, hit.opaque, hit.cas, hit.extras.readUInt32BE(0), hit.key.toString(), hit.value.toString()]).toEqual([Op.GETKQ, 0, 0xdeadbeef, 77n, 9, 'k', 'abc']);
    const getk = translateBinary(binaryRequest({ opcode: Op.GETK, opaque: 1, key: 'k' }));
    const miss = only(mapReply(getk, 'EN\r\n'));
    expect([miss.status, miss.key.toString(), miss.value.length]).toEqual([Status.KEY_ENOENT, 'k', 0]);
    const setq = translateBinary(binaryRequest({ opcode: Op.SETQ, opaque: 2, key: 'k', extras: setExtras(0, 0), value: 'v' }));
    expect(mapReply(setq, 'HD c5\r\n')).toBeNull();
    expect(only(mapReply(setq, 'EX\r\n')).status).toBe(Status.KEY_EEXISTS);
    const noop = translateBinary(binaryRequest({ opcode: Op.NOOP, opaque: 3 }));
    expect(noop.kind === 'answer' && only(noop.reply).opaque).toBe(3);
  });

  it("turns poolside's own errors into temporary-failure or internal-error statuses with the message", () => {
    const getq = translateBinary(binaryRequest({ opcode: Op.GETQ, opaque: 42, key: 'k' }));
    const timeout = only(mapReply(getq, 'SERVER_ERROR poolside REQUEST_TIMEOUT no reply within 1000ms\r\n'));
    expect([timeout.opcode, timeout.status, timeout.opaque, timeout.value.toString()]).toEqual([Op.GETQ, Status.ETMPFAIL, 42, 'poolside REQUEST_TIMEOUT no reply within 1000ms']);
    expect(only(mapReply(getq, 'SERVER_ERROR poolside NO_HEALTHY_SERVER none\r\n')).status).toBe(Status.ETMPFAIL);
    expect(only(mapReply(getq, 'SERVER_ERROR poolside PROTOCOL_ERROR bad\r\n')).status).toBe(Status.EINTERNAL);
    expect(only(mapReply(getq, 'SERVER_ERROR out of memory storing object\r\n')).status).toBe(Status.ENOMEM);
    const set = translateBinary(binaryRequest({ opcode: Op.SET, key: 'k', extras: setExtras(0, 0), value: 'v' }));
    expect(only(mapReply(set, 'SERVER_ERROR object too large for cache\r\n')).status).toBe(Status.E2BIG);
    const incr = translateBinary(binaryRequest({ opcode: Op.INCREMENT, key: 'k', extras: Buffer.alloc(20) }));
    expect(only(mapReply(incr, 'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n')).status).toBe(Status.DELTA_BADVAL);
  });

  it('answers STAT with one packet per statistic and an empty one at the end', () => {
    const stat = translateBinary(binaryRequest({ opcode: Op.STAT, opaque: 8 }));
    const out = mapReply(stat, 'STAT pid 12\r\nSTAT version 1.6.18\r\nSTAT libevent 2.1.12-stable\r\nEND\r\n');
    const packets = parseResponses(out ?? Buffer.alloc(0)).packets;
    expect(packets.map((p) => [p.opcode, p.opaque, p.key.toString(), p.value.toString()])).toEqual([
      [Op.STAT, 8, 'pid', '12'],
      [Op.STAT, 8, 'version', '1.6.18'],
      [Op.STAT, 8, 'libevent', '2.1.12-stable'],
      [Op.STAT, 8, '', ''],
    ]);
    const reset = translateBinary(binaryRequest({ opcode: Op.STAT, key: 'reset' }));
    expect(parseResponses(mapReply(reset, 'RESET\r\n') ?? Buffer.alloc(0)).packets.length).toBe(1);
    expect(only(mapReply(stat, 'ERROR\r\n')).status).toBe(Status.KEY_ENOENT);
  });
});

describe('the memcached codec picks binary or text from the first byte', () => {
  function decode(chunks: Buffer[]): { names: string[] } {
    const names: string[] = [];
    const decoder = memcachedCodec.requestDecoder(
      {
        onRequest(bytes: Buffer, args: ArgView) {
          names.push(memcachedCodec.classify(bytes, args).name);
        },
      },
      1024 * 1024,
    );
    for (const chunk of chunks) decoder.push(chunk);
    return { names };
  }

  it('frames a stream that starts with 0x80 as binary, whatever the split', () => {
    const stream = Buffer.concat([binaryRequest({ opcode: Op.GETKQ, key: 'a' }), binaryRequest({ opcode: Op.VERSION }), binaryRequest({ opcode: Op.NOOP })]);
    const whole = decode([stream]).names;
    expect(whole).toEqual(['GETKQ', 'version', 'NOOP']);
    for (let i = 0; i <= stream.length; i++) expect(decode([Buffer.alloc(0), stream.subarray(0, i), stream.subarray(i)]).names).toEqual(whole);
  });

  it('keeps a text stream text, even a line that starts with 0x80', () => {
    const line = Buffer.concat([Buffer.from('get a\r\n'), Buffer.from([0x80]), Buffer.from('x'.repeat(30) + '\r\nversion\r\n')]);
    expect(decode([line]).names).toEqual(['get', 'unknown', 'version']);
  });
});
