import { describe, expect, it } from 'vitest';

import type { KetamaHash } from '../../src/config/schema.js';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum, twemproxyServerLine, twemproxyServerName } from '../../src/router/ketama.js';
import { type GoldenPool, loadGolden } from '../helpers/ketama-golden.js';

// twemproxy builds one continuum for memcached and Redis pools alike (nc_ketama.c) and hashes the
// key its parser found, so poolside's placement for memcached is the Redis one: the same
// continuum and hashes, checked here against what nutcracker did with memcached keys (at most 250
// bytes, no spaces, never empty; PHP session keys, bytes >= 0x80, hash tags) on real memcached
// servers. Where poolside's memcached codec finds the key is checked end to end by the
// integration tests (test/integration/memcached-php.test.ts).
const golden = loadGolden('memcached-ketama-golden.json');

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

function entries(pool: GoldenPool): [Buffer, number][] {
  return [
    ...pool.keys.map(([key, server]): [Buffer, number] => [Buffer.from(key, 'utf8'), server]),
    ...pool.binaryKeys.map(([hex, server]): [Buffer, number] => [Buffer.from(hex, 'hex'), server]),
  ];
}

describe('memcached ketama placement matches twemproxy (nutcracker 0.5.0, real memcached servers)', () => {
  for (const pool of golden.pools) {
    it(`places every key of pool ${pool.name} (${pool.hash}) on the memcached nutcracker chose`, () => {
      const live = pool.servers.map((server, index) => ({ server, index })).filter(({ server }) => server.live);
      const continuum = new KetamaContinuum(live.map(({ server }) => ({ name: twemproxyServerName(server), weight: server.weight })));
      const hash = hashFunction(pool.hash);
      const tag = pool.hashTag ?? '';
      const misplaced: string[] = [];
      for (const [key, expected] of entries(pool)) {
        const actual = live[continuum.serverFor(hashKey(hash, key, 0, key.length, tag))].index;
        if (actual !== expected) misplaced.push(`${JSON.stringify(key.toString('latin1'))}: twemproxy ${expected}, poolside ${actual}`);
      }
      expect(misplaced).toEqual([]);
      expect(entries(pool).length).toBeGreaterThan(200);
    });
  }

  it('records the server lines nutcracker was given', () => {
    for (const pool of golden.pools) {
      for (const server of pool.servers) expect(twemproxyServerLine(server)).toBe(server.line);
    }
  });

  it('covers every hash, 3 and 4 servers, weights, an ejected server, and the keys memcached clients send', () => {
    expect(new Set(golden.pools.map((pool) => pool.hash))).toEqual(new Set(ALL_HASHES));
    expect(golden.pools.some((pool) => pool.autoEject && pool.servers.some((server) => !server.live))).toBe(true);
    expect(golden.pools.some((pool) => pool.servers.length === 4 && new Set(pool.servers.map((s) => s.weight)).size > 1)).toBe(true);
    const three = golden.pools.find((pool) => pool.name === 'three');
    expect(three?.servers.map((server) => server.name)).toEqual([null, null, null]);
    const keys = entries(three ?? golden.pools[0]).map(([key]) => key);
    expect(keys.length).toBeGreaterThan(1500);
    expect(keys.every((key) => key.length >= 1 && key.length <= 250 && !key.includes(0x20))).toBe(true);
    expect(keys.some((key) => key.length === 250)).toBe(true);
    expect(keys.filter((key) => key.toString('latin1').startsWith('memc.sess.key.')).length).toBeGreaterThan(200);
    expect(keys.filter((key) => key.some((byte) => byte >= 0x80)).length).toBeGreaterThan(200);
    // Every live server of the main pool holds keys: the vectors tell the servers apart.
    const counts = [0, 0, 0];
    for (const [, server] of entries(three ?? golden.pools[0])) counts[server]++;
    expect(Math.min(...counts)).toBeGreaterThan(300);
  });
});
