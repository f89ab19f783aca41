/**
 * Requests split across, or broadcast to, the servers of a ketama pool (session/fanout.ts,
 * codec/redis/fanout.ts), against three real redis-servers: each part lands on its key's server,
 * replies come back merged in the client's key order, and a failing part gives one clean error.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import type { Proxy } from '../../src/proxy.js';
import { poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function startServers(n: number): Promise<RedisServer[]> {
  return Promise.all(Array.from({ length: n }, async () => cleanup.add(await RedisServer.start(), (s) => s.stop())));
}

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

const ketamaPool = (servers: RedisServer[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  routing: 'ketama',
  connections: { min: 1, max: 2 },
  servers: servers.map((s) => s.address),
  ...extra,
});

/** The server index twemproxy's continuum gives a key, for servers named by their address. */
function ownerOf(servers: RedisServer[], key: string): number {
  const continuum = new KetamaContinuum(servers.map((s) => ({ name: `127.0.0.1:${s.port}`, weight: 1 })));
  const bytes = Buffer.from(key);
  return continuum.serverFor(hashKey(hashFunction('fnv1a_64'), bytes, 0, bytes.length, ''));
}

/** Sample keys, and for each server the keys it owns (every server owns some). */
function keysByServer(servers: RedisServer[], n = 300): { keys: string[]; owned: string[][] } {
  const keys = Array.from({ length: n }, (_, i) => `user:${i}:profile`);
  const owned: string[][] = servers.map(() => []);
  for (const key of keys) owned[ownerOf(servers, key)].push(key);
  for (const mine of owned) if (mine.length < 3) throw new Error('the sample keys do not cover every server');
  return { keys, owned };
}

async function direct(redis: RedisServer, ...command: string[]): Promise<RespValue> {
  const client = await RawClient.connect(redis.port);
  try {
    return await client.call(...command);
  } finally {
    client.destroy();
  }
}

function reasonOf(value: RespValue): string | null {
  return value instanceof RespError ? poolsideReason(value) : null;
}

function fanouts(proxy: Proxy, kind: 'split' | 'broadcast'): number {
  const pool = proxy.pools.get('p');
  if (pool === undefined) throw new Error('no pool p');
  return pool.counters.fanouts[kind];
}

describe('ketama fan-out (Redis)', () => {
  it('splits MGET, MSET, DEL, UNLINK, EXISTS and TOUCH per server and merges the replies in key order', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a1, a2] = owned[0];
    const [b1, b2] = owned[1];
    const [c1] = owned[2];

    expect(await client.call('MSET', a1, 'A1', b1, 'B1', c1, 'C1', a2, 'A2')).toBe('OK');
    // Each key was written on its own server, nowhere else.
    expect(await direct(servers[0], 'MGET', a1, a2, b1, c1)).toEqual(['A1', 'A2', null, null]);
    expect(await direct(servers[1], 'MGET', a1, b1, c1)).toEqual([null, 'B1', null]);
    expect(await direct(servers[2], 'MGET', a1, b1, c1)).toEqual([null, null, 'C1']);

    // Key order, repeats and missing keys as one server would answer them.
    expect(await client.call('MGET', c1, a1, b2, b1, a1, a2)).toEqual(['C1', 'A1', null, 'B1', 'A1', 'A2']);
    expect(await client.call('EXISTS', a1, b1, c1, b2, a1)).toBe(4);
    expect(await client.call('TOUCH', a1, b1, c1, b2)).toBe(3);
    expect(await client.call('DEL', a1, b1, b2)).toBe(2);
    expect(await client.call('UNLINK', c1, a2, a1)).toBe(2);
    expect(await client.call('MGET', a1, a2, b1, c1)).toEqual([null, null, null, null]);
    // Keys on one server still go whole, unsplit.
    const before = fanouts(proxy, 'split');
    expect(await client.call('MGET', a1, a2)).toEqual([null, null]);
    expect(fanouts(proxy, 'split')).toBe(before);
    expect(before).toBe(7);
  });

  it('keeps pipelined requests in order around a split one and reads its own writes', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    const [c] = owned[2];
    for (let i = 0; i < 50; i++) {
      client.send('SET', a, `a${i}`);
      client.send('MSET', b, `b${i}`, c, `c${i}`);
      client.send('MGET', a, b, c);
      client.send('DEL', b, c);
      client.send('EXISTS', a, b, c);
    }
    const replies = await client.take(250);
    for (let i = 0; i < 50; i++) {
      expect(replies.slice(i * 5, i * 5 + 5)).toEqual(['OK', 'OK', [`a${i}`, `b${i}`, `c${i}`], 2, 1]);
    }
  });

  it('keeps CROSS_SERVER for multi-key commands that cannot be split', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    expect(reasonOf(await client.call('MSETNX', a, '1', b, '2'))).toBe('CROSS_SERVER');
    expect(reasonOf(await client.call('SUNION', a, b))).toBe('CROSS_SERVER');
    expect(reasonOf(await client.call('RENAME', a, b))).toBe('CROSS_SERVER');
    expect(reasonOf(await client.call('EVAL', 'return 1', '2', a, b))).toBe('CROSS_SERVER');
    expect(await client.call('MGET', a, b)).toEqual([null, null]);
    expect(client.isClosed).toBe(false);
  });

  it('broadcasts DBSIZE (summed) and, where the command policy allows it, FLUSHDB (OK from every server)', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers, { commands: { allow: ['FLUSHDB'] } })), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { keys } = keysByServer(servers, 90);
    for (const key of keys) client.send('SET', key, 'x');
    expect(await client.take(keys.length)).toEqual(new Array(keys.length).fill('OK'));
    expect(await client.call('DBSIZE')).toBe(keys.length);
    expect(fanouts(proxy, 'broadcast')).toBe(1);
    expect(await client.call('FLUSHDB')).toBe('OK');
    for (const server of servers) expect(await direct(server, 'DBSIZE')).toBe(0);
    expect(await client.call('DBSIZE')).toBe(0);
    // FLUSHALL stays denied by the default policy: refused, not broadcast.
    expect(reasonOf(await client.call('FLUSHALL'))).toBe('DENIED_COMMAND');
  });

  it('gives a split request one server error when a part is refused, and no partial answer', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    // The second server refuses writes: MSET's part there fails, the other part was applied (not atomic).
    expect(await direct(servers[1], 'CONFIG', 'SET', 'min-replicas-to-write', '1')).toBe('OK');
    const reply = await client.call('MSET', a, '1', b, '2');
    expect(reply).toBeInstanceOf(RespError);
    expect((reply as RespError).message).toMatch(/^NOREPLICAS/);
    expect(await client.call('MGET', a, b)).toEqual(['1', null]);
  });

  it('runs what a client pipelined behind a blocking command on the servers its keys live on, once the command returned', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    const [c] = owned[2];
    expect(await client.call('MSET', b, 'B', c, 'C')).toBe('OK');
    // The pop pins a's server; what follows would once have run there too (reading nil for b).
    client.send('BLPOP', a, '0.1');
    client.send('GET', b);
    client.send('MGET', a, b, c);
    client.send('RPUSH', `${c}:list`, 'x');
    client.send('BLPOP', `${c}:list`, '1');
    client.send('GET', a);
    expect(await client.take(6)).toEqual([null, 'B', [null, 'B', 'C'], 1, [`${c}:list`, 'x'], null]);
  });

  it('answers a split request still out when draining begins, then DRAINING, then closes the client', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    await waitReady(proxy, 10_000);
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [c] = owned[2];
    const client = await raw(portOf(proxy));
    expect(await client.call('MSET', a, 'A', c, 'C')).toBe('OK');
    // One part held up on a frozen server while the drain begins.
    await servers[2].freeze();
    cleanup.add(servers[2], (s) => s.signal('SIGCONT'));
    client.send('MGET', a, c);
    await waitFor(() => proxy.clientList().clients.some((x) => x.inflight > 0), 'the split MGET in flight');
    const drained = proxy.drain({ delayMs: 0, timeoutMs: 5000 });
    client.send('GET', a);
    servers[2].signal('SIGCONT');
    const [merged, refused] = await client.take(2);
    expect(merged).toEqual(['A', 'C']);
    expect(reasonOf(refused)).toBe('DRAINING');
    expect(await client.closesWithin(2000)).toBe(true);
    expect(await drained).toEqual({ cutOff: 0 });
  });

  it('honours CLIENT REPLY OFF and SKIP for split requests', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    client.send('CLIENT', 'REPLY', 'SKIP');
    client.send('MSET', a, '1', b, '2');
    client.send('CLIENT', 'REPLY', 'OFF');
    client.send('DEL', a, b);
    client.send('MGET', a, b);
    client.send('CLIENT', 'REPLY', 'ON');
    client.send('MGET', a, b);
    expect(await client.take(2)).toEqual(['OK', [null, null]]);
    expect(client.pending).toBe(0);
  });

  it('answers a split MGET with a clean error within the deadline when a server is frozen, and leaves other clients undisturbed', async () => {
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
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    const [c] = owned[2];
    const setup = await raw(portOf(proxy));
    expect(await setup.call('MSET', a, 'A', b, 'B', c, 'C')).toBe('OK');

    const frozen = servers[2];
    await frozen.freeze();
    cleanup.add(frozen, (s) => s.signal('SIGCONT'));
    const client = await raw(portOf(proxy));
    const other = await raw(portOf(proxy));
    client.send('MGET', a, b, c);
    // Meanwhile a client whose keys live on the other servers is served as usual, split or not.
    for (let i = 0; i < 20; i++) {
      expect(await other.call('MGET', a, b)).toEqual(['A', 'B']);
      expect(await other.call('GET', a)).toBe('A');
    }
    const reply = await client.reply(5000);
    expect(['REQUEST_TIMEOUT', 'SERVER_ERROR', 'NO_HEALTHY_SERVER', 'POOL_TIMEOUT']).toContain(reasonOf(reply));
    expect(client.isClosed).toBe(false);

    frozen.signal('SIGCONT');
    await waitFor(async () => {
      const again = await client.call('MGET', a, b, c);
      return JSON.stringify(again) === JSON.stringify(['A', 'B', 'C']);
    }, 'the split MGET served again once the server thawed', 10_000, 50);
    expect(other.isClosed).toBe(false);
  });

  it('writes nothing of a split MSET when one key\'s server is ejected (on_ejection: fail), and fails the MGET whole', async () => {
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
    const { owned } = keysByServer(servers);
    const [a] = owned[0];
    const [b] = owned[1];
    const [c] = owned[2];
    const client = await raw(portOf(proxy));
    expect(await client.call('MSET', b, 'B', c, 'C')).toBe('OK');
    await servers[0].kill();
    await waitFor(() => proxy.stats()[0].servers[0].health.kind === 'ejected', 'the killed server ejected', 10_000);
    expect(reasonOf(await client.call('MSET', a, '1', b, '2', c, '3'))).toBe('NO_HEALTHY_SERVER');
    expect(reasonOf(await client.call('DEL', b, a))).toBe('NO_HEALTHY_SERVER');
    // Nothing of them ran on the servers that were up.
    expect(await client.call('MGET', b, c)).toEqual(['B', 'C']);
    expect(reasonOf(await client.call('MGET', a, b))).toBe('NO_HEALTHY_SERVER');
    expect(await client.call('EXISTS', b, c)).toBe(2);
  });

  it('gives the same replies as one redis-server for random MGET/MSET/DEL/EXISTS/UNLINK/TOUCH (property)', async () => {
    const servers = await startServers(3);
    const single = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const through = await raw(portOf(proxy));
    const reference = await raw(single.port);
    const names = Array.from({ length: 24 }, (_, i) => `k:${i}:${'x'.repeat(i % 5)}`);
    const key = fc.constantFrom(...names);
    const command = fc.oneof(
      fc.array(key, { minLength: 1, maxLength: 8 }).map((ks) => ['MGET', ...ks]),
      fc.array(fc.tuple(key, fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 }).map((pairs) => ['MSET', ...pairs.flat()]),
      fc.array(key, { minLength: 1, maxLength: 6 }).map((ks) => ['DEL', ...ks]),
      fc.array(key, { minLength: 1, maxLength: 6 }).map((ks) => ['UNLINK', ...ks]),
      fc.array(key, { minLength: 1, maxLength: 8 }).map((ks) => ['EXISTS', ...ks]),
      fc.array(key, { minLength: 1, maxLength: 8 }).map((ks) => ['TOUCH', ...ks]),
      fc.tuple(key, fc.string({ maxLength: 6 })).map(([k, v]) => ['SET', k, v]),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 30 }), async (commands) => {
        // Pipelined, as a client would: the replies and their order must match.
        for (const c of commands) {
          through.send(...c);
          reference.send(...c);
        }
        const [got, want] = await Promise.all([through.take(commands.length), reference.take(commands.length)]);
        expect(got).toEqual(want);
      }),
      { numRuns: 60 },
    );
    expect(fanouts(proxy, 'split')).toBeGreaterThan(0);
    // And the keys are where ketama puts them: the three servers together hold what the one does.
    let total = 0;
    for (const server of servers) total += (await direct(server, 'DBSIZE')) as number;
    expect(total).toBe(await direct(single, 'DBSIZE'));
  });
});
