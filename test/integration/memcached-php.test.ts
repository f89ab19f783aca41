/**
 * The PHP Memcached extension (libmemcached, as PHP apps use memcached) against three real
 * memcached servers behind poolside's ketama pool: every answer the app sees is the answer it gets
 * sharding over the same servers itself, and every key lands on the server nutcracker (twemproxy)
 * puts it on with the same configuration, asked of each memcached directly. With
 * OPT_LIBKETAMA_COMPATIBLE off and on, and with OPT_BINARY_PROTOCOL on (binary multi-gets split over
 * the servers like text ones). PHP runs as real php-cli processes
 * (test/fixtures/php/memcached-client.php).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { hashFunction } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { loadGolden } from '../helpers/ketama-golden.js';
import { connectMc } from '../helpers/mc-client.js';
import { startNutcracker } from '../helpers/nutcracker.js';
import { phpFixture, requirePhpMemcached, runPhp } from '../helpers/php.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { type MemcachedServer, startMemcached } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const CLIENT = phpFixture('memcached-client.php');

interface Cluster {
  servers: MemcachedServer[];
  poolside: number;
  nutcracker: number;
}

/** Three memcached, and poolside and nutcracker each sharding them by ketama with `hash`. */
async function startCluster(hash: 'fnv1a_64' | 'md5'): Promise<Cluster> {
  requirePhpMemcached();
  const servers = await Promise.all([0, 1, 2].map(() => startMemcached(cleanup)));
  const proxy = cleanup.add(
    await startProxy(
      servers.map((s) => s.address),
      { protocol: 'memcached', routing: 'ketama', ketama: { hash }, connections: { min: 1, max: 2 } },
    ),
    (p) => p.close(),
  );
  await waitReady(proxy);
  const nut = await startNutcracker(cleanup, { mc: { hash, servers: servers.map((s) => `${s.address}:1`) } });
  return { servers, poolside: portOf(proxy), nutcracker: nut.ports.mc };
}

type Endpoint = [string, number];

interface ClientOptions {
  libketama: boolean;
  binary: boolean;
}

function suite(servers: Endpoint[], options: ClientOptions, prefix: string): Promise<Record<string, [unknown, number]>> {
  const spec = { servers, ...options, mode: 'suite', prefix };
  return runPhp(CLIENT, [JSON.stringify(spec)]).then((out) => (out as { results: Record<string, [unknown, number]> }).results);
}

async function setKeys(servers: Endpoint[], options: ClientOptions, keys: string[]): Promise<void> {
  const out = (await runPhp(CLIENT, [JSON.stringify({ servers, ...options, mode: 'set-keys', keys })])) as { stored: boolean; message: string };
  expect(out.stored, `setMulti through ${JSON.stringify(servers)}: ${out.message}`).toBe(true);
}

/** Which memcached holds each key, asked of every server directly; each key must be on exactly one. */
async function placement(servers: MemcachedServer[], keys: string[]): Promise<number[]> {
  const where = new Map<string, number>();
  for (let s = 0; s < servers.length; s++) {
    const client = await connectMc(cleanup, servers[s].port);
    for (let i = 0; i < keys.length; i += 50) {
      const reply = await client.call(Buffer.from(`get ${keys.slice(i, i + 50).join(' ')}\r\n`, 'utf8'));
      for (const match of reply.matchAll(/^VALUE (\S+) /gm)) {
        const key = Buffer.from(match[1], 'latin1').toString('utf8');
        if (where.has(key)) throw new Error(`key ${key} is on servers ${where.get(key)} and ${s}`);
        where.set(key, s);
      }
    }
    expect(await client.call('flush_all\r\n')).toBe('OK\r\n');
  }
  return keys.map((key) => {
    const s = where.get(key);
    if (s === undefined) throw new Error(`key ${key} is on no server`);
    return s;
  });
}

/** Where ketama puts `keys` over these servers named by their addresses, as twemproxy would. */
function predicted(servers: MemcachedServer[], keys: string[], hash: 'fnv1a_64' | 'md5'): number[] {
  const continuum = new KetamaContinuum(servers.map((s) => ({ name: s.address, weight: 1 })));
  const fn = hashFunction(hash);
  return keys.map((key) => {
    const bytes = Buffer.from(key, 'utf8');
    return continuum.serverFor(fn(bytes, 0, bytes.length));
  });
}

/** Keys as PHP apps write them: the golden file's printable keys (sessions, pages, tags, UTF-8, 250 bytes). */
function appKeys(count: number): string[] {
  const three = loadGolden('memcached-ketama-golden.json').pools.find((pool) => pool.name === 'three');
  if (three === undefined) throw new Error('golden pool "three" missing');
  const keys = three.keys.map(([key]) => key);
  // Every 3rd key, so each kind in the file is represented.
  return keys.filter((_, i) => i % 3 === 0).slice(0, count);
}

const endpoint = (port: number): Endpoint => ['127.0.0.1', port];

describe('PHP Memcached extension through poolside (3 memcached, ketama)', () => {
  const variants: ClientOptions[] = [
    { libketama: false, binary: false },
    { libketama: true, binary: false },
    { libketama: false, binary: true },
  ];
  for (const options of variants) {
    const option = options.binary ? 'OPT_BINARY_PROTOCOL on' : `OPT_LIBKETAMA_COMPATIBLE ${options.libketama ? 'on' : 'off'}`;

    it(`answers set/get/getMulti/setMulti/deleteMulti/cas/increment/touch as the servers do (${option})`, async () => {
      const cluster = await startCluster('fnv1a_64');
      const direct = await suite(
        cluster.servers.map((s) => endpoint(s.port)),
        options,
        'php',
      );
      for (const s of cluster.servers) await s.command('flush_all\r\n');
      const proxied = await suite([endpoint(cluster.poolside)], options, 'php');

      // What the app sees, spelled out for the commands the issue names.
      expect(proxied['get']).toEqual(['hello', 0]);
      expect(proxied['get miss']).toEqual([false, 16]); // RES_NOTFOUND
      expect(proxied['get array']).toEqual([{ x: 1, y: [2, 3] }, 0]);
      expect(proxied['get big']).toEqual([true, 0]);
      expect(proxied['get big raw']).toEqual([true, 0]);
      expect(proxied['setMulti']).toEqual([true, 0]);
      expect(proxied['getMulti']).toEqual([true, 0]);
      // poolside merges a split multi-get in the order the client asked.
      expect(proxied['getMulti order']).toEqual([true, 0]);
      expect(proxied['getMulti some missing'][0]).toEqual({ 'php:multi:3': 'value-3', 'php:multi:17': 'value-17', 'php:multi:0': 'value-0' });
      expect(proxied['deleteMulti']).toEqual([{ 'php:multi:1': true, 'php:multi:2': true, 'php:multi:30': true, 'php:nope:5': 16 }, 16]);
      expect(proxied['cas']).toEqual([true, 0]);
      expect(proxied['cas stale']).toEqual([false, 12]); // RES_DATA_EXISTS
      expect(proxied['get after cas']).toEqual(['changed', 0]);
      expect(proxied['increment']).toEqual([15, 0]);
      expect(proxied['decrement']).toEqual([12, 0]);
      expect(proxied['touch']).toEqual([true, 0]);
      expect(proxied['touch miss']).toEqual([false, 16]);
      // One entry per address the client dialled: poolside's.
      const self = `127.0.0.1:${cluster.poolside}`;
      expect(proxied['getStats servers']).toEqual([[self], 0]);
      expect(proxied['getStats pid']).toEqual([{ [self]: true }, 0]);
      expect(proxied['getVersion']).toEqual([{ [self]: true }, 0]);

      // And everything else exactly as libmemcached sharding over the servers itself.
      const serverWide = new Set(['getStats servers', 'getStats pid', 'getVersion', 'getMulti order']);
      const strip = (results: Record<string, [unknown, number]>): Record<string, [unknown, number]> =>
        Object.fromEntries(Object.entries(results).filter(([name]) => !serverWide.has(name)));
      expect(strip(proxied)).toEqual(strip(direct));
    });

    it(`puts every key on the memcached nutcracker puts it on with the same config (${option})`, async () => {
      const cluster = await startCluster('fnv1a_64');
      const keys = appKeys(400);
      await setKeys([endpoint(cluster.poolside)], options, keys);
      const throughPoolside = await placement(cluster.servers, keys);
      // nutcracker closes the connection on a binary request: it gets the same keys in text.
      await setKeys([endpoint(cluster.nutcracker)], { ...options, binary: false }, keys);
      const throughNutcracker = await placement(cluster.servers, keys);

      expect(throughPoolside).toEqual(throughNutcracker);
      expect(throughPoolside).toEqual(predicted(cluster.servers, keys, 'fnv1a_64'));
      for (let s = 0; s < 3; s++) expect(throughPoolside.filter((x) => x === s).length, `server ${s} holds keys`).toBeGreaterThan(60);
    });
  }

  it('keeps the keys of an app that sharded itself with OPT_LIBKETAMA_COMPATIBLE where they are behind poolside with hash: md5', async () => {
    // libmemcached's "libketama compatible" mode is ketama over MD5 with servers named host:port,
    // which is twemproxy's (and so poolside's) `hash: md5`: moving the app behind poolside moves no key.
    const cluster = await startCluster('md5');
    const keys = appKeys(400);
    await setKeys(
      cluster.servers.map((s) => endpoint(s.port)),
      { libketama: true, binary: false },
      keys,
    );
    const sharedByPhp = await placement(cluster.servers, keys);
    await setKeys([endpoint(cluster.poolside)], { libketama: false, binary: false }, keys);
    const throughPoolside = await placement(cluster.servers, keys);

    expect(throughPoolside).toEqual(sharedByPhp);
    expect(throughPoolside).toEqual(predicted(cluster.servers, keys, 'md5'));
    for (let s = 0; s < 3; s++) expect(throughPoolside.filter((x) => x === s).length, `server ${s} holds keys`).toBeGreaterThan(60);
  });
});
