/**
 * memcached pools routed by ketama: keys land exactly where twemproxy puts them for the same config
 * (the golden placements recorded from a real nutcracker, as for Redis), text keys and base64 meta
 * keys alike (a base64 key routes by the key it encodes); multi-key gets over several servers are
 * split and server-wide commands broadcast (memcached-fanout.test.ts), and the client stays connected.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { loadGolden } from '../helpers/ketama-golden.js';
import { connectMc, McClient } from '../helpers/mc-client.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { MemcachedServer } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function startServers(n: number): Promise<MemcachedServer[]> {
  return Promise.all(Array.from({ length: n }, async () => cleanup.add(await MemcachedServer.start(), (s) => s.stop())));
}

/** Pipelines `requests` on a fresh connection straight to a memcached; its `count` responses. */
async function direct(server: MemcachedServer, requests: string[], count = requests.length): Promise<string[]> {
  const client = await McClient.connect(server.port);
  try {
    client.write(requests.join(''));
    return await client.take(count, 20_000);
  } finally {
    client.destroy();
  }
}

/** A key memcached's text protocol can carry as it is. */
function textSafe(key: Buffer): boolean {
  return key.length > 0 && key.length <= 250 && key.every((b) => b > 0x20 && b < 0x7f);
}

const golden = loadGolden();

describe('memcached ketama routing', () => {
  // The hash functions themselves are proven on every golden pool by the Redis routing test; here
  // the memcached key path (text keys, decoded base64 keys) on pools with weights, tags and names.
  const CHOSEN = new Set(['md5-float-weights', 'murmur', 'crc16', 'long-names']);
  const namedPools = golden.pools.filter((pool) => CHOSEN.has(pool.name) && !pool.autoEject && pool.servers.every((s) => s.live && s.name !== null));
  it.each(namedPools.map((pool) => [pool.name, pool] as const))('places keys exactly where twemproxy 0.5.0 does (golden pool %s)', async (_name, pool) => {
    const servers = await startServers(pool.servers.length);
    const proxy = cleanup.add(
      await startProxy([], {
        protocol: 'memcached',
        routing: 'ketama',
        connections: { min: 1, max: 1 },
        ketama: { hash: pool.hash, hash_tag: pool.hashTag ?? '' },
        servers: servers.map((s, i) => ({ address: s.address, name: pool.servers[i].name, weight: pool.servers[i].weight })),
      }),
      (p) => p.close(),
    );
    const client = await connectMc(cleanup, portOf(proxy));
    const keys = [
      ...pool.keys.map(([key, server]): [Buffer, number] => [Buffer.from(key, 'utf8'), server]),
      ...pool.binaryKeys.map(([hex, server]): [Buffer, number] => [Buffer.from(hex, 'hex'), server]),
    ].filter(([key]) => key.length > 0 && key.toString('base64').length <= 250);
    // Text keys by `set`, the others as base64 meta keys: both must route by the key itself.
    client.write(keys.map(([key]) => (textSafe(key) ? `set ${key.toString('latin1')} 0 0 1\r\n1\r\n` : `ms ${key.toString('base64')} 1 b\r\n1\r\n`)).join(''));
    const stored = await client.take(keys.length, 20_000);
    expect(new Set(stored)).toEqual(new Set(['STORED\r\n', 'HD\r\n']));
    for (let s = 0; s < servers.length; s++) {
      const found = await direct(servers[s], keys.map(([key]) => `mg ${key.toString('base64')} b\r\n`));
      const here = keys.filter((_, i) => found[i] === 'HD\r\n').map(([key]) => key.toString('hex'));
      const expected = keys.filter(([, server]) => server === s).map(([key]) => key.toString('hex'));
      expect(new Set(here), `keys twemproxy puts on ${pool.servers[s].name}`).toEqual(new Set(expected));
    }
  });

  it('serves multi-key gets on one server whole, splits keys on several and sends server-wide commands to every server, and keeps the client', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], { protocol: 'memcached', routing: 'ketama', connections: { min: 1, max: 1 }, servers: servers.map((s) => s.address) }), (p) => p.close());
    const client = await connectMc(cleanup, portOf(proxy));
    const continuum = new KetamaContinuum(servers.map((s) => ({ name: s.address, weight: 1 })));
    const owner = (key: string): number => continuum.serverFor(hashKey(hashFunction('fnv1a_64'), Buffer.from(key), 0, key.length, ''));
    const keys = Array.from({ length: 200 }, (_, i) => `user:${i}:profile`);
    const a = keys[0];
    const sameAsA = keys.find((key) => key !== a && owner(key) === owner(a));
    const elsewhere = keys.find((key) => owner(key) !== owner(a));
    if (sameAsA === undefined || elsewhere === undefined) throw new Error('the sample keys do not cover two servers');
    client.write(`set ${a} 0 0 1\r\nA\r\nset ${sameAsA} 0 0 1\r\nB\r\nset ${elsewhere} 0 0 1\r\nC\r\n`);
    expect(await client.take(3)).toEqual(['STORED\r\n', 'STORED\r\n', 'STORED\r\n']);
    expect(await direct(servers[owner(a)], [`get ${a} ${sameAsA}\r\n`])).toEqual([`VALUE ${a} 0 1\r\nA\r\nVALUE ${sameAsA} 0 1\r\nB\r\nEND\r\n`]);

    expect(await client.call(`get ${a} ${sameAsA}\r\n`)).toBe(`VALUE ${a} 0 1\r\nA\r\nVALUE ${sameAsA} 0 1\r\nB\r\nEND\r\n`);
    expect(await client.call(`get ${elsewhere} ${a}\r\n`)).toBe(`VALUE ${elsewhere} 0 1\r\nC\r\nVALUE ${a} 0 1\r\nA\r\nEND\r\n`);
    expect(await client.call('stats\r\n')).toMatch(/^STAT pid \d+\r\n[\s\S]*\r\nSTAT curr_items 3\r\n[\s\S]*END\r\n$/);
    // version goes to any one server; a noreply flush_all to every server, silently.
    expect(await client.call('version\r\n')).toMatch(/^VERSION /);
    expect(await client.call(`get ${elsewhere}\r\n`)).toBe(`VALUE ${elsewhere} 0 1\r\nC\r\nEND\r\n`);

    // A quiet pipeline over keys of several servers: mn comes after every answer, whichever
    // server gave it, and only what q does not hide comes back.
    client.write(`mg ${a} v q k\r\nmg ${elsewhere} v q k\r\nmg missing:${elsewhere} v q\r\nms ${sameAsA} 1 q MR\r\nD\r\nmd nothing:${a} q\r\nmn\r\n`);
    expect(await client.take(4)).toEqual([`VA 1 k${a}\r\nA\r\n`, `VA 1 k${elsewhere}\r\nC\r\n`, 'NF\r\n', 'MN\r\n']);
    expect(await client.call(`get ${sameAsA}\r\n`)).toBe(`VALUE ${sameAsA} 0 1\r\nD\r\nEND\r\n`);
    client.write('flush_all noreply\r\n');
    expect(await client.call(`get ${elsewhere} ${a}\r\n`)).toBe('END\r\n');
  });
});
