/**
 * Waiting for a connection and waiting for a reply: queue.timeout, queue.max, request_timeout and
 * exclusive-connection limits, against servers that are down, still starting, or frozen.
 * Every request gets an answer in bounded time, as a native `-ERR poolside …` error if need be.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { freePort, RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

async function startRedis(): Promise<RedisServer> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  // Registered after stop, so it runs first: a frozen server cannot be stopped cleanly.
  cleanup.defer(() => redis.signal('SIGCONT'));
  return redis;
}

function reasonOf(value: RespValue): string {
  expect(value, 'a poolside error').toBeInstanceOf(RespError);
  const reason = poolsideReason(value);
  expect(reason, String(value)).not.toBeNull();
  return reason as string;
}

/** Sends one command and returns its reply and how long it took. */
async function timed(client: RawClient, timeoutMs: number, ...args: string[]): Promise<{ reply: RespValue; ms: number }> {
  const started = performance.now();
  client.send(...args);
  const reply = await client.reply(timeoutMs);
  return { reply, ms: performance.now() - started };
}

function server0(proxy: Proxy): ReturnType<Proxy['stats']>[number]['servers'][number] {
  return proxy.stats()[0].servers[0];
}

describe('waiting for a connection', () => {
  it("answers within queue.timeout with a native error while the pool's only server is down, ejected or not: with nowhere else to go, requests wait for its probes", async () => {
    const deadPort = await freePort();
    const QUEUE_TIMEOUT_MS = 300;
    const proxy = cleanup.add(
      await startProxy([`127.0.0.1:${deadPort}`], {
        queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
        connect: { timeout: '200ms', backoff: { initial: '50ms', max: '100ms' } },
        eject: { after_failures: 3, for: '10s' },
      }),
      (p) => p.close(),
    );
    const clients = await Promise.all(Array.from({ length: 5 }, () => raw(portOf(proxy))));
    const first = await Promise.all(clients.map((client) => timed(client, QUEUE_TIMEOUT_MS + 1000, 'GET', 'k')));
    for (const { reply, ms } of first) {
      expect(['NO_HEALTHY_SERVER', 'POOL_TIMEOUT']).toContain(reasonOf(reply));
      expect(ms).toBeLessThan(QUEUE_TIMEOUT_MS + 300);
    }
    await waitFor(() => server0(proxy).health.kind === 'ejected', 'the dead server ejected', 3000);
    const ejected = await Promise.all(clients.map((client) => timed(client, QUEUE_TIMEOUT_MS + 1000, 'GET', 'k')));
    for (const [i, { reply, ms }] of ejected.entries()) {
      expect(reasonOf(reply)).toBe('POOL_TIMEOUT');
      expect(ms).toBeLessThan(QUEUE_TIMEOUT_MS + 300);
      expect(clients[i].isClosed).toBe(false);
    }
  });

  it('answers QUEUE_FULL at once to requests beyond queue.max while the only server is still starting', async () => {
    const redis = await startRedis();
    await redis.command('SET', 'k', 'v');
    // Frozen before poolside connects: the kernel accepts the connection, but its set-up
    // (SELECT for db 1, the readiness PING) is never answered, so requests wait for it.
    await redis.freeze();
    const proxy = cleanup.add(
      await startProxy([], {
        servers: [{ address: redis.address, db: 1 }],
        connections: { min: 1, max: 1 },
        queue: { max: 1, timeout: '3s' },
        connect: { timeout: '5s' },
      }),
      (p) => p.close(),
    );
    const waiting = await raw(portOf(proxy));
    waiting.send('SET', 'k1', 'from-the-waiting-client');
    await waitFor(() => proxy.stats()[0].waiting.requests === 1, 'one request waiting');
    const excess = await Promise.all(Array.from({ length: 3 }, () => raw(portOf(proxy))));
    for (const client of excess) {
      const { reply, ms } = await timed(client, 1000, 'GET', 'k');
      expect(reasonOf(reply)).toBe('QUEUE_FULL');
      expect(ms).toBeLessThan(200);
    }
    redis.signal('SIGCONT');
    expect(await waiting.reply(3000)).toBe('OK');
    expect(await excess[0].call('GET', 'k1')).toBe('from-the-waiting-client');
    expect(proxy.stats()[0].waiting.requests).toBe(0);
  });

  // queue.max bounds the sessions waiting for a connection, not one session's own pipeline: Redis
  // answers every request of a pipeline, and refusing its middle would break a transaction.
  it("answers every request of one client's pipeline however long, and refuses sessions past queue.max", async () => {
    const redis = await startRedis();
    await redis.freeze();
    const proxy = cleanup.add(
      await startProxy([], {
        servers: [{ address: redis.address, db: 1 }],
        connections: { min: 1, max: 1 },
        queue: { max: 2, timeout: '3s' },
        connect: { timeout: '5s' },
      }),
      (p) => p.close(),
    );
    const client = await raw(portOf(proxy));
    for (let i = 0; i < 10; i++) client.send('INCR', 'n');
    const second = await raw(portOf(proxy));
    second.send('GET', 'n');
    await waitFor(() => proxy.stats()[0].waiting.sessions === 2, 'two sessions waiting');
    const third = await raw(portOf(proxy));
    expect(reasonOf(await third.call('GET', 'n'))).toBe('QUEUE_FULL');
    redis.signal('SIGCONT');
    expect(await client.take(10, 3000)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('answers POOL_TIMEOUT after queue.timeout when every exclusive connection is lent, and the client carries on', async () => {
    const redis = await startRedis();
    const proxy = cleanup.add(await startProxy([redis.address], { exclusive: { max: 1 }, queue: { timeout: '200ms' } }), (p) => p.close());
    const blocker = await raw(portOf(proxy));
    blocker.send('BLPOP', 'q', '5');
    await waitFor(() => server0(proxy).exclusive.borrowed === 1, 'the BLPOP holding the only exclusive connection');
    const second = await raw(portOf(proxy));
    const { reply, ms } = await timed(second, 2000, 'BLPOP', 'q', '5');
    expect(reasonOf(reply)).toBe('POOL_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(150);
    expect(ms).toBeLessThan(700);
    // The shared path was never blocked, and the first BLPOP is still served.
    expect(await second.call('LPUSH', 'q', 'x')).toBe(1);
    expect(await blocker.reply(2000)).toEqual(['q', 'x']);
  });
});

describe('waiting for a reply', () => {
  it('answers REQUEST_TIMEOUT when the server freezes (SIGSTOP), and serves again after SIGCONT', async () => {
    const redis = await startRedis();
    const proxy = cleanup.add(
      await startProxy([redis.address], { request_timeout: '200ms', connections: { min: 1, max: 1 }, queue: { timeout: '300ms' } }),
      (p) => p.close(),
    );
    const client = await raw(portOf(proxy));
    expect(await client.call('SET', 'k', 'v')).toBe('OK');

    await redis.freeze();
    const { reply, ms } = await timed(client, 2000, 'INCR', 'frozen:n');
    expect(reasonOf(reply)).toBe('REQUEST_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(600);
    // A pipeline behind a stuck request: every request answered, none hangs.
    const started = performance.now();
    for (let i = 0; i < 10; i++) client.send('GET', 'k');
    const replies = await client.take(10, 3000);
    for (const r of replies) expect(['REQUEST_TIMEOUT', 'SERVER_ERROR', 'POOL_TIMEOUT', 'NO_HEALTHY_SERVER']).toContain(reasonOf(r));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(server0(proxy).counters.connectionsClosed.request_timeout).toBeGreaterThanOrEqual(1);

    redis.signal('SIGCONT');
    await waitFor(async () => (await client.call('GET', 'k')) === 'v', 'served again after SIGCONT', 3000, 20);
    expect(client.isClosed).toBe(false);
  });

  it('moves failover traffic to the second server when the first freezes (SIGSTOP), within a bounded detection period', async () => {
    const first = await startRedis();
    const second = await startRedis();
    const proxy = cleanup.add(
      await startProxy([first.address, second.address], {
        routing: 'failover',
        request_timeout: '200ms',
        queue: { timeout: '300ms' },
        connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
        heartbeat: { interval: '200ms', timeout: '100ms', misses: 1 },
        eject: { after_failures: 2, for: '5s' },
      }),
      (p) => p.close(),
    );
    const client = await raw(portOf(proxy));
    expect(await client.call('SET', 'k', 'first')).toBe('OK');
    await first.freeze();
    const errors: string[] = [];
    const detection = await waitFor(
      async () => {
        const { reply, ms } = await timed(client, 1500, 'SET', 'frozen:k', 'x');
        expect(ms).toBeLessThan(1000);
        if (reply === 'OK') return true;
        errors.push(reasonOf(reply));
        return false;
      },
      'a request served by the second server',
      5000,
      20,
    );
    expect(detection).toBeLessThan(3000);
    const check = await RawClient.connect(second.port);
    expect(await check.call('GET', 'frozen:k')).toBe('x');
    check.destroy();
  });
});

describe('sessions that leave while waiting', () => {
  it('no longer count against queue.max', async () => {
    const redis = await startRedis();
    await redis.freeze();
    const proxy = cleanup.add(
      await startProxy([], { servers: [redis.address], connections: { min: 1, max: 1 }, queue: { max: 2, timeout: '5s' }, connect: { timeout: '5s' } }),
      (p) => p.close(),
    );
    const leaving = await Promise.all([raw(portOf(proxy)), raw(portOf(proxy))]);
    for (const client of leaving) client.send('GET', 'k');
    await waitFor(() => proxy.stats()[0].waiting.sessions === 2, 'two sessions waiting');
    // Gone for good (a reset): a client that only half-closes is still owed its reply and waits on.
    for (const client of leaving) client.socket.resetAndDestroy();
    await waitFor(() => proxy.stats()[0].waiting.sessions === 0, 'the sessions that left gone from the queue');
    const next = await raw(portOf(proxy));
    next.send('GET', 'k');
    redis.signal('SIGCONT');
    expect(await next.reply(5000)).toBeNull();
  });
});
