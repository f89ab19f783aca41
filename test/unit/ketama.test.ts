import { createHash } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import type { KetamaHash } from '../../src/config/schema.js';
import { hashFunction, hashKey, hashTagRange } from '../../src/router/hash.js';
import { KetamaContinuum, twemproxyServerLine, twemproxyServerName } from '../../src/router/ketama.js';
import { loadGolden } from '../helpers/ketama-golden.js';

const golden = loadGolden();

const ALL_HASHES: readonly KetamaHash[] = [
  'fnv1a_64',
  'fnv1_64',
  'fnv1a_32',
  'fnv1_32',
  'md5',
  'crc16',
  'crc32',
  'crc32a',
  'hsieh',
  'jenkins',
  'murmur',
  'one_at_a_time',
];

function hashOf(name: KetamaHash, key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  return hashFunction(name)(bytes, 0, bytes.length);
}

/** Deterministic byte strings, heavy in bytes >= 0x80 where signed-char hashes differ. */
function sampleKeys(count: number): Buffer[] {
  let state = 0x2545f491;
  const next = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const keys: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const key = Buffer.alloc(i % 150);
    for (let j = 0; j < key.length; j++) key[j] = next() & 0xff;
    keys.push(key);
  }
  return keys;
}

describe('ketama placement matches twemproxy (nutcracker 0.5.0 golden file)', () => {
  for (const pool of golden.pools) {
    it(`places every key of pool ${pool.name} (${pool.hash}) on the server nutcracker chose`, () => {
      const live = pool.servers.map((server, index) => ({ server, index })).filter(({ server }) => server.live);
      const continuum = new KetamaContinuum(
        live.map(({ server }) => ({
          name: twemproxyServerName({ host: server.host, port: server.port, name: server.name }),
          weight: server.weight,
        })),
      );
      const hash = hashFunction(pool.hash);
      const tag = pool.hashTag ?? '';
      const entries: [Buffer, number][] = [
        ...pool.keys.map(([key, server]): [Buffer, number] => [Buffer.from(key, 'utf8'), server]),
        ...pool.binaryKeys.map(([hex, server]): [Buffer, number] => [Buffer.from(hex, 'hex'), server]),
      ];
      const misplaced: string[] = [];
      for (const [key, expected] of entries) {
        const actual = live[continuum.serverFor(hashKey(hash, key, 0, key.length, tag))].index;
        if (actual !== expected) misplaced.push(`${JSON.stringify(key.toString('latin1'))}: twemproxy ${expected}, poolside ${actual}`);
      }
      expect(misplaced).toEqual([]);
      expect(entries.length).toBeGreaterThan(100);
    });
  }

  it('writes the server lines nutcracker was given', () => {
    for (const pool of golden.pools) {
      for (const server of pool.servers) expect(twemproxyServerLine(server)).toBe(server.line);
    }
  });

  it('covers every hash function, an ejected server, and keys of each kind', () => {
    expect(new Set(golden.pools.map((pool) => pool.hash))).toEqual(new Set(ALL_HASHES));
    expect(golden.pools.some((pool) => pool.autoEject && pool.servers.some((server) => !server.live))).toBe(true);
    const main = golden.pools.find((pool) => pool.name === 'main');
    expect(main?.keys.length).toBeGreaterThan(1500);
    expect(main?.binaryKeys.length).toBeGreaterThan(200);
    expect(main?.keys.some(([key]) => key === '')).toBe(true);
    expect(main?.keys.some(([key]) => key.length >= 4096)).toBe(true);
  });

  it('hashes an empty key to 0 rather than through the hash function, as twemproxy does', () => {
    // Position 0 belongs to the server of the lowest point; hashing "" would give e.g.
    // fnv1a_64("") = 0x84222325. Pools where the two differ tell the rules apart.
    let decisive = 0;
    for (const pool of golden.pools) {
      const live = pool.servers.map((server, index) => ({ server, index })).filter(({ server }) => server.live);
      const continuum = new KetamaContinuum(live.map(({ server }) => ({ name: twemproxyServerName(server), weight: server.weight })));
      const atZero = live[continuum.serverFor(0)].index;
      const hashed = live[continuum.serverFor(hashFunction(pool.hash)(Buffer.alloc(0), 0, 0))].index;
      const recorded = pool.keys.find(([key]) => key === '');
      if (recorded === undefined) throw new Error(`golden pool ${pool.name} has no empty key`);
      expect(recorded[1]).toBe(atZero);
      if (atZero !== hashed) decisive++;
    }
    expect(decisive).toBeGreaterThan(0);
    expect(hashKey(hashFunction('fnv1a_64'), Buffer.alloc(0), 0, 0, '{}')).toBe(0);
  });
});

describe('hashTagRange', () => {
  const range = (key: string, tag = '{}'): string => {
    const bytes = Buffer.from(key, 'latin1');
    const [start, end] = hashTagRange(bytes, 0, bytes.length, tag);
    return bytes.toString('latin1', start, end);
  };

  it('hashes only the bytes between the first left and the next right tag character', () => {
    expect(range('{user1000}.following')).toBe('user1000');
    expect(range('a{b}c')).toBe('b');
    expect(range('{a}{b}')).toBe('a');
    expect(range('{{x}}')).toBe('{x');
    expect(range('{x{y}}')).toBe('x{y');
    expect(range('{ }')).toBe(' ');
  });

  it('hashes the whole key when the tag is empty, unclosed or reversed', () => {
    for (const key of ['{}', '{}abc', 'abc{}', 'x{}{y}', '{', '}', 'abc{', 'abc}', '}x{', 'plain', '']) {
      expect(range(key)).toBe(key);
    }
    expect(range('}{x}')).toBe('x');
  });

  it('hashes the whole key when hash tags are off', () => {
    expect(range('{user1000}.following', '')).toBe('{user1000}.following');
  });

  it('works with any two tag characters, including the same one twice', () => {
    expect(range('user:42:name', '::')).toBe('42');
    expect(range('[a]{b}', '[]')).toBe('a');
  });

  it('stays inside the given range of a larger buffer', () => {
    const buffer = Buffer.from('{no}*3\r\n{yes}x}tail');
    const start = buffer.indexOf('{yes}');
    const end = buffer.indexOf('tail') - 2;
    expect(hashTagRange(buffer, start, end, '{}')).toEqual([start + 1, start + 4]);
    expect(hashTagRange(buffer, start + 1, end, '{}')).toEqual([start + 1, end]);
  });

  it('rejects a tag that is not two ASCII characters', () => {
    const key = Buffer.from('{a}');
    for (const tag of ['{', '{}}', 'é}']) expect(() => hashTagRange(key, 0, key.length, tag)).toThrow(RangeError);
  });

  it('agrees with hashKey, which hashes the tagged range', () => {
    const fnv = hashFunction('fnv1a_64');
    for (const key of ['{user1000}.following', 'x{}{y}', '}{x}', 'plain', '{a}{b}']) {
      const bytes = Buffer.from(key);
      const [start, end] = hashTagRange(bytes, 0, bytes.length, '{}');
      expect(hashKey(fnv, bytes, 0, bytes.length, '{}')).toBe(fnv(bytes, start, end));
    }
  });
});

describe('hash functions', () => {
  it('fnv1_32 and fnv1a_32 give the published FNV test vectors', () => {
    expect(hashOf('fnv1_32', '')).toBe(0x811c9dc5);
    expect(hashOf('fnv1_32', 'a')).toBe(0x050c5d7e);
    expect(hashOf('fnv1_32', 'foobar')).toBe(0x31f0b262);
    expect(hashOf('fnv1a_32', '')).toBe(0x811c9dc5);
    expect(hashOf('fnv1a_32', 'a')).toBe(0xe40c292c);
    expect(hashOf('fnv1a_32', 'foobar')).toBe(0xbf9cf968);
  });

  it('fnv1_64 and fnv1a_64 return the low 32 bits of the published 64-bit vectors', () => {
    expect(hashOf('fnv1_64', '')).toBe(0x84222325); // 0xcbf29ce484222325
    expect(hashOf('fnv1_64', 'a')).toBe(0x8601b7be); // 0xaf63bd4c8601b7be
    expect(hashOf('fnv1_64', 'foobar')).toBe(0xa4dda9c2); // 0x340d8765a4dda9c2
    expect(hashOf('fnv1a_64', '')).toBe(0x84222325);
    expect(hashOf('fnv1a_64', 'a')).toBe(0x8601ec8c); // 0xaf63dc4c8601ec8c
    expect(hashOf('fnv1a_64', 'foobar')).toBe(0xf73967e8); // 0x85944171f73967e8
  });

  it('fnv1_64 matches a full 64-bit computation with signed-char bytes, truncated', () => {
    const mask = (1n << 64n) - 1n;
    const reference = (key: Buffer, alternate: boolean): number => {
      let hash = 0xcbf29ce484222325n;
      for (const byte of key) {
        const value = BigInt.asUintN(64, BigInt((byte << 24) >> 24));
        if (alternate) hash = ((hash ^ value) * 0x100000001b3n) & mask;
        else hash = ((hash * 0x100000001b3n) & mask) ^ value;
      }
      return Number(hash & 0xffffffffn);
    };
    for (const key of sampleKeys(300)) {
      expect(hashOf('fnv1_64', key)).toBe(reference(key, false));
      expect(hashOf('fnv1a_64', key)).toBe(reference(key, true));
    }
  });

  it('sign-extends bytes >= 0x80 like twemproxy reading keys through a signed char', () => {
    const fnv1a32 = (xored: bigint): number => Number((xored * 16777619n) % 2n ** 32n);
    // (uint32_t)(char)0xff is 0xffffffff, so the state is xored with 0xffffffff, not 0xff.
    expect(hashOf('fnv1a_32', Buffer.of(0xff))).toBe(fnv1a32(0x811c9dc5n ^ 0xffffffffn));
    expect(hashOf('fnv1a_32', Buffer.of(0xff))).not.toBe(fnv1a32(0x811c9dc5n ^ 0xffn));
    expect(hashOf('fnv1a_32', Buffer.of(0x7f))).toBe(fnv1a32(0x811c9dc5n ^ 0x7fn));
  });

  it('md5 returns the first digest word, little-endian, and agrees with node:crypto at every length', () => {
    expect(hashOf('md5', '')).toBe(0xd98c1dd4); // d41d8cd98f00b204e9800998ecf8427e
    expect(hashOf('md5', 'a')).toBe(0xb975c10c); // 0cc175b9c0f1b6a831c399e269772661
    expect(hashOf('md5', 'abc')).toBe(0x98500190); // 900150983cd24fb0d6963f7d28e17f72
    for (const key of sampleKeys(300)) {
      expect(hashOf('md5', key)).toBe(createHash('md5').update(key).digest().readUInt32LE(0));
    }
    const big = Buffer.alloc(100_003, 0xa5);
    expect(hashOf('md5', big)).toBe(createHash('md5').update(big).digest().readUInt32LE(0));
  });

  it('crc32a is CRC-32 and crc32 is libmemcached’s 15-bit variant', () => {
    expect(hashOf('crc32a', '123456789')).toBe(0xcbf43926);
    expect(hashOf('crc32a', '')).toBe(0);
    expect(hashOf('crc32', '123456789')).toBe(0x4bf4); // (0xcbf43926 >> 16) & 0x7fff
  });

  it('crc16 is 0.5.0’s unmasked CRC-16/XMODEM: the XMODEM checksum in the low 16 bits', () => {
    expect(hashOf('crc16', '')).toBe(0);
    expect(hashOf('crc16', 'A')).toBe(0x58e5); // table entry 0x41; one byte cannot overflow
    expect(hashOf('crc16', '123456789') & 0xffff).toBe(0x31c3); // the CRC-16/XMODEM check value
    expect(hashOf('crc16', '123456789')).toBeGreaterThan(0xffff);
  });

  it('one_at_a_time gives Jenkins’ published values', () => {
    expect(hashOf('one_at_a_time', 'a')).toBe(0xca2e9442);
    expect(hashOf('one_at_a_time', 'The quick brown fox jumps over the lazy dog')).toBe(0x519e91f5);
  });

  it('hashes an empty range as twemproxy does', () => {
    expect(hashOf('murmur', '')).toBe(0);
    expect(hashOf('hsieh', '')).toBe(0);
    expect(hashOf('jenkins', '')).toBe(0xdeadbefc); // 0xdeadbeef + length 0 + initval 13, no mixing
    expect(hashOf('one_at_a_time', '')).toBe(0);
  });

  it('every hash returns a uint32 and depends only on the bytes in range', () => {
    const keys = sampleKeys(200);
    for (const name of ALL_HASHES) {
      const hash = hashFunction(name);
      for (const key of keys) {
        const padded = Buffer.concat([Buffer.from('\xff{pre}', 'latin1'), key, Buffer.from('{post}\x80', 'latin1')]);
        const value = hash(key, 0, key.length);
        expect(Number.isInteger(value) && value >= 0 && value <= 0xffffffff).toBe(true);
        expect(hash(padded, 6, 6 + key.length)).toBe(value);
      }
    }
  });
});

describe('KetamaContinuum', () => {
  it('gives each server points in proportion to its weight, 160 per server on average', () => {
    expect(new KetamaContinuum([{ name: 'a', weight: 1 }]).size).toBe(160);
    expect(new KetamaContinuum(['a', 'b', 'c', 'd'].map((name, i) => ({ name, weight: i + 1 }))).size).toBe(64 + 128 + 192 + 256);
    // twemproxy's single-precision arithmetic rounds 58 point groups down to 57 for the 29.
    expect(new KetamaContinuum([{ name: 'a', weight: 1 }, { name: 'b', weight: 29 }, { name: 'c', weight: 30 }]).size).toBe(8 + 228 + 240);
    // ... and, with 25 equal servers, 40 point groups down to 39 each.
    const equal = (count: number): KetamaContinuum =>
      new KetamaContinuum(Array.from({ length: count }, (_, i) => ({ name: `s${i}`, weight: 1 })));
    expect(equal(24).size).toBe(24 * 160);
    expect(equal(25).size).toBe(25 * 156);
  });

  it('sends keys to servers roughly in proportion to their weights', () => {
    const weights = [1, 2, 3, 4];
    const continuum = new KetamaContinuum(weights.map((weight, i) => ({ name: `10.0.0.${i + 1}:6379`, weight })));
    const fnv = hashFunction('fnv1a_64');
    const counts = [0, 0, 0, 0];
    const total = 100_000;
    for (let i = 0; i < total; i++) {
      const key = Buffer.from(`key:${i}`);
      counts[continuum.serverFor(fnv(key, 0, key.length))]++;
    }
    weights.forEach((weight, i) => {
      const expected = (total * weight) / 10;
      expect(Math.abs(counts[i] - expected) / expected).toBeLessThan(0.3);
    });
    expect(counts[0]).toBeLessThan(counts[3]);
  });

  it('wraps hashes past the last point around to the first', () => {
    const continuum = new KetamaContinuum(['a', 'b', 'c'].map((name) => ({ name, weight: 1 })));
    expect(continuum.serverFor(0xffffffff)).toBe(continuum.serverFor(0));
  });

  it('answers 0 for every hash when there is one server', () => {
    const continuum = new KetamaContinuum([{ name: 'only', weight: 7 }]);
    for (const hash of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) expect(continuum.serverFor(hash)).toBe(0);
  });

  it('keeps the keys of surviving equal-weight servers in place when one is left out', () => {
    const names = ['a', 'b', 'c', 'd'];
    const all = new KetamaContinuum(names.map((name) => ({ name, weight: 1 })));
    const withoutB = new KetamaContinuum(['a', 'c', 'd'].map((name) => ({ name, weight: 1 })));
    const fnv = hashFunction('fnv1a_64');
    let moved = 0;
    for (let i = 0; i < 10_000; i++) {
      const key = Buffer.from(`k${i}`);
      const hash = fnv(key, 0, key.length);
      const before = names[all.serverFor(hash)];
      const after = ['a', 'c', 'd'][withoutB.serverFor(hash)];
      if (before !== 'b') expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(1000);
  });

  it('refuses an empty server list and weights that are not positive whole numbers', () => {
    expect(() => new KetamaContinuum([])).toThrow(RangeError);
    expect(() => new KetamaContinuum([{ name: 'a', weight: 0 }])).toThrow(RangeError);
    expect(() => new KetamaContinuum([{ name: 'a', weight: -1 }])).toThrow(RangeError);
    expect(() => new KetamaContinuum([{ name: 'a', weight: 1.5 }])).toThrow(RangeError);
  });

  it('hashes point labels longer than 272 bytes as their first 272 bytes, like twemproxy 0.5.0', () => {
    // Every label of a 300-byte name shares its first 272 bytes, so all 40 groups land on the same
    // 4 points and the server owns only the arcs before those 4. The golden pool "long-names"
    // checks this against nutcracker; here: the other server gets almost every key.
    const continuum = new KetamaContinuum([{ name: 'x'.repeat(300), weight: 1 }, { name: 'short', weight: 1 }]);
    expect(continuum.size).toBe(320);
    const fnv = hashFunction('fnv1a_64');
    let longNamed = 0;
    for (let i = 0; i < 10_000; i++) {
      const key = Buffer.from(`k${i}`);
      if (continuum.serverFor(fnv(key, 0, key.length)) === 0) longNamed++;
    }
    expect(longNamed).toBeLessThan(1000);
  });
});

describe('twemproxy server names', () => {
  it('uses the explicit name when there is one', () => {
    expect(twemproxyServerName({ host: '127.0.0.1', port: 6379, name: 'redis-a' })).toBe('redis-a');
    expect(twemproxyServerLine({ host: '127.0.0.1', port: 6379, weight: 1, name: 'redis-a' })).toBe('127.0.0.1:6379:1 redis-a');
  });

  it('defaults to host:port, or the bare host on port 11211 like libmemcached', () => {
    expect(twemproxyServerName({ host: '127.0.0.1', port: 6379 })).toBe('127.0.0.1:6379');
    expect(twemproxyServerName({ host: 'cache-1', port: 11211, name: null })).toBe('cache-1');
    expect(twemproxyServerLine({ host: 'cache-1', port: 11211, weight: 2 })).toBe('cache-1:11211:2');
  });
});
