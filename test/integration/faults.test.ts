/**
 * Keeping pooled connections honest (DESIGN.md §2), proven against real faults: a server that
 * closes idle connections, a frozen server (SIGSTOP), a killed and restarted server, a network
 * blackhole, an address that never answers, a connection that dies with a request on it, and
 * lifetime/idle replacement. Each scenario checks what the client sees, what the counters say, and
 * how long detection took, against a bound derived from the config with generous slack: these are
 * not timing benchmarks, only proofs that detection is driven by the configured timers.
 *
 * Every measured time is printed at the end of the file (console.log) for the record.
 */
import { sweepInterval } from '../../src/pool/pool.js';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ServerStats } from '../../src/pool/server-pool.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { portOf, startProxy, failureCounts } from '../helpers/proxy.js';
import { Relay } from '../helpers/relay.js';
import { RawClient } from '../helpers/resp-client.js';
import { freePort, RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** Added to every bound: scheduling noise on a loaded 2-core machine, never the thing measured. */
const SLACK_MS = 500;

const measured: Record<string, string> = {};
function record(name: string, ms: number, boundMs: number): void {
  measured[name] = `${ms.toFixed(0)}ms (bound ${boundMs.toFixed(0)}ms)`;
}
afterAll(() => {
  console.log(`fault detection times:\n${Object.entries(measured).map(([k, v]) => `  ${k}: ${v}`).join('\n')}`);
});

/** A redis-server that is always resumed before it is stopped, whatever the test did to it. */
async function startRedis(): Promise<RedisServer> {
  const server = cleanup.add(await RedisServer.start(), (s) => s.stop());
  cleanup.defer(() => server.signal('SIGCONT'));
  return server;
}

async function proxyFor(servers: string[], pool: Record<string, unknown>): Promise<Proxy> {
  return cleanup.add(await startProxy([], { ...pool, servers }), (p) => p.close());
}

async function relayTo(target: RedisServer | null): Promise<Relay> {
  return cleanup.add(await Relay.start(target === null ? null : { host: '127.0.0.1', port: target.port }), (r) => r.close());
}

function stats(proxy: Proxy, server = 0): ServerStats {
  return proxy.stats()[0].servers[server];
}

/** Shared connections that take requests now. */
function ready(proxy: Proxy, server = 0): number {
  const { idle, active } = stats(proxy, server).connections;
  return idle + active;
}

function atMin(proxy: Proxy, min: number, server = 0): boolean {
  const s = stats(proxy, server);
  return s.health.kind === 'up' && s.connections.idle + s.connections.active === min && s.connections.connecting === 0;
}

const failures = (proxy: Proxy): Record<string, number> => failureCounts(proxy);

function retries(proxy: Proxy): number {
  const pool = proxy.pools.get('p');
  if (pool === undefined) throw new Error('no pool p');
  return pool.counters.retries;
}

/**
 * The pool's sweep period, as pool.ts derives it: a quarter of the tightest deadline, 10..250ms.
 * Every time-based duty (heartbeat misses, ejection expiry, queue timeout) is seen one sweep late
 * at worst.
 */
function sweepMs(c: { queueTimeoutMs: number; requestTimeoutMs: number; heartbeatTimeoutMs: number }): number {
  return sweepInterval({
    queue: { max: 1, timeoutMs: c.queueTimeoutMs },
    requestTimeoutMs: c.requestTimeoutMs,
    heartbeat: { intervalMs: 1, timeoutMs: c.heartbeatTimeoutMs, misses: 1, jitter: 0, probe: null, answer: null },
  });
}

/** The message of a failed ioredis call (ReplyError for a `-ERR …` reply). */
function messageOf(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

const POOLSIDE_ERROR = /^ReplyError: ERR poolside (SERVER_ERROR|NO_HEALTHY_SERVER|POOL_TIMEOUT) /;

interface Outcome {
  client: number;
  start: number;
  end: number;
  /** null when the request succeeded. */
  error: string | null;
}

/**
 * A steady load: each client runs one request at a time (SET then GET of its own key), paced,
 * until `until()` says stop or `maxOps` requests were made. A request that takes longer than
 * `hangMs` is recorded as a hang and the client moves on. With `checkReads`, a GET must return what
 * the client's previous SET wrote (a wrong answer is recorded as an error).
 */
async function runLoad(
  clients: Redis[],
  options: { until: () => boolean; maxOps: number; paceMs: number; hangMs: number; checkReads?: boolean },
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  await Promise.all(
    clients.map(async (client, c) => {
      for (let i = 0; i < options.maxOps && !options.until(); i++) {
        const start = performance.now();
        const key = `load:${c}`;
        const expected = String(i - 1);
        const request: Promise<string | null> =
          i % 2 === 0
            ? client.set(key, String(i)).then(() => null, messageOf)
            : client.get(key).then((value) => (options.checkReads === true && value !== expected ? `WRONG: GET ${key} = ${value}, expected ${expected}` : null), messageOf);
        let timer: NodeJS.Timeout | undefined;
        const hang = new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve(`HANG: no reply within ${options.hangMs}ms`), options.hangMs);
        });
        const error = await Promise.race([request, hang]);
        clearTimeout(timer);
        outcomes.push({ client: c, start, end: performance.now(), error });
        await new Promise((resolve) => setTimeout(resolve, options.paceMs));
      }
    }),
  );
  return outcomes.sort((a, b) => a.start - b.start);
}

/** Samples a number every few milliseconds until stopped; returns the smallest and largest seen. */
function sampler(read: () => number, everyMs = 5): { stop(): { min: number; max: number; samples: number } } {
  let min = read();
  let max = min;
  let samples = 1;
  const timer = setInterval(() => {
    const value = read();
    min = Math.min(min, value);
    max = Math.max(max, value);
    samples++;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const value = read();
      min = Math.min(min, value);
      max = Math.max(max, value);
      samples++;
      return { min, max, samples };
    },
  };
}

describe('a server that closes idle pooled connections', () => {
  it('evicts pooled connections the server closed after its timeout before any client uses them: GET and SET see no error', async () => {
    const redis = await startRedis();
    // Heartbeats much rarer than the server's timeout: the server gets to close the idle connections
    // (a heartbeat in between would reset the server's idle clock).
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '10s', timeout: '200ms' },
      queue: { timeout: '500ms' },
      request_timeout: '1s',
    });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectRedis(cleanup, portOf(proxy));

    expect(await redis.command('CONFIG', 'SET', 'timeout', '1')).toBe('+OK\r\n');
    // Redis compares whole seconds of idleness, so a 1s timeout closes after 1..2s; its cron adds
    // 100ms. That clock is the server's, outside poolside: twice the usual slack.
    const bound = (1 + 1) * 1000 + 100 + 2 * SLACK_MS;
    const detected = await waitFor(() => stats(proxy).counters.connectionsClosed.remote_closed >= 2, 'both idle connections closed by redis', bound + 2000);
    record('server timeout 1s → remote_closed seen', detected, bound);
    expect(detected).toBeLessThan(bound);
    await waitFor(() => atMin(proxy, 2), 'the pool refilled to min', 2000);

    // The refilled connections are fresh: the server will not close them during these requests.
    for (let i = 0; i < 25; i++) {
      expect(await client.set(`idle:${i}`, `v${i}`)).toBe('OK');
      expect(await client.get(`idle:${i}`)).toBe(`v${i}`);
    }
    const counters = stats(proxy).counters;
    expect(counters.connectionsClosed.remote_closed).toBeGreaterThanOrEqual(2);
    expect(counters.connectionsClosed.error).toBe(0);
    expect(counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(counters.connectionsOpened).toBeGreaterThanOrEqual(4);
    expect(counters.ejections).toBe(0);
    expect(failures(proxy)).toEqual({});
    expect(retries(proxy)).toBe(0);
  });

  it('evicts pooled connections killed with CLIENT KILL TYPE normal, refills to min, and later requests see no error', async () => {
    const redis = await startRedis();
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '300ms', timeout: '150ms' },
      queue: { timeout: '500ms' },
      request_timeout: '1s',
    });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectRedis(cleanup, portOf(proxy));

    const killed = await redis.command('CLIENT', 'KILL', 'TYPE', 'normal');
    expect(Number(/^:(\d+)\r\n$/.exec(killed)?.[1])).toBeGreaterThanOrEqual(2);
    // The server's FIN is the signal: no timer is involved, only the event loop.
    const bound = SLACK_MS;
    const detected = await waitFor(() => stats(proxy).counters.connectionsClosed.remote_closed >= 2, 'both killed connections seen closed', bound + 2000);
    record('CLIENT KILL → remote_closed seen', detected, bound);
    expect(detected).toBeLessThan(bound);
    const refilled = await waitFor(() => atMin(proxy, 2), 'the pool refilled to min', 2000);
    record('CLIENT KILL → pool back at min', detected + refilled, bound);

    for (let i = 0; i < 25; i++) {
      expect(await client.set(`kill:${i}`, `v${i}`)).toBe('OK');
      expect(await client.get(`kill:${i}`)).toBe(`v${i}`);
    }
    const counters = stats(proxy).counters;
    expect(counters.connectionsClosed.remote_closed).toBeGreaterThanOrEqual(2);
    expect(counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(counters.ejections).toBe(0);
    expect(stats(proxy).health.kind).toBe('up');
    expect(failures(proxy)).toEqual({});
  });
});

describe('a frozen server (SIGSTOP)', () => {
  const HEARTBEAT = { intervalMs: 300, timeoutMs: 150, misses: 2, jitter: 0.2 };
  const EJECT_FOR_MS = 600;
  const QUEUE_TIMEOUT_MS = 300;
  const CONNECT_TIMEOUT_MS = 200;
  const BACKOFF_MAX_MS = 200;
  const pool = {
    routing: 'failover',
    connections: { min: 2, max: 4 },
    heartbeat: { interval: `${HEARTBEAT.intervalMs}ms`, timeout: `${HEARTBEAT.timeoutMs}ms`, misses: HEARTBEAT.misses, jitter: '20%' },
    eject: { after_failures: 2, for: `${EJECT_FOR_MS}ms` },
    connect: { timeout: `${CONNECT_TIMEOUT_MS}ms`, backoff: { initial: '50ms', max: `${BACKOFF_MAX_MS}ms` } },
    queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
    request_timeout: '1s',
  };
  const sweep = sweepMs({ queueTimeoutMs: QUEUE_TIMEOUT_MS, requestTimeoutMs: 1000, heartbeatTimeoutMs: HEARTBEAT.timeoutMs });
  // Next heartbeat due at most interval × (1 + jitter) after the last one; each miss takes timeout + one sweep.
  const detectionBound = HEARTBEAT.intervalMs * (1 + HEARTBEAT.jitter) + HEARTBEAT.misses * (HEARTBEAT.timeoutMs + sweep) + sweep + SLACK_MS;

  it('evicts idle connections to a frozen server by heartbeat within the bound, ejects it, and fails over with no client error after detection', async () => {
    const first = await startRedis();
    const second = await startRedis();
    const proxy = await proxyFor([first.address, second.address], pool);
    await waitFor(() => atMin(proxy, 2, 0) && atMin(proxy, 2, 1), 'both servers at min');
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.set('frozen:before', '1')).toBe('OK');
    expect(await first.command('EXISTS', 'frozen:before')).toBe(':1\r\n');

    await first.freeze();
    const evicted = await waitFor(
      () => stats(proxy, 0).counters.connectionsClosed.heartbeat_failed >= 2,
      'both idle connections evicted by heartbeat',
      detectionBound + 3000,
    );
    const ejected = evicted + (await waitFor(() => stats(proxy, 0).health.kind === 'ejected', 'first server ejected', 2000));
    record('SIGSTOP → both connections evicted (heartbeat_failed)', evicted, detectionBound);
    record('SIGSTOP → server ejected', ejected, detectionBound);
    expect(evicted).toBeLessThan(detectionBound);
    expect(ejected).toBeLessThan(detectionBound);
    const frozen = stats(proxy, 0).counters;
    expect(frozen.ejections).toBe(1);
    expect(frozen.heartbeatFailures.timeout).toBeGreaterThanOrEqual(HEARTBEAT.misses * 2);
    expect(frozen.connectionsClosed.remote_closed).toBe(0);

    // After detection: traffic goes to the second server, and no client sees an error.
    for (let i = 0; i < 20; i++) {
      expect(await client.set(`frozen:${i}`, `v${i}`)).toBe('OK');
      expect(await client.get(`frozen:${i}`)).toBe(`v${i}`);
    }
    expect(await second.command('EXISTS', 'frozen:19')).toBe(':1\r\n');
    expect(failures(proxy)).toEqual({});
    expect(stats(proxy, 1).counters.ejections).toBe(0);
    first.signal('SIGCONT');
    expect(await first.command('EXISTS', 'frozen:19')).toBe(':0\r\n');
  });

  /*
   * The server thaws right after its ejection, while a connect opened around the ejection may still
   * be pending. That connect completing proves nothing (nextHealth ignores it while ejected); once
   * eject.for has passed, a fresh probe connect decides (unit version in test/unit/server-pool.test.ts).
   */
  it('after the frozen server thaws, keeps it out of routing until eject.for has passed, then routes back to it at min connections', async () => {
    const first = await startRedis();
    const second = await startRedis();
    // A long connect timeout keeps any connect opened around the ejection pending until SIGCONT.
    const proxy = await proxyFor([first.address, second.address], { ...pool, connect: { timeout: '800ms', backoff: { initial: '50ms', max: `${BACKOFF_MAX_MS}ms` } } });
    await waitFor(() => atMin(proxy, 2, 0) && atMin(proxy, 2, 1), 'both servers at min');
    const client = await connectRedis(cleanup, portOf(proxy));

    await first.freeze();
    await waitFor(() => stats(proxy, 0).health.kind === 'ejected', 'first server ejected', detectionBound + 3000);
    const health = stats(proxy, 0).health;
    if (health.kind !== 'ejected') throw new Error('not ejected');
    first.signal('SIGCONT');

    // Until eject.for has passed: out of routing, traffic on the second server.
    expect(await client.set('thawed:early', '1')).toBe('OK');
    expect(await second.command('EXISTS', 'thawed:early')).toBe(':1\r\n');
    const kindsBefore = new Set<string>();
    // `until` is on the proxy's clock, which is performance.now() in this process.
    await waitFor(() => {
      kindsBefore.add(stats(proxy, 0).health.kind);
      return performance.now() >= health.until;
    }, 'the end of eject.for', EJECT_FOR_MS + 1000, 5);
    expect([...kindsBefore]).toEqual(['ejected']);

    // Then a probe after the backoff brings it back up, at min, and ordered failover returns to it.
    const recoveryBound = 2 * sweep + BACKOFF_MAX_MS * 1.2 + SLACK_MS;
    const recovered = await waitFor(() => atMin(proxy, 2, 0), 'first server up at min', recoveryBound + 1000).catch((err: Error) => {
      const s = stats(proxy, 0);
      measured['eject.for over → thawed server up at min'] = `never: ${s.health.kind}, ${JSON.stringify(s.connections)}`;
      throw err;
    });
    record('eject.for over → thawed server up at min', recovered, recoveryBound);
    expect(recovered).toBeLessThan(recoveryBound);
    expect(await client.set('thawed:late', '1')).toBe('OK');
    expect(await first.command('EXISTS', 'thawed:late')).toBe(':1\r\n');
    expect(failures(proxy)).toEqual({});
  });
});

describe('a server killed and restarted on the same port', () => {
  it('answers requests within queue.timeout with native errors while it is down, never hangs one, and serves without errors once it is back', async () => {
    const QUEUE_TIMEOUT_MS = 300;
    const EJECT_FOR_MS = 500;
    const HEARTBEAT_INTERVAL_MS = 300;
    const BACKOFF_MAX_MS = 200;
    const CONNECT_TIMEOUT_MS = 200;
    const redis = await startRedis();
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: `${HEARTBEAT_INTERVAL_MS}ms`, timeout: '150ms', misses: 2 },
      eject: { after_failures: 2, for: `${EJECT_FOR_MS}ms` },
      connect: { timeout: `${CONNECT_TIMEOUT_MS}ms`, backoff: { initial: '50ms', max: `${BACKOFF_MAX_MS}ms` } },
      queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
      request_timeout: '1s',
    });
    const sweep = sweepMs({ queueTimeoutMs: QUEUE_TIMEOUT_MS, requestTimeoutMs: 1000, heartbeatTimeoutMs: 150 });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const clients = await Promise.all(Array.from({ length: 3 }, () => connectRedis(cleanup, portOf(proxy))));

    // Back for one heartbeat interval, plus eject.for, plus the probe's backoff: from then on, no errors.
    const settleMs = EJECT_FOR_MS + HEARTBEAT_INTERVAL_MS * 1.2 + BACKOFF_MAX_MS * 1.2 + CONNECT_TIMEOUT_MS + sweep + SLACK_MS;
    const hangMs = QUEUE_TIMEOUT_MS + sweep + SLACK_MS;
    let stopAt = Infinity;
    const load = runLoad(clients, { until: () => performance.now() >= stopAt, maxOps: 3000, paceMs: 3, hangMs });

    await new Promise((resolve) => setTimeout(resolve, 300)); // healthy traffic first: the scenario needs a "before"
    const killedAt = performance.now();
    await redis.kill();
    const ejectedAfter = await waitFor(() => stats(proxy).health.kind === 'ejected', 'server ejected', 3000);
    // The kill closes both connections; the refill's two connects are refused at once: two failures.
    record('kill → server ejected', ejectedAfter, CONNECT_TIMEOUT_MS + SLACK_MS);
    expect(ejectedAfter).toBeLessThan(CONNECT_TIMEOUT_MS + SLACK_MS);
    await new Promise((resolve) => setTimeout(resolve, 600)); // down for a while: that is the scenario
    await redis.restart();
    const backAt = performance.now();
    stopAt = backAt + settleMs + 700;
    const outcomes = await load;

    const before = outcomes.filter((o) => o.end < killedAt);
    const down = outcomes.filter((o) => o.start >= killedAt && o.end < backAt);
    const settled = outcomes.filter((o) => o.start >= backAt + settleMs);
    expect(before.length).toBeGreaterThan(10);
    expect(before.filter((o) => o.error !== null)).toEqual([]);
    // While down: every request answered, with poolside's native error, within queue.timeout
    // (the pool's only server: requests wait for its probes rather than fail at once).
    expect(down.length).toBeGreaterThanOrEqual(clients.length);
    const errors = outcomes.filter((o) => o.error !== null);
    expect(errors.length).toBeGreaterThan(0);
    for (const o of errors) expect(o.error).toMatch(POOLSIDE_ERROR);
    const slowest = Math.max(...outcomes.map((o) => o.end - o.start));
    record('slowest request across kill/restart', slowest, hangMs);
    expect(slowest).toBeLessThan(hangMs);
    // Once back and settled: no more errors.
    const lastError = Math.max(...errors.map((o) => o.end));
    record('restart → last client error', lastError - backAt, settleMs);
    expect(settled.length).toBeGreaterThan(10);
    expect(settled.filter((o) => o.error !== null)).toEqual([]);
    expect(lastError - backAt).toBeLessThan(settleMs);

    await waitFor(() => atMin(proxy, 2), 'the pool back at min shared connections', 2000);
    const counters = stats(proxy).counters;
    expect(counters.connectionsClosed.remote_closed + counters.connectionsClosed.error).toBeGreaterThanOrEqual(2);
    expect(counters.connectFailures).toBeGreaterThanOrEqual(2);
    expect(counters.ejections).toBeGreaterThanOrEqual(1);
  });
});

describe('a network blackhole between poolside and the server', () => {
  it('detects a blackholed server by heartbeats, ejects it, fails clients fast meanwhile, and recovers once the network is restored', async () => {
    const HEARTBEAT = { intervalMs: 300, timeoutMs: 150, misses: 2, jitter: 0.2 };
    const EJECT_FOR_MS = 600;
    const CONNECT_TIMEOUT_MS = 200;
    const BACKOFF_MAX_MS = 200;
    const QUEUE_TIMEOUT_MS = 300;
    const redis = await startRedis();
    const relay = await relayTo(redis);
    const proxy = await proxyFor([relay.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: `${HEARTBEAT.intervalMs}ms`, timeout: `${HEARTBEAT.timeoutMs}ms`, misses: HEARTBEAT.misses, jitter: '20%' },
      eject: { after_failures: 2, for: `${EJECT_FOR_MS}ms` },
      connect: { timeout: `${CONNECT_TIMEOUT_MS}ms`, backoff: { initial: '50ms', max: `${BACKOFF_MAX_MS}ms` } },
      queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
      request_timeout: '1s',
    });
    const sweep = sweepMs({ queueTimeoutMs: QUEUE_TIMEOUT_MS, requestTimeoutMs: 1000, heartbeatTimeoutMs: HEARTBEAT.timeoutMs });
    const detectionBound = HEARTBEAT.intervalMs * (1 + HEARTBEAT.jitter) + HEARTBEAT.misses * (HEARTBEAT.timeoutMs + sweep) + sweep + SLACK_MS;
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await client.set('bh:key', 'v')).toBe('OK');

    relay.blackhole();
    const evicted = await waitFor(() => stats(proxy).counters.connectionsClosed.heartbeat_failed >= 2, 'both connections evicted by heartbeat', detectionBound + 3000);
    const ejected = evicted + (await waitFor(() => stats(proxy).health.kind === 'ejected', 'server ejected', 2000));
    record('blackhole → both connections evicted (heartbeat_failed)', evicted, detectionBound);
    record('blackhole → server ejected', ejected, detectionBound);
    expect(evicted).toBeLessThan(detectionBound);
    expect(ejected).toBeLessThan(detectionBound);
    expect(stats(proxy).counters.connectionsClosed.remote_closed).toBe(0);

    // Ejected, with no other server: the request waits for the probes (panic routing) and gets a
    // native error after queue.timeout, never a hang.
    const asked = performance.now();
    const failed = await client.get('bh:key').then(() => null, messageOf);
    const answeredIn = performance.now() - asked;
    expect(failed).toMatch(/^ReplyError: ERR poolside POOL_TIMEOUT /);
    record('ejected → POOL_TIMEOUT answer', answeredIn, QUEUE_TIMEOUT_MS + sweep + SLACK_MS);
    expect(answeredIn).toBeLessThan(QUEUE_TIMEOUT_MS + sweep + SLACK_MS);

    relay.restore();
    // A probe sent into the blackhole must time out first, then eject.for, then backoff and a connect.
    const recoveryBound = CONNECT_TIMEOUT_MS + EJECT_FOR_MS + BACKOFF_MAX_MS * 1.2 + CONNECT_TIMEOUT_MS + 2 * sweep + SLACK_MS;
    const recovered = await waitFor(() => atMin(proxy, 2), 'server up again at min connections', recoveryBound + 3000);
    record('restore → server up at min', recovered, recoveryBound);
    expect(recovered).toBeLessThan(recoveryBound);
    expect(await client.get('bh:key')).toBe('v');
    expect(stats(proxy).counters.ejections).toBeGreaterThanOrEqual(1);
  });
});

describe('a server address that accepts and never answers', () => {
  it('bounds each connect by connect.timeout, backs off exponentially up to backoff.max between attempts, and never has two connects in flight', async () => {
    const CONNECT_TIMEOUT_MS = 100;
    const INITIAL_MS = 50;
    const MAX_MS = 400;
    const QUEUE_TIMEOUT_MS = 200;
    const relay = await relayTo(null);
    const proxy = await proxyFor([relay.address], {
      connections: { min: 2, max: 4 },
      connect: { timeout: `${CONNECT_TIMEOUT_MS}ms`, backoff: { initial: `${INITIAL_MS}ms`, max: `${MAX_MS}ms` } },
      eject: { after_failures: 1000, for: '1s' },
      heartbeat: { interval: '300ms', timeout: '150ms' },
      queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
      request_timeout: '1s',
    });
    const sweep = sweepMs({ queueTimeoutMs: QUEUE_TIMEOUT_MS, requestTimeoutMs: 1000, heartbeatTimeoutMs: 150 });

    // Meanwhile a client waits at most queue.timeout for a connection that never comes.
    const client = await connectRedis(cleanup, portOf(proxy));
    const asked = performance.now();
    const failed = await client.get('never').then(() => null, messageOf);
    const waited = performance.now() - asked;
    expect(failed).toMatch(/^ReplyError: ERR poolside POOL_TIMEOUT /);
    record('never-answering server → POOL_TIMEOUT answer', waited, QUEUE_TIMEOUT_MS + sweep + SLACK_MS);
    expect(waited).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_MS - 5);
    expect(waited).toBeLessThan(QUEUE_TIMEOUT_MS + sweep + SLACK_MS);

    const ATTEMPTS = 7;
    await waitFor(() => relay.connections.filter((c) => c.closedAt !== null).length >= ATTEMPTS, `${ATTEMPTS} failed connect attempts`, 8000, 5);
    const attempts = relay.connections.slice(0, ATTEMPTS);
    const closedAt = (i: number): number => attempts[i].closedAt ?? Infinity;

    // Each attempt is given up after connect.timeout (the init PING never gets its reply). The
    // relay's timestamps come from this process's own event loop, late by whatever else ran: the
    // lower bounds only say "not given up early", with room for that lateness.
    for (let i = 0; i < ATTEMPTS; i++) {
      const lasted = closedAt(i) - attempts[i].acceptedAt;
      expect(lasted).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS * 0.5);
      expect(lasted).toBeLessThan(CONNECT_TIMEOUT_MS + 250);
    }
    // Not failing yet at start: min's two connects go out together. From the first failure on, one at a time.
    expect(Math.abs(attempts[1].acceptedAt - attempts[0].acceptedAt)).toBeLessThan(50);
    const gaps: number[] = [];
    for (let i = 2; i < ATTEMPTS; i++) {
      const previousClosed = Math.max(...attempts.slice(0, i).map((_, j) => closedAt(j)));
      const gap = attempts[i].acceptedAt - previousClosed;
      expect(gap, `attempt ${i} starts only after every earlier one closed`).toBeGreaterThan(0);
      gaps.push(gap);
    }
    // i failures so far ⇒ initial × 2^(i-1), capped at max, ±20% jitter. The bands of consecutive
    // uncapped delays hardly overlap (0.8 × 2d > 1.2 × d), so staying in them shows the doubling;
    // the exact schedule is proven on a fake clock in test/unit/server-pool.test.ts.
    const nominal = gaps.map((_, k) => Math.min(MAX_MS, INITIAL_MS * 2 ** (k + 2 - 1)));
    measured['backoff gaps (nominal)'] = `${gaps.map((g) => g.toFixed(0)).join(', ')} ms (${nominal.join(', ')})`;
    gaps.forEach((gap, k) => {
      expect(gap, `backoff before attempt ${k + 2}`).toBeGreaterThanOrEqual(nominal[k] * 0.8 - 40);
      expect(gap, `backoff before attempt ${k + 2}`).toBeLessThan(nominal[k] * 1.2 + 250);
    });
    expect(nominal.filter((n) => n === MAX_MS).length).toBeGreaterThanOrEqual(2);

    // Never more than one connect in flight while failing, at any moment.
    for (let i = 2; i < relay.connections.length; i++) {
      const open = relay.connections.filter((c, j) => j !== i && c.acceptedAt <= relay.connections[i].acceptedAt && (c.closedAt ?? Infinity) > relay.connections[i].acceptedAt);
      expect(open).toEqual([]);
    }
    const s = stats(proxy);
    expect(s.connections.connecting).toBeLessThanOrEqual(1);
    expect(s.counters.connectFailures).toBeGreaterThanOrEqual(ATTEMPTS);
    expect(s.counters.connectionsClosed.connect_failed).toBe(s.counters.connectFailures);
    expect(s.health).toMatchObject({ kind: 'failing', failures: s.counters.connectFailures });
    expect(s.counters.ejections).toBe(0);
  });
});

describe('a request waiting for a connection to a failing server', () => {
  it('gets POOL_TIMEOUT after queue.timeout even while repeated connect failures keep changing the server health', async () => {
    const QUEUE_TIMEOUT_MS = 400;
    const port = await freePort(); // nothing listens: every connect is refused at once
    const proxy = await proxyFor([`127.0.0.1:${port}`], {
      connections: { min: 2, max: 4 },
      // Refused every 50..120ms: always sooner than queue.timeout.
      connect: { timeout: '200ms', backoff: { initial: '50ms', max: '100ms' } },
      eject: { after_failures: 1000, for: '1s' },
      queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
      request_timeout: '1s',
    });
    const sweep = sweepMs({ queueTimeoutMs: QUEUE_TIMEOUT_MS, requestTimeoutMs: 1000, heartbeatTimeoutMs: 1000 });
    const client = await connectRedis(cleanup, portOf(proxy));
    await waitFor(() => stats(proxy).counters.connectFailures >= 3, 'the server failing');
    const bound = QUEUE_TIMEOUT_MS + sweep + SLACK_MS;
    const asked = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      client.get('waiting').then(() => 'answered', messageOf),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('HANG'), bound + 2000);
      }),
    ]);
    clearTimeout(timer);
    const waited = performance.now() - asked;
    record('failing server → POOL_TIMEOUT answer', waited, bound);
    expect(outcome).toMatch(/^ReplyError: ERR poolside POOL_TIMEOUT /);
    expect(waited).toBeLessThan(bound);
  });
});

describe('a connection that dies with a request written and no response byte read', () => {
  it('re-sends an idempotent GET once on another connection, transparently, but answers INCR with SERVER_ERROR at once and never runs it twice', async () => {
    const REQUEST_TIMEOUT_MS = 2000;
    const redis = await startRedis();
    const relay = await relayTo(redis);
    const proxy = await proxyFor([relay.address], {
      connections: { min: 2, max: 4 },
      heartbeat: { interval: '300ms', timeout: '150ms' },
      queue: { timeout: '300ms' },
      request_timeout: `${REQUEST_TIMEOUT_MS}ms`,
    });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const client = await connectRedis(cleanup, portOf(proxy));
    expect(await redis.command('SET', 'retry:key', 'kept')).toBe('+OK\r\n');

    // GET: forwarded, executed, its reply dropped and the connection closed. The client still gets the value.
    const getTrap = relay.dropReplyAndClose((bytes) => bytes.includes('retry:key'));
    let asked = performance.now();
    expect(await client.get('retry:key')).toBe('kept');
    const getMs = performance.now() - asked;
    await getTrap;
    // Well within request_timeout: the retry followed the close, no deadline was involved.
    record('GET on a dying connection → answered via retry', getMs, REQUEST_TIMEOUT_MS / 2);
    expect(getMs).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
    expect(retries(proxy)).toBe(1);
    expect(failures(proxy)).toEqual({});
    const closed = stats(proxy).counters.connectionsClosed;
    expect(closed.remote_closed + closed.error).toBe(1);

    // INCR: forwarded and executed once; the lost reply must not make it run again.
    await waitFor(() => atMin(proxy, 2), 'the pool refilled to min');
    const incrTrap = relay.dropReplyAndClose((bytes) => bytes.includes('retry:counter'));
    asked = performance.now();
    const failed = await client.incr('retry:counter').then(() => null, messageOf);
    const incrMs = performance.now() - asked;
    await incrTrap;
    expect(failed).toMatch(/^ReplyError: ERR poolside SERVER_ERROR /);
    record('INCR on a dying connection → SERVER_ERROR', incrMs, REQUEST_TIMEOUT_MS / 2);
    expect(incrMs).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
    expect(await redis.command('GET', 'retry:counter')).toBe('$1\r\n1\r\n');
    expect(retries(proxy)).toBe(1);
    // The client carries on: the next INCR sees the one that ran.
    expect(await client.incr('retry:counter')).toBe(2);
  });
});

describe('connection lifetime', () => {
  it('replaces connections past max_lifetime gradually: ready connections never drop to zero, closes count max_lifetime, and a client load sees no error', async () => {
    const redis = await startRedis();
    const proxy = await proxyFor([redis.address], {
      connections: { min: 2, max: 4 },
      max_lifetime: '1s',
      heartbeat: { interval: '300ms', timeout: '150ms', jitter: '20%' },
      queue: { timeout: '300ms' },
      request_timeout: '1s',
    });
    await waitFor(() => atMin(proxy, 2), 'two ready connections');
    const startedAt = performance.now();
    const clients = await Promise.all(Array.from({ length: 3 }, () => connectRedis(cleanup, portOf(proxy))));
    const readyCount = sampler(() => ready(proxy), 2);
    const outcomes = await runLoad(clients, { until: () => performance.now() - startedAt > 2700, maxOps: 5000, paceMs: 2, hangMs: 1500, checkReads: true });
    const { min, samples } = readyCount.stop();

    expect(outcomes.length).toBeGreaterThan(100);
    expect(outcomes.filter((o) => o.error !== null)).toEqual([]);
    expect(samples).toBeGreaterThan(100);
    measured['max_lifetime: fewest ready connections seen'] = `${min} over ${samples} samples`;
    expect(min).toBeGreaterThanOrEqual(1);
    const counters = stats(proxy).counters;
    // 2.7s of 1s ± 20% lifetimes: each first connection replaced at least once.
    expect(counters.connectionsClosed.max_lifetime).toBeGreaterThanOrEqual(2);
    expect(counters.connectionsOpened).toBeGreaterThanOrEqual(2 + counters.connectionsClosed.max_lifetime);
    expect(counters.connectionsClosed.remote_closed + counters.connectionsClosed.error + counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(failures(proxy)).toEqual({});
    await waitFor(() => atMin(proxy, 2), 'the pool at min', 2000);
  });

  /**
   * Pipelined bursts from many clients until the pool has grown to at least `want` connections.
   * The bursts are staggered: requests arriving in one turn all go to one connection (packing), so
   * the pool grows only when later turns find every connection with 16 or more on the wire.
   */
  async function growPool(proxy: Proxy, want: number): Promise<number> {
    const clients = await Promise.all(Array.from({ length: 12 }, async () => cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy())));
    let peak = 0;
    const deadline = performance.now() + 5000;
    while (peak < want && performance.now() < deadline) {
      for (const client of clients) {
        for (let i = 0; i < 64; i++) client.send('GET', 'burst');
        await new Promise((resolve) => setImmediate(resolve));
      }
      await Promise.all(clients.map((client) => client.take(64)));
      const { idle, active, connecting } = stats(proxy).connections;
      peak = Math.max(peak, idle + active + connecting);
    }
    await waitFor(() => stats(proxy).connections.connecting === 0, 'connects settled');
    return Math.max(peak, ready(proxy));
  }

  // Shorter than the heartbeat interval, and longer: heartbeat replies keep a connection honest,
  // never busy, so they must not hold it open past idle_timeout.
  it.each([
    { idleTimeoutMs: 500, interval: 2000, timeout: 150, relation: 'shorter than' },
    { idleTimeoutMs: 800, interval: 250, timeout: 100, relation: 'longer than' },
  ])(
    'closes idle connections above min after idle_timeout with reason idle_timeout, never below min (idle_timeout $relation the heartbeat interval)',
    async ({ idleTimeoutMs, interval, timeout }) => {
      const redis = await startRedis();
      const proxy = await proxyFor([redis.address], {
        connections: { min: 1, max: 4 },
        idle_timeout: `${idleTimeoutMs}ms`,
        heartbeat: { interval: `${interval}ms`, timeout: `${timeout}ms` },
        queue: { timeout: '300ms' },
        request_timeout: '1s',
      });
      const sweep = sweepMs({ queueTimeoutMs: 300, requestTimeoutMs: 1000, heartbeatTimeoutMs: timeout });
      await waitFor(() => atMin(proxy, 1), 'one ready connection');
      const peak = await growPool(proxy, 3);
      expect(peak).toBeGreaterThanOrEqual(3);
      const readyCount = sampler(() => ready(proxy), 2);
      const bound = idleTimeoutMs + 2 * sweep + SLACK_MS;
      const label = `idle_timeout ${idleTimeoutMs}ms (heartbeat ${interval}ms) → pool back at min`;
      const shrunk = await waitFor(() => ready(proxy) === 1, 'the pool back at min', bound + 3000).catch((err: Error) => {
        measured[label] = `never within ${bound + 3000}ms: ${ready(proxy)} ready`;
        throw err;
      });
      record(label, shrunk, bound);
      expect(shrunk).toBeLessThan(bound);
      await new Promise((resolve) => setTimeout(resolve, idleTimeoutMs + 2 * sweep)); // one more idle period: nothing else may close
      const { min } = readyCount.stop();
      expect(min).toBe(1);
      expect(ready(proxy)).toBe(1);
      expect(stats(proxy).counters.connectionsClosed.idle_timeout).toBe(peak - 1);
      expect(stats(proxy).counters.heartbeatFailures).toEqual({ timeout: 0, error: 0 });
      expect(failures(proxy)).toEqual({});
    },
  );
});
