/**
 * memcached requests split across, or broadcast to, the servers of a ketama pool, against three
 * real memcached: multi-key retrievals merged in the client's key order with one END, flush_all
 * and verbosity to every server, stats merged into one answer, and a frozen server's keys
 * answered as misses (legal in memcached) rather than a torn reply.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc, mcPoolsideReason } from '../helpers/mc-client.js';
import type { McClient } from '../helpers/mc-client.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { MemcachedServer, startMemcached, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function startServers(n: number): Promise<MemcachedServer[]> {
  return Promise.all(Array.from({ length: n }, () => startMemcached(cleanup)));
}

const ketamaPool = (servers: MemcachedServer[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  protocol: 'memcached',
  routing: 'ketama',
  connections: { min: 1, max: 2 },
  servers: servers.map((s) => s.address),
  ...extra,
});

function ownerOf(servers: MemcachedServer[], key: string): number {
  const continuum = new KetamaContinuum(servers.map((s) => ({ name: s.address, weight: 1 })));
  const bytes = Buffer.from(key);
  return continuum.serverFor(hashKey(hashFunction('fnv1a_64'), bytes, 0, bytes.length, ''));
}

/** For each server, sample keys it owns (every server owns some). */
function keysByServer(servers: MemcachedServer[]): string[][] {
  const owned: string[][] = servers.map(() => []);
  for (let i = 0; i < 300; i++) owned[ownerOf(servers, `user:${i}:profile`)].push(`user:${i}:profile`);
  for (const mine of owned) if (mine.length < 3) throw new Error('the sample keys do not cover every server');
  return owned;
}

async function direct(server: MemcachedServer, text: string): Promise<string> {
  const c = await connectMc(cleanup, server.port);
  try {
    return await c.call(text);
  } finally {
    c.destroy();
  }
}

function statOf(stats: string, name: string): string | undefined {
  return new RegExp(`^STAT ${name} (\\S+)\\r$`, 'm').exec(stats)?.[1];
}

async function setAll(c: McClient, values: Record<string, string>): Promise<void> {
  const keys = Object.keys(values);
  for (const key of keys) c.write(`set ${key} 7 0 ${values[key].length}\r\n${values[key]}\r\n`);
  expect(await c.take(keys.length)).toEqual(keys.map(() => 'STORED\r\n'));
}

describe('ketama fan-out (memcached)', () => {
  it('splits get, gets, gat and gats per server and merges the VALUE blocks in key order with one END', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const c = await connectMc(cleanup, portOf(proxy));
    const [[a1, a2], [b1, b2], [c1]] = keysByServer(servers);
    await setAll(c, { [a1]: 'A1', [a2]: 'A2', [b1]: 'B1', [c1]: 'C1' });
    // Each key lives on its own server only.
    expect(await direct(servers[0], `get ${a1} ${b1} ${c1}\r\n`)).toBe(`VALUE ${a1} 7 2\r\nA1\r\nEND\r\n`);
    expect(await direct(servers[2], `get ${a1} ${b1} ${c1}\r\n`)).toBe(`VALUE ${c1} 7 2\r\nC1\r\nEND\r\n`);

    expect(await c.call(`get ${c1} ${a1} ${b2} ${b1} ${a1} ${a2}\r\n`)).toBe(
      `VALUE ${c1} 7 2\r\nC1\r\nVALUE ${a1} 7 2\r\nA1\r\nVALUE ${b1} 7 2\r\nB1\r\nVALUE ${a1} 7 2\r\nA1\r\nVALUE ${a2} 7 2\r\nA2\r\nEND\r\n`,
    );
    const gets = await c.call(`gets ${b1} ${a1}\r\n`);
    expect(gets).toMatch(new RegExp(`^VALUE ${b1} 7 2 \\d+\\r\\nB1\\r\\nVALUE ${a1} 7 2 \\d+\\r\\nA1\\r\\nEND\\r\\n$`));
    // The CAS unique a split gets returns works on the key's server.
    const unique = new RegExp(`VALUE ${a1} 7 2 (\\d+)`).exec(gets)?.[1];
    expect(await c.call(`cas ${a1} 0 0 1 ${unique}\r\nz\r\n`)).toBe('STORED\r\n');
    expect(await c.call(`gat 100 ${c1} ${a1} ${b2}\r\n`)).toBe(`VALUE ${c1} 7 2\r\nC1\r\nVALUE ${a1} 0 1\r\nz\r\nEND\r\n`);
    expect(await c.call(`gats 100 ${b1} ${c1}\r\n`)).toMatch(new RegExp(`^VALUE ${b1} 7 2 \\d+\\r\\nB1\\r\\nVALUE ${c1} 7 2 \\d+\\r\\nC1\\r\\nEND\\r\\n$`));
    expect(proxy.pools.get('p')?.counters.fanouts.split).toBe(4);
    expect(await c.call(`get ${b2} ${c1}x ${a2}x ${b2}\r\n`)).toBe('END\r\n');
  });

  it('merges a split get whose values are large (streamed from the server in pieces) whole and in order', async () => {
    const servers = await Promise.all([0, 1, 2].map(() => startMemcached(cleanup, ['-I', '2m'])));
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers, { max_item_size: '2mb' })), (p) => p.close());
    const c = await connectMc(cleanup, portOf(proxy));
    const [[a], [b]] = keysByServer(servers);
    const big = (fill: string): string => fill.repeat(1536 * 1024);
    await setAll(c, { [a]: big('a'), [b]: big('b') });
    // Generous: the test client reframes what it buffered on every read, slow on a loaded machine.
    c.write(`get ${b} ${a}\r\n`);
    const got = await c.reply(20_000);
    expect(got.length).toBe(2 * (1536 * 1024) + `VALUE ${b} 7 1572864\r\n\r\nVALUE ${a} 7 1572864\r\n\r\nEND\r\n`.length);
    expect(got.startsWith(`VALUE ${b} 7 1572864\r\nbbbb`)).toBe(true);
    expect(got.endsWith(`aaaa\r\nEND\r\n`)).toBe(true);
  });

  it('refuses a split get whose replies add up past clients.output_buffer.hard instead of holding them all, and keeps the client', async () => {
    const servers = await startServers(3);
    const pool = ketamaPool(servers, { clients: { output_buffer: { soft: '64kb', hard: '1mb' } } });
    const proxy = cleanup.add(await startProxy([], pool), (p) => p.close());
    const c = await connectMc(cleanup, portOf(proxy));
    const [[a], [b]] = keysByServer(servers);
    // Two values of 300 KB on two servers, asked for four times each: 2.4 MB to merge, none of it
    // streamable to the client before every part is in (the blocks go out in the client's key order).
    await setAll(c, { [a]: 'a'.repeat(300 * 1024), [b]: 'b'.repeat(300 * 1024) });
    const reply = await c.call(`get ${a} ${b} ${a} ${b} ${a} ${b} ${a} ${b}\r\n`);
    expect(reply.length).toBeLessThan(1000);
    expect(mcPoolsideReason(reply)).toBe('CROSS_SERVER');
    // Under the limit it merges as ever, on the same client.
    expect(await c.call(`get ${b} ${a}\r\n`)).toBe(`VALUE ${b} 7 ${300 * 1024}\r\n${'b'.repeat(300 * 1024)}\r\nVALUE ${a} 7 ${300 * 1024}\r\n${'a'.repeat(300 * 1024)}\r\nEND\r\n`);
  });

  it('sends flush_all and verbosity to every server (OK only if all say OK), noreply too', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const c = await connectMc(cleanup, portOf(proxy));
    const owned = keysByServer(servers);
    await setAll(c, Object.fromEntries(owned.map((keys) => [keys[0], 'x'])));
    expect(await c.call('verbosity 0\r\n')).toBe('OK\r\n');
    expect(await c.call('flush_all\r\n')).toBe('OK\r\n');
    for (let s = 0; s < servers.length; s++) expect(await direct(servers[s], `get ${owned[s][0]}\r\n`)).toBe('END\r\n');
    await setAll(c, Object.fromEntries(owned.map((keys) => [keys[1], 'y'])));
    c.write('flush_all noreply\r\nverbosity 0 noreply\r\n');
    expect(await c.call(`get ${owned[0][1]} ${owned[1][1]} ${owned[2][1]}\r\n`)).toBe('END\r\n');
    // Every server refuses it alike: the client gets that refusal once.
    expect(await c.call('flush_all bogus\r\n')).toMatch(/^CLIENT_ERROR [^\r]*\r\n$/);
  });

  it('answers stats once for the pool: counters summed over the servers, identity fields from one', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const c = await connectMc(cleanup, portOf(proxy));
    const owned = keysByServer(servers);
    await setAll(c, Object.fromEntries(owned.flatMap((keys, s) => keys.slice(0, s + 1).map((key) => [key, 'v']))));
    const stats = await c.call('stats\r\n');
    expect(stats).toMatch(/^STAT pid \d+\r\n[\s\S]*END\r\n$/);
    expect(stats.match(/^STAT pid /gm)).toHaveLength(1);
    // 1 + 2 + 3 items, one per server's share.
    expect(statOf(stats, 'curr_items')).toBe('6');
    expect(statOf(stats, 'cmd_set')).toBe('6');
    let limit = 0;
    for (const server of servers) limit += Number(statOf(await direct(server, 'stats\r\n'), 'limit_maxbytes'));
    expect(statOf(stats, 'limit_maxbytes')).toBe(String(limit));
    expect(statOf(stats, 'version')).toMatch(/^\d+\.\d+/);
    // Per slab: counts summed, sizes kept.
    const slabs = await c.call('stats slabs\r\n');
    expect(statOf(slabs, '1:chunk_size')).toBe(statOf(await direct(servers[0], 'stats slabs\r\n'), '1:chunk_size'));
    expect(statOf(slabs, '1:used_chunks')).toBe('6');
    expect(statOf(await c.call('stats items\r\n'), 'items:1:number')).toBe('6');
    // Set-up: the first server's.
    expect(statOf(await c.call('stats settings\r\n'), 'maxconns')).toBe(statOf(await direct(servers[0], 'stats settings\r\n'), 'maxconns'));
    expect(await c.call('version\r\n')).toMatch(/^VERSION \d+\.\d+/);
  });

  it('answers a frozen server\'s keys as misses within the deadline, and leaves other clients undisturbed', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(
      await startProxy(
        [],
        ketamaPool(servers, {
          request_timeout: '300ms',
          heartbeat: { interval: '300ms', timeout: '200ms' },
          connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
          queue: { timeout: '1s' },
        }),
      ),
      (p) => p.close(),
    );
    await waitReady(proxy, 10_000);
    const [[a], [b], [cKey]] = keysByServer(servers);
    const setup = await connectMc(cleanup, portOf(proxy));
    await setAll(setup, { [a]: 'A', [b]: 'B', [cKey]: 'C' });

    const frozen = servers[2];
    await frozen.freeze();
    cleanup.add(frozen, (s) => s.signal('SIGCONT'));
    const client = await connectMc(cleanup, portOf(proxy));
    const other = await connectMc(cleanup, portOf(proxy));
    client.write(`get ${a} ${cKey} ${b}\r\n`);
    for (let i = 0; i < 20; i++) {
      expect(await other.call(`get ${b} ${a}\r\n`)).toBe(`VALUE ${b} 7 1\r\nB\r\nVALUE ${a} 7 1\r\nA\r\nEND\r\n`);
    }
    expect(await client.reply(5000)).toBe(`VALUE ${a} 7 1\r\nA\r\nVALUE ${b} 7 1\r\nB\r\nEND\r\n`);
    // Only the frozen server's keys: no server answered, so the client hears why.
    client.write(`get ${cKey}\r\n`);
    expect(mcPoolsideReason(await client.reply(5000))).not.toBeNull();
    expect(proxy.pools.get('p')?.counters.fanouts.partsFailed).toBeGreaterThan(0);

    frozen.signal('SIGCONT');
    await waitFor(
      async () => (await client.call(`get ${a} ${cKey} ${b}\r\n`)) === `VALUE ${a} 7 1\r\nA\r\nVALUE ${cKey} 7 1\r\nC\r\nVALUE ${b} 7 1\r\nB\r\nEND\r\n`,
      'the split get served whole once the server thawed',
      10_000,
      50,
    );
    expect(other.isClosed).toBe(false);
  });

  it('answers an ejected server\'s keys as misses and flushes nothing while a server is out (on_ejection: fail)', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(
      await startProxy(
        [],
        ketamaPool(servers, {
          ketama: { on_ejection: 'fail' },
          connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
          eject: { after_failures: 2, for: '30s' },
          heartbeat: { interval: '200ms', timeout: '100ms' },
        }),
      ),
      (p) => p.close(),
    );
    await waitReady(proxy, 10_000);
    const [[a], [b], [cKey]] = keysByServer(servers);
    const client = await connectMc(cleanup, portOf(proxy));
    await setAll(client, { [a]: 'A', [b]: 'B', [cKey]: 'C' });
    await servers[0].kill();
    await waitFor(() => proxy.stats()[0].servers[0].health.kind === 'ejected', 'the killed server ejected', 10_000);
    expect(await client.call(`get ${cKey} ${a} ${b}\r\n`)).toBe(`VALUE ${cKey} 7 1\r\nC\r\nVALUE ${b} 7 1\r\nB\r\nEND\r\n`);
    expect(mcPoolsideReason(await client.call(`get ${a}\r\n`))).toBe('NO_HEALTHY_SERVER');
    expect(mcPoolsideReason(await client.call('flush_all\r\n'))).toBe('NO_HEALTHY_SERVER');
    expect(await client.call(`get ${b}\r\n`)).toBe(`VALUE ${b} 7 1\r\nB\r\nEND\r\n`);
    // stats: the servers that answered.
    expect(statOf(await client.call('stats\r\n'), 'curr_items')).toBe('2');
  });

  it('gives the same answers as one memcached for random sets, deletes and multi-key gets (property)', async () => {
    const servers = await startServers(3);
    const single = await startMemcached(cleanup);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const through = await connectMc(cleanup, portOf(proxy));
    const reference = await connectMc(cleanup, single.port);
    const names = Array.from({ length: 24 }, (_, i) => `k:${i}:${'x'.repeat(i % 5)}`);
    const key = fc.constantFrom(...names);
    const value = fc.string({ maxLength: 8, unit: fc.constantFrom('a', 'b', ' ', 'z', '\r', '\n') });
    const command = fc.oneof(
      fc.array(key, { minLength: 1, maxLength: 8 }).map((ks) => `get ${ks.join(' ')}\r\n`),
      fc.array(key, { minLength: 1, maxLength: 8 }).map((ks) => `gat 0 ${ks.join(' ')}\r\n`),
      fc.tuple(key, value, fc.nat(65535)).map(([k, v, flags]) => `set ${k} ${flags} 0 ${v.length}\r\n${v}\r\n`),
      key.map((k) => `delete ${k}\r\n`),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 30 }), async (commands) => {
        through.write(commands.join(''));
        reference.write(commands.join(''));
        const [got, want] = await Promise.all([through.take(commands.length), reference.take(commands.length)]);
        expect(got).toEqual(want);
      }),
      { numRuns: 60 },
    );
    expect(proxy.pools.get('p')?.counters.fanouts.split).toBeGreaterThan(0);
  });
});
