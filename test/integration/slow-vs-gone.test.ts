/**
 * Slow is not gone (issue 8: defects 1, 6, 7, 12, 17), against real redis-server processes: a
 * request's deadline runs from when it was written, never from a mark taken while the connection
 * sat idle; a server busy with a long script that still answers (-BUSY) is not ejected; a frozen
 * server's heartbeats measure the freeze and nothing else; the pool's only server is probed back
 * within about a second of a restart; exclusive connects to a refusing server share the server's
 * backoff; exclusive connections closed for idleness say so.
 *
 * Bounds are derived from the config with generous slack: these prove which rule decides, not
 * how fast the machine is.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerStats } from '../../src/pool/server-pool.js';
import type { Proxy } from '../../src/proxy.js';
import { REQUEST_BUCKETS } from '../../src/util/histogram.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { portOf, startProxy, failureCounts } from '../helpers/proxy.js';
import { RawClient, RespError } from '../helpers/resp-client.js';
import { freePort, RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** Added to every bound: scheduling noise on a loaded 2-core machine, never the thing measured. */
const SLACK_MS = 500;

/**
 * INCRs KEYS[1] once, then runs for ARGV[1] milliseconds by the server's clock (TIME), so the
 * duration does not depend on how fast the machine loops.
 */
const SLOW_SCRIPT = `
redis.call('INCR', KEYS[1])
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local limit = tonumber(ARGV[1]) * 1000
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= limit then break end
end
return 1
`;

async function startRedis(args: string[] = []): Promise<RedisServer> {
  const server = cleanup.add(await RedisServer.start(args), (s) => s.stop());
  cleanup.defer(() => server.signal('SIGCONT'));
  return server;
}

async function proxyFor(servers: string[], pool: Record<string, unknown>): Promise<Proxy> {
  return cleanup.add(await startProxy(servers, pool), (p) => p.close());
}

function stats(proxy: Proxy, server = 0): ServerStats {
  return proxy.stats()[0].servers[server];
}

function ready(proxy: Proxy): number {
  const { idle, active } = stats(proxy).connections;
  return idle + active;
}

const failures = (proxy: Proxy): Record<string, number> => failureCounts(proxy);

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs the slow script for `ms` on `client`; resolves with null on success or the error text. */
function slowScript(client: Redis, key: string, ms: number): Promise<string | null> {
  return client.eval(SLOW_SCRIPT, 1, key, String(ms)).then(() => null, messageOf);
}

describe('request deadlines run from the write', () => {
  it('answers a 300ms script sent after an idle gap longer than request_timeout, and runs its INCR exactly once', async () => {
    const REQUEST_TIMEOUT_MS = 800;
    const redis = await startRedis();
    // Heartbeats rarer than the idle gap: nothing is read while the connection waits.
    const proxy = await proxyFor([redis.address], {
      connections: { min: 1, max: 1 },
      heartbeat: { interval: '5s', timeout: '1s' },
      request_timeout: `${REQUEST_TIMEOUT_MS}ms`,
    });
    await waitFor(() => ready(proxy) === 1, 'one ready connection');
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.set('gap:n', '0')).toBe('OK');
    await sleep(REQUEST_TIMEOUT_MS * 1.5); // idle: the last read is older than the deadline

    const start = performance.now();
    expect(await slowScript(client, 'gap:n', 300)).toBeNull();
    expect(performance.now() - start).toBeGreaterThanOrEqual(290);
    expect(await redis.command('GET', 'gap:n')).toBe('$1\r\n1\r\n');
    expect(failures(proxy)).toEqual({});
    expect(stats(proxy).counters.connectionsClosed.request_timeout).toBe(0);
  });

  it("answers a GET queued behind another client's long script on a server that was idle", async () => {
    const REQUEST_TIMEOUT_MS = 1500;
    const SCRIPT_MS = 1000;
    const redis = await startRedis();
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '5s', timeout: '1s' },
      request_timeout: `${REQUEST_TIMEOUT_MS}ms`,
    });
    await waitFor(() => ready(proxy) === 2, 'two ready connections');
    const scripter = await connectRedis(cleanup, portOf(proxy));
    const reader = await connectRedis(cleanup, portOf(proxy));
    expect(await reader.set('queued:k', 'v')).toBe('OK');
    await sleep(1000); // idle for most of request_timeout

    const script = slowScript(scripter, 'queued:n', SCRIPT_MS);
    await sleep(50);
    const asked = performance.now();
    // The server runs one thing at a time: the GET is answered once the script is done.
    const value = await reader.get('queued:k').catch(messageOf);
    const waited = performance.now() - asked;
    expect(value).toBe('v');
    expect(await script).toBeNull();
    expect(waited).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
    expect(failures(proxy)).toEqual({});
    expect(stats(proxy).counters.connectionsClosed.request_timeout).toBe(0);
  });
});

describe('a busy server is slow, not gone', () => {
  it('does not eject a server busy with a script longer than request_timeout while it answers BUSY, and serves again once the script ends', async () => {
    const SCRIPT_MS = 2000;
    const REQUEST_TIMEOUT_MS = 500;
    // BUSY to everyone else 100ms into the script.
    const redis = await startRedis(['--busy-reply-threshold', '100']);
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '300ms', timeout: '200ms', misses: 2 },
      eject: { after_failures: 2, for: '10s' },
      request_timeout: `${REQUEST_TIMEOUT_MS}ms`,
    });
    await waitFor(() => ready(proxy) === 2, 'two ready connections');
    const scripter = await connectRedis(cleanup, portOf(proxy));
    const other = await connectRedis(cleanup, portOf(proxy));
    expect(await other.set('busy:k', 'v')).toBe('OK');

    const kinds = new Set<string>();
    const watch = setInterval(() => kinds.add(stats(proxy).health.kind), 10);
    cleanup.defer(() => clearInterval(watch));
    const started = performance.now();
    const script = slowScript(scripter, 'busy:n', SCRIPT_MS);
    const answers: string[] = [];
    while (performance.now() - started < SCRIPT_MS - 200) {
      answers.push(await other.get('busy:k').then((v) => String(v), messageOf));
      await sleep(50);
    }
    // The script's own client waited past request_timeout: its connection cannot be trusted.
    expect(await script).toMatch(/^ERR poolside REQUEST_TIMEOUT /);
    // Everyone else got the server's own answer: BUSY while it ran.
    expect(answers.some((a) => a.startsWith('BUSY'))).toBe(true);
    for (const a of answers) expect(a === 'v' || a.startsWith('BUSY')).toBe(true);

    await waitFor(() => performance.now() - started > SCRIPT_MS + 100, 'the script over', SCRIPT_MS + 2000);
    await waitFor(async () => (await other.get('busy:k').catch(messageOf)) === 'v', 'the server serving again', 3000);
    clearInterval(watch);
    expect(kinds.has('ejected')).toBe(false);
    expect(stats(proxy).counters.ejections).toBe(0);
    expect(stats(proxy).counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(stats(proxy).counters.heartbeatFailures.error).toBe(0);
  });
});

describe('heartbeat durations', () => {
  it('records no heartbeat longer than a 700ms SIGSTOP', async () => {
    const PAUSE_MS = 700;
    const redis = await startRedis();
    // Misses × timeout longer than the pause: the connections survive it, their heartbeats late.
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '150ms', timeout: '100ms', misses: 15, jitter: '0%' },
      request_timeout: '5s',
    });
    await waitFor(() => ready(proxy) === 2, 'two ready connections');
    await sleep(400); // a few heartbeats before the pause
    const before = stats(proxy).counters.heartbeatDuration.count;
    expect(before).toBeGreaterThan(0);
    await redis.freeze();
    await sleep(PAUSE_MS);
    redis.signal('SIGCONT');
    await sleep(500);
    const histogram = stats(proxy).counters.heartbeatDuration;
    expect(histogram.count).toBeGreaterThan(before);
    // Every sample at most the pause (plus a little scheduling): none in buckets above 1s.
    const firstAbove = REQUEST_BUCKETS.findIndex((bound) => bound > (PAUSE_MS + SLACK_MS) / 1000);
    const above = Array.from(histogram.counts.slice(firstAbove));
    expect(above.every((n) => n === 0)).toBe(true);
    expect(histogram.sum).toBeLessThan(histogram.count * ((PAUSE_MS + SLACK_MS) / 1000));
    expect(stats(proxy).counters.connectionsClosed.heartbeat_failed).toBe(0);
  });
});

describe("the pool's only server", () => {
  it('serves again within about a second of a restart after a short outage, although eject.for is 10s', async () => {
    const redis = await startRedis();
    // Defaults for everything that decides: eject after 3 failures, eject.for 10s, backoff from 100ms.
    const proxy = await proxyFor([redis.address], {});
    await waitFor(() => ready(proxy) >= 1, 'a ready connection');
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.set('restart:k', 'v')).toBe('OK');

    await redis.kill();
    await waitFor(() => stats(proxy).health.kind === 'ejected', 'the server ejected', 3000);
    // Down a while after the ejection: probes at +100, +300, +700, +1500ms… find it back.
    await sleep(700);
    await redis.restart();
    // Requests wait for the probes meanwhile (panic routing): no NO_HEALTHY_SERVER.
    const served = await waitFor(async () => (await client.get('restart:k').catch(messageOf)) === null, 'a GET served', 10_000);
    expect(served).toBeLessThan(1500 + SLACK_MS);
    expect(failures(proxy).NO_HEALTHY_SERVER).toBeUndefined();
  });
});

describe('exclusive connects to a refusing server', () => {
  it('share the server backoff: one BLPOP makes a handful of connects in 500ms, not hundreds, and each counts against health', async () => {
    const port = await freePort(); // nothing listens: every connect is refused
    const proxy = await proxyFor([`127.0.0.1:${port}`], {
      connections: { min: 0, max: 2 },
      eject: { after_failures: 50, for: '10s' },
      queue: { timeout: '1s' },
    });
    const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
    client.send('BLPOP', 'refused:list', '0');
    await sleep(500);
    const counters = stats(proxy).counters;
    // Backoff from 100ms, doubling: 100 + 200 + 400ms covers 500ms in about four connects.
    expect(counters.connectionsOpened).toBeGreaterThanOrEqual(2);
    expect(counters.connectionsOpened).toBeLessThan(20);
    const health = stats(proxy).health;
    expect(health.kind).toBe('failing');
    if (health.kind === 'failing') expect(health.failures).toBe(counters.connectFailures);
    const reply = await client.reply(3000);
    expect(reply).toBeInstanceOf(RespError);
  });
});

describe('exclusive connections closed for idleness', () => {
  it('are counted as idle_timeout, not shutdown', async () => {
    const redis = await startRedis();
    const proxy = await proxyFor([redis.address], { exclusive: { max: 2, idle_timeout: '200ms' } });
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.blpop('idle:list', 0.01)).toBeNull();
    await waitFor(() => stats(proxy).counters.connectionsClosed.idle_timeout >= 1, 'the exclusive connection closed for idleness', 3000);
    expect(stats(proxy).counters.connectionsClosed.shutdown).toBe(0);
  });
});
