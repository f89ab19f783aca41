/**
 * Liveness for memcached pools comes from the same code as for Redis (heartbeats, eviction,
 * ejection, failover, queueing, request deadlines); proven here against real memcached faults: a
 * server that closes idle connections (`-o idle_timeout`), a frozen server (SIGSTOP), a killed and
 * restarted server, and a request in flight on a frozen server, where a noreply request's timeout
 * stays silent and a quiet one's is told, as errors always are.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerStats } from '../../src/pool/server-pool.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc, mcPoolsideReason } from '../helpers/mc-client.js';
import type { McClient } from '../helpers/mc-client.js';
import { failureCounts, portOf, startProxy } from '../helpers/proxy.js';
import { MemcachedServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A memcached that is always resumed before it is stopped, whatever the test did to it. */
async function startMemcached(args: string[] = []): Promise<MemcachedServer> {
  const server = cleanup.add(await MemcachedServer.start(args), (s) => s.stop());
  cleanup.defer(() => server.signal('SIGCONT'));
  return server;
}

async function proxyFor(servers: MemcachedServer[], pool: Record<string, unknown>): Promise<Proxy> {
  return cleanup.add(await startProxy(servers.map((s) => s.address), { protocol: 'memcached', ...pool }), (p) => p.close());
}

function stats(proxy: Proxy, server = 0): ServerStats {
  return proxy.stats()[0].servers[server];
}

function atMin(proxy: Proxy, min: number, server = 0): boolean {
  const s = stats(proxy, server);
  return s.health.kind === 'up' && s.connections.idle + s.connections.active === min && s.connections.connecting === 0;
}

/** set then get of the client's own key: both must succeed. */
async function roundTrip(client: McClient, key: string, value: string): Promise<void> {
  expect(await client.call(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`)).toBe('STORED\r\n');
  expect(await client.call(`get ${key}\r\n`)).toBe(`VALUE ${key} 0 ${value.length}\r\n${value}\r\nEND\r\n`);
}

describe('memcached faults', () => {
  it('evicts connections memcached closed for idleness (-o idle_timeout) and refills: clients see no error', async () => {
    const memcached = await startMemcached(['-o', 'idle_timeout=1']);
    // Heartbeats far rarer than the server's timeout: the server gets to close the idle connections.
    const proxy = await proxyFor([memcached], { connections: { min: 2, max: 4 }, heartbeat: { interval: '10s', timeout: '200ms' }, request_timeout: '1s' });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectMc(cleanup, portOf(proxy));
    // memcached checks idle connections about once a second: closed within a few seconds.
    await waitFor(() => stats(proxy).counters.connectionsClosed.remote_closed >= 2, 'both idle connections closed by memcached', 8000);
    await waitFor(() => atMin(proxy, 2), 'the pool refilled to min', 3000);
    for (let i = 0; i < 20; i++) await roundTrip(client, `idle:${i}`, `v${i}`);
    expect(stats(proxy).counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(stats(proxy).counters.ejections).toBe(0);
    expect(failureCounts(proxy)).toEqual({});
  });

  it('evicts connections to a frozen memcached by heartbeat, ejects it and fails over with no client error after detection', async () => {
    const first = await startMemcached();
    const second = await startMemcached();
    const proxy = await proxyFor([first, second], {
      routing: 'failover',
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '300ms', timeout: '150ms', misses: 2 },
      eject: { after_failures: 2, for: '10s' },
      connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
      queue: { timeout: '300ms' },
      request_timeout: '1s',
    });
    await waitFor(() => atMin(proxy, 2, 0) && atMin(proxy, 2, 1), 'both servers at min');
    const client = await connectMc(cleanup, portOf(proxy));
    await roundTrip(client, 'before', 'x');
    expect(await first.command('get before\r\n')).toBe('VALUE before 0 1\r\nx\r\nEND\r\n');

    await first.freeze();
    await waitFor(() => stats(proxy, 0).counters.connectionsClosed.heartbeat_failed >= 2, 'both connections evicted by heartbeat', 5000);
    await waitFor(() => stats(proxy, 0).health.kind === 'ejected', 'first server ejected', 3000);
    for (let i = 0; i < 20; i++) await roundTrip(client, `frozen:${i}`, `v${i}`);
    expect(await second.command('get frozen:19\r\n')).toBe('VALUE frozen:19 0 3\r\nv19\r\nEND\r\n');
    expect(failureCounts(proxy)).toEqual({});
    first.signal('SIGCONT');
  });

  it('answers with native errors within queue.timeout while memcached is down, and serves again once it is back', async () => {
    const memcached = await startMemcached();
    const proxy = await proxyFor([memcached], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '300ms', timeout: '150ms', misses: 2 },
      eject: { after_failures: 2, for: '500ms' },
      connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
      queue: { timeout: '300ms' },
      request_timeout: '1s',
    });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectMc(cleanup, portOf(proxy));
    await roundTrip(client, 'k', 'before');

    await memcached.kill();
    await waitFor(() => stats(proxy).health.kind === 'ejected', 'server ejected', 3000);
    const started = performance.now();
    const down = await client.call('get k\r\n');
    expect(['NO_HEALTHY_SERVER', 'POOL_TIMEOUT', 'SERVER_ERROR']).toContain(mcPoolsideReason(down));
    // Within queue.timeout and a sweep, plus generous slack for a loaded machine: never a hang.
    expect(performance.now() - started).toBeLessThan(300 + 250 + 2500);
    // A noreply request that fails is still silent: the next reply is the version's.
    client.write('set k 0 0 1 noreply\r\nx\r\n');
    expect(mcPoolsideReason(await client.call('version\r\n'))).not.toBeNull();

    await memcached.restart();
    await waitFor(() => atMin(proxy, 2), 'the pool back at min', 5000);
    await roundTrip(client, 'k', 'after');
  });

  it('times out a request on a frozen memcached: told to a normal or quiet request, silent for a noreply one', async () => {
    const memcached = await startMemcached();
    const proxy = await proxyFor([memcached], {
      connections: { min: 1, max: 1 },
      heartbeat: { interval: '10s', timeout: '1s' },
      request_timeout: '300ms',
      queue: { timeout: '2s' },
    });
    await waitFor(() => atMin(proxy, 1), 'one ready connection');
    const client = await connectMc(cleanup, portOf(proxy));
    await roundTrip(client, 'k', 'v');
    await memcached.freeze();
    client.write('mg k v q\r\nset k 0 0 1 noreply\r\nx\r\nget k\r\n');
    // The oldest request in flight timed out; the others fail with the connection it evicted.
    const replies = await client.take(2, 5000);
    expect(replies.map(mcPoolsideReason)).toEqual(['REQUEST_TIMEOUT', 'SERVER_ERROR']);
    memcached.signal('SIGCONT');
    // The connection whose replies could no longer be trusted was replaced: the next answers are right.
    await waitFor(() => atMin(proxy, 1), 'a fresh connection', 5000);
    await roundTrip(client, 'k', 'w');
    expect(client.pending).toBe(0);
  });
});
