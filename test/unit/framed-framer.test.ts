/**
 * The framed codec's framer and request-id rewriting: every framing case whole, byte by byte and
 * split at every position; size limits checked from the header before the body is buffered; and
 * properties that random frame streams survive arbitrary chunking and that id rewriting round-trips.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/codec/codec.js';
import { requestIds } from '../../src/codec/framed/codec.js';
import { Framer } from '../../src/codec/framed/framer.js';
import type { Endian, FieldSize, FramedConfig } from '../../src/config/schema.js';

/** Builds one frame of `config` around `body` (the header's other bytes from `fill`). */
function frame(config: FramedConfig, body: Buffer, fill = 0xaa): Buffer {
  const { headerSize, length } = config;
  const out = Buffer.alloc(headerSize + body.length, fill);
  body.copy(out, headerSize);
  const value = out.length - length.adjustment - (length.includesHeader ? 0 : headerSize);
  const le = length.endian === 'little';
  switch (length.size) {
    case 1:
      out[length.offset] = value;
      break;
    case 2:
      if (le) out.writeUInt16LE(value, length.offset);
      else out.writeUInt16BE(value, length.offset);
      break;
    case 4:
      if (le) out.writeUInt32LE(value, length.offset);
      else out.writeUInt32BE(value, length.offset);
      break;
    case 8:
      if (le) out.writeBigUInt64LE(BigInt(value), length.offset);
      else out.writeBigUInt64BE(BigInt(value), length.offset);
      break;
  }
  return out;
}

function framing(partial: Omit<Partial<FramedConfig>, 'length'> & { length: Partial<FramedConfig['length']> }): FramedConfig {
  return {
    headerSize: partial.headerSize ?? 4,
    length: { offset: 0, size: 4, endian: 'big', includesHeader: false, adjustment: 0, ...partial.length },
    requestId: partial.requestId ?? null,
    maxFrameBytes: partial.maxFrameBytes ?? 1 << 20,
    unasked: 'close',
  };
}

const CASES: Record<string, FramedConfig> = {
  'thrift: 4-byte big-endian length, header not counted': framing({ length: {} }),
  'protobuf: 4-byte little-endian length': framing({ length: { endian: 'little' } }),
  '2-byte length that counts the header, adjusted by +2 (a trailing checksum it does not count)': framing({
    headerSize: 6,
    length: { offset: 2, size: 2, includesHeader: true, adjustment: 2 },
  }),
  '1-byte length in a 3-byte header': framing({ headerSize: 3, length: { offset: 1, size: 1 } }),
  '8-byte length': framing({ headerSize: 8, length: { size: 8 } }),
  'dubbo: 16-byte header, 4-byte length at offset 12, 8-byte id at 4': framing({ headerSize: 16, length: { offset: 12 }, requestId: { offset: 4, size: 8 } }),
};

function collect(config: FramedConfig, chunks: Buffer[], limit = config.maxFrameBytes): Buffer[] {
  const out: Buffer[] = [];
  // Frames may be views of the pushed chunks: copied as the session's consumer would keep them.
  const framer = new Framer(config, limit, (f) => out.push(Buffer.from(f)));
  for (const chunk of chunks) framer.push(chunk);
  expect(framer.buffered).toBe(0);
  expect(framer.midFrame).toBe(false);
  return out;
}

describe('Framer', () => {
  for (const [name, config] of Object.entries(CASES)) {
    describe(name, () => {
      const bodies = [Buffer.from('hello'), Buffer.alloc(0), Buffer.from('x'.repeat(200))];
      const frames = bodies.map((b, i) => frame(config, b, 0x10 + i));
      const stream = Buffer.concat(frames);

      it('frames a stream pushed whole', () => {
        expect(collect(config, [stream])).toEqual(frames);
      });

      it('frames a stream pushed byte by byte', () => {
        expect(collect(config, [...stream].map((b) => Buffer.from([b])))).toEqual(frames);
      });

      it('frames a stream split at every position', () => {
        for (let at = 0; at <= stream.length; at++) {
          expect(collect(config, [stream.subarray(0, at), stream.subarray(at)])).toEqual(frames);
        }
      });
    });
  }

  it('refuses a frame above max_frame from its header, before buffering its body', () => {
    const config = framing({ length: {}, maxFrameBytes: 100 });
    const framer = new Framer(config, config.maxFrameBytes, () => {});
    const header = Buffer.from([0, 0, 0, 97]); // 97 + 4 = 101 bytes
    expect(() => framer.push(header)).toThrow(ProtocolError);
    expect(() => new Framer(config, 100, () => {}).push(header)).toThrow('frame of 101 bytes is larger than framed.max_frame (100 bytes)');
    // Exactly at the limit is fine.
    expect(collect(config, [frame(config, Buffer.alloc(96))])).toHaveLength(1);
    // A client's frames are held to max_request_size too, when it is the smaller.
    expect(() => new Framer(config, 50, () => {}).push(frame(config, Buffer.alloc(60)))).toThrow('larger than the 50-byte limit (max_request_size)');
  });

  it('refuses a length that makes the frame shorter than its own header', () => {
    const config = framing({ headerSize: 6, length: { offset: 2, size: 2, includesHeader: true } });
    const framer = new Framer(config, config.maxFrameBytes, () => {});
    expect(() => framer.push(Buffer.from([0, 0, 0, 5, 0, 0]))).toThrow('malformed frame: its length field says 5, which makes the frame 5 bytes, shorter than its 6-byte header');
  });

  it('refuses an 8-byte length beyond 2^53', () => {
    const config = framing({ headerSize: 8, length: { size: 8 } });
    expect(() => new Framer(config, config.maxFrameBytes, () => {}).push(Buffer.from('ffffffffffffffff', 'hex'))).toThrow('more than 2^53');
  });

  it('hands on a frame within one chunk as a view of it (no copy)', () => {
    const config = CASES['thrift: 4-byte big-endian length, header not counted'];
    const chunk = Buffer.concat([frame(config, Buffer.from('a')), frame(config, Buffer.from('b'))]);
    const seen: Buffer[] = [];
    new Framer(config, config.maxFrameBytes, (f) => seen.push(f)).push(chunk);
    expect(seen.map((f) => f.buffer === chunk.buffer)).toEqual([true, true]);
  });
});

const fieldSizes: FieldSize[] = [1, 2, 4, 8];
const endians: Endian[] = ['big', 'little'];

/** A random framing: header 1..24 bytes with a length field inside it, maybe counting the header, maybe adjusted. */
const framingArb = fc
  .record({
    size: fc.constantFrom(...fieldSizes),
    extra: fc.nat({ max: 16 }),
    at: fc.nat({ max: 16 }),
    endian: fc.constantFrom(...endians),
    includesHeader: fc.boolean(),
    adjustment: fc.integer({ min: -3, max: 3 }),
  })
  .map(({ size, extra, at, endian, includesHeader, adjustment }): FramedConfig => {
    const headerSize = size + extra;
    // A negative adjustment would let the field hold more than the frame: keep lengths non-negative.
    return framing({ headerSize, length: { offset: Math.min(at, extra), size, endian, includesHeader, adjustment: includesHeader ? Math.max(0, adjustment) : adjustment } });
  });

describe('Framer properties', () => {
  it('random frame streams survive arbitrary chunking', () => {
    fc.assert(
      fc.property(
        framingArb,
        fc.array(fc.uint8Array({ minLength: 3, maxLength: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (config, bodies, cuts) => {
          // The 1-byte field holds at most 255: bodies longer than that do not fit its frames.
          const frames = bodies.map((b) => frame(config, Buffer.from(b).subarray(0, config.length.size === 1 ? 200 : undefined)));
          const stream = Buffer.concat(frames);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let from = 0;
          for (const p of points) {
            chunks.push(stream.subarray(from, p));
            from = p;
          }
          chunks.push(stream.subarray(from));
          expect(collect(config, chunks)).toEqual(frames);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('id rewriting round-trips: the server sees poolside ids, the client gets its own back', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...fieldSizes),
        fc.nat({ max: 8 }),
        fc.uint8Array({ minLength: 32, maxLength: 64 }),
        fc.nat({ max: 2 ** 32 - 1 }),
        (size, offset, bytes, rawId) => {
          const ids = requestIds({ offset, size });
          const id = 1 + (rawId % (ids.space - 1));
          const request = Buffer.from(bytes);
          const before = Buffer.from(request);
          const original = ids.original(request);
          const tagged = ids.tag(request, id);
          // The client's buffer is not touched; only the id field differs.
          expect(request).toEqual(before);
          expect(ids.idOf(tagged)).toBe(id);
          expect(tagged.subarray(0, offset)).toEqual(request.subarray(0, offset));
          expect(tagged.subarray(offset + size)).toEqual(request.subarray(offset + size));
          // The server answers with the id it saw; poolside puts the client's back.
          const reply = Buffer.from(tagged);
          ids.restore(reply, original);
          expect(reply).toEqual(request);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('an 8-byte id with the high half set is not one poolside gave', () => {
    const ids = requestIds({ offset: 0, size: 8 });
    expect(ids.idOf(Buffer.from('0000000100000005', 'hex'))).toBe(-1);
    expect(ids.idOf(Buffer.from('0000000000000005', 'hex'))).toBe(5);
  });
});
