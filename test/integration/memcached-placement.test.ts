/**
 * memcached keys placed through poolside's real path (the memcached codec finds the key, the
 * ketama router picks the server) exactly where nutcracker put them: the golden pools of
 * test/fixtures/memcached-ketama-golden.json whose servers all have names (placement then does not
 * depend on the ports), rebuilt over fresh memcached servers with the same names and weights.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { Cleanup } from '../helpers/cleanup.js';
import { loadGolden } from '../helpers/ketama-golden.js';
import { connectMc } from '../helpers/mc-client.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { startMemcached } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const golden = loadGolden('memcached-ketama-golden.json');
const namedPools = golden.pools.filter((pool) => !pool.autoEject && pool.servers.every((s) => s.live && s.name !== null));

describe('memcached ketama placement through poolside', () => {
  it('has a named golden pool for every hash but md5 and fnv1a_64 (those the PHP tests place through poolside)', () => {
    expect(namedPools.length).toBeGreaterThanOrEqual(10);
  });

  it.each(namedPools.map((pool) => [pool.name, pool] as const))('sets each key on the memcached nutcracker chose (golden pool %s)', async (_name, pool) => {
    const servers = await Promise.all(pool.servers.map(() => startMemcached(cleanup)));
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
    await waitReady(proxy);
    const keys: [Buffer, number][] = [
      ...pool.keys.map(([key, server]): [Buffer, number] => [Buffer.from(key, 'utf8'), server]),
      ...pool.binaryKeys.map(([hex, server]): [Buffer, number] => [Buffer.from(hex, 'hex'), server]),
    ];
    const client = await connectMc(cleanup, portOf(proxy));
    client.write(Buffer.concat(keys.map(([key]) => Buffer.concat([Buffer.from('set '), key, Buffer.from(' 0 0 1\r\nx\r\n')]))));
    expect(await client.take(keys.length)).toEqual(new Array(keys.length).fill('STORED\r\n'));

    for (let s = 0; s < servers.length; s++) {
      const direct = await connectMc(cleanup, servers[s].port);
      const mine = keys.filter(([, server]) => server === s).map(([key]) => key);
      // One get per key, pipelined: each reply says whether this server holds that key.
      direct.write(Buffer.concat(keys.map(([key]) => Buffer.concat([Buffer.from('get '), key, Buffer.from('\r\n')]))));
      const replies = await direct.take(keys.length);
      const held = keys.filter((_, i) => replies[i].startsWith('VALUE ')).map(([key]) => key.toString('hex'));
      expect(held.sort(), `keys nutcracker put on ${pool.servers[s].name}`).toEqual(mine.map((key) => key.toString('hex')).sort());
    }
  });
});
