/**
 * The admin endpoint of the real proxy in front of real redis-server processes: what /metrics
 * says after real traffic and real faults (CLIENT KILL, a dead server, a pool timeout), /readyz
 * following a server that dies and comes back, /stats without secrets, and `promtool check
 * metrics` on a real scrape.
 */
import { Redis } from 'ioredis';
import { Gauge, Registry } from 'prom-client';
import net from 'node:net';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import type { ProxyOptions } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { find, promtoolCheck, request, scrape, valueOf } from '../helpers/prometheus.js';
import type { Exposition } from '../helpers/prometheus.js';
import { portOf, quietLog } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import { freePort, RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

type Log = ReturnType<typeof quietLog>;

/** A proxy from a YAML document (admin on an ephemeral port), closed after the test. */
async function startYaml(doc: Record<string, unknown>, options: ProxyOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<{ proxy: Proxy; log: Log }> {
  const log = quietLog();
  const config = parseConfig(YAML.stringify({ admin: { listen: '127.0.0.1:0' }, ...doc }), 'test.yaml', options.env ?? {});
  const proxy = cleanup.add(await Proxy.start(config, { log, ...options }), (p) => p.close());
  return { proxy, log };
}

/** One pool `p` for `servers`, listening on an ephemeral port. */
function onePool(servers: unknown[], pool: Record<string, unknown> = {}): Record<string, unknown> {
  return { pools: { p: { protocol: 'redis', listen: ['127.0.0.1:0'], servers, ...pool } } };
}

async function redisServer(args: string[] = []): Promise<RedisServer> {
  return cleanup.add(await RedisServer.start(args), (s) => s.stop());
}

async function client(proxy: Proxy, pool = 'p'): Promise<Redis> {
  return connectRedis(cleanup, portOf(proxy, pool), { disableClientInfo: true });
}

async function metrics(proxy: Proxy): Promise<Exposition> {
  return scrape(proxy.adminAddress());
}

/** Polls /metrics until `check` holds; returns the scrape that satisfied it. */
async function untilMetrics(proxy: Proxy, what: string, check: (m: Exposition) => boolean, timeoutMs = 5000): Promise<Exposition> {
  let last: Exposition | null = null;
  await waitFor(
    async () => {
      last = await metrics(proxy);
      return check(last);
    },
    what,
    timeoutMs,
    20,
  );
  return last as unknown as Exposition;
}

function connections(m: Exposition, state: string, pool = 'p'): number {
  return find(m, 'poolside_pool_connections', { pool, state }).reduce((sum, s) => sum + s.value, 0);
}

function failures(m: Exposition, reason: string, pool = 'p'): number {
  return valueOf(m, 'poolside_request_failures_total', { pool, reason });
}

describe('/metrics after real traffic', () => {
  it('counts requests per pool exactly, with one request-duration observation per reply', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml({
      pools: {
        a: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redis.address] },
        b: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redis.address] },
      },
    });
    await untilMetrics(proxy, 'both pools connected', (m) => connections(m, 'idle', 'a') === 2 && connections(m, 'idle', 'b') === 2);
    const a = await client(proxy, 'a');
    const b = await client(proxy, 'b');
    await a.set('metrics:k', 'v');
    expect(await a.get('metrics:k')).toBe('v');
    await a.pipeline().incr('metrics:n').incr('metrics:n').incr('metrics:n').exec();
    expect(await b.get('metrics:k')).toBe('v');
    await b.del('metrics:n');

    const m = await metrics(proxy);
    expect(valueOf(m, 'poolside_requests_total', { pool: 'a' })).toBe(5);
    expect(valueOf(m, 'poolside_requests_total', { pool: 'b' })).toBe(2);
    expect(valueOf(m, 'poolside_request_duration_seconds_count', { pool: 'a' })).toBe(5);
    expect(valueOf(m, 'poolside_request_duration_seconds_bucket', { pool: 'a', le: '+Inf' })).toBe(5);
    expect(valueOf(m, 'poolside_request_duration_seconds_count', { pool: 'b' })).toBe(2);
    // Loopback: every reply well under a second.
    expect(valueOf(m, 'poolside_request_duration_seconds_bucket', { pool: 'a', le: '1' })).toBe(5);
    expect(valueOf(m, 'poolside_client_connections', { pool: 'a' })).toBe(1);
    expect(valueOf(m, 'poolside_client_connections_accepted_total', { pool: 'b' })).toBe(1);
    for (const pool of ['a', 'b']) {
      expect(find(m, 'poolside_request_failures_total', { pool }).every((s) => s.value === 0)).toBe(true);
      expect(valueOf(m, 'poolside_server_up', { pool, server: redis.address })).toBe(1);
      expect(valueOf(m, 'poolside_server_connections_opened_total', { pool, server: redis.address })).toBe(2);
    }

    a.disconnect();
    await untilMetrics(proxy, 'client of pool a gone', (m2) => valueOf(m2, 'poolside_client_connections', { pool: 'a' }) === 0);
  });

  it('shows shared connections by state (idle, active) and exclusive ones (borrowed, idle) as traffic moves', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address], { connections: { min: 2, max: 4 } }));
    let m = await untilMetrics(proxy, 'two idle connections', (x) => connections(x, 'idle') === 2);
    expect(connections(m, 'active')).toBe(0);
    expect(connections(m, 'connecting')).toBe(0);
    expect(valueOf(m, 'poolside_pool_max_connections', { pool: 'p', server: redis.address })).toBe(4);

    // A frozen server keeps the request in flight: one connection is active until it thaws.
    const c = await client(proxy);
    await redis.freeze();
    const reply = c.get('metrics:frozen');
    try {
      m = await untilMetrics(proxy, 'one active connection', (x) => connections(x, 'active') === 1);
      expect(connections(m, 'idle')).toBe(1);
    } finally {
      redis.signal('SIGCONT');
    }
    expect(await reply).toBeNull();
    await untilMetrics(proxy, 'both idle again', (x) => connections(x, 'idle') === 2 && connections(x, 'active') === 0);

    // A blocking pop pins an exclusive connection until it returns.
    const blocked = c.blpop('metrics:list', 5);
    m = await untilMetrics(proxy, 'an exclusive connection borrowed', (x) => valueOf(x, 'poolside_exclusive_connections', { pool: 'p', state: 'borrowed' }) === 1);
    expect(valueOf(m, 'poolside_lease_pins_total', { pool: 'p', reason: 'blocking' })).toBe(1);
    const other = await client(proxy);
    await other.lpush('metrics:list', 'x');
    expect(await blocked).toEqual(['metrics:list', 'x']);
    m = await untilMetrics(proxy, 'the exclusive connection back', (x) => valueOf(x, 'poolside_exclusive_connections', { pool: 'p', state: 'idle' }) === 1);
    expect(valueOf(m, 'poolside_exclusive_connections', { pool: 'p', state: 'borrowed' })).toBe(0);
    // Two shared connections and one exclusive.
    expect(valueOf(m, 'poolside_server_connections_opened_total', { pool: 'p', server: redis.address })).toBe(3);
  });

  it('counts connections the server kills (CLIENT KILL TYPE normal) as remote_closed, and the refill as opened', async () => {
    const redis = await redisServer();
    const { proxy, log } = await startYaml(onePool([redis.address], { connections: { min: 2, max: 4 } }));
    await untilMetrics(proxy, 'two idle connections', (x) => connections(x, 'idle') === 2);
    // An idle exclusive connection as well: a short blocking pop that times out.
    const c = await client(proxy);
    expect(await c.blpop('metrics:empty', 0.01)).toBeNull();
    await untilMetrics(proxy, 'an idle exclusive connection', (x) => valueOf(x, 'poolside_exclusive_connections', { pool: 'p', state: 'idle' }) === 1);

    const reply = await redis.command('CLIENT', 'KILL', 'TYPE', 'normal');
    const killed = Number(/^:(\d+)\r\n$/.exec(reply)?.[1]);
    expect(killed).toBe(3);

    const server = { pool: 'p', server: redis.address };
    const m = await untilMetrics(
      proxy,
      'the kills counted and min restored',
      (x) => valueOf(x, 'poolside_server_connections_closed_total', { ...server, reason: 'remote_closed' }) >= killed && connections(x, 'idle') === 2,
    );
    expect(valueOf(m, 'poolside_server_connections_closed_total', { ...server, reason: 'remote_closed' })).toBe(killed);
    expect(valueOf(m, 'poolside_server_connections_opened_total', server)).toBe(3 + 2);
    expect(valueOf(m, 'poolside_server_up', server)).toBe(1);
    // Shared connections are logged at warn with the reason; the exclusive one is found on its next borrow.
    const warned = log.lines.filter((l) => l.level === 'warn' && l.fields.reason === 'remote_closed');
    expect(warned.length).toBe(2);
    expect(await c.get('metrics:after-kill')).toBeNull();
  });

  it('passes promtool check metrics on a real scrape with traffic, failures and every histogram filled', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address], { heartbeat: { interval: '100ms', timeout: '50ms' } }));
    await untilMetrics(proxy, 'connected', (x) => connections(x, 'idle') === 2);
    const c = await client(proxy);
    await c.set('metrics:promtool', '1');
    await c.multi().incr('metrics:promtool').exec();
    await expect(c.call('FLUSHALL', 'bogus-argument')).rejects.toThrow();
    const m = await untilMetrics(proxy, 'a heartbeat answered', (x) => valueOf(x, 'poolside_heartbeat_duration_seconds_count', { pool: 'p' }) > 0);
    expect(m.families.get('process_cpu_seconds_total')?.type).toBe('counter');
    const { text } = await scrape(proxy.adminAddress());
    const result = await promtoolCheck(text);
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });

  // The round trip is measured from the send time the connection hands over with the reply, not
  // from beatSentAt, which the connection clears as the reply arrives.
  it('observes heartbeat round trips (well under 250 ms on loopback) in poolside_heartbeat_duration_seconds', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address], { heartbeat: { interval: '100ms', timeout: '50ms' } }));
    const server = { pool: 'p', server: redis.address };
    const m = await untilMetrics(proxy, 'three heartbeats answered', (x) => valueOf(x, 'poolside_heartbeat_duration_seconds_count', server) >= 3);
    const count = valueOf(m, 'poolside_heartbeat_duration_seconds_count', server);
    expect(valueOf(m, 'poolside_heartbeat_duration_seconds_bucket', { ...server, le: '0.25' })).toBe(count);
    expect(valueOf(m, 'poolside_heartbeat_last_success_timestamp_seconds', server)).toBeGreaterThan(Date.now() / 1000 - 60);
  });
});

describe('degraded paths in /metrics', () => {
  it('fails requests with POOL_TIMEOUT while the only server refuses connections but is not ejected yet', async () => {
    const port = await freePort(); // nothing listens here
    const { proxy, log } = await startYaml(
      onePool([`127.0.0.1:${port}`], { queue: { timeout: '100ms' }, eject: { after_failures: 1000 }, connect: { backoff: { initial: '50ms', max: '200ms' } } }),
    );
    const c = await client(proxy);
    // The server is `failing`, not ejected: routing still picks it, so the request waits for a
    // connection that never comes and times out in the queue.
    await expect(c.get('metrics:k')).rejects.toThrow(/^ERR poolside POOL_TIMEOUT no connection to pool p within 100ms/);
    const m = await metrics(proxy);
    expect(failures(m, 'POOL_TIMEOUT')).toBe(1);
    expect(failures(m, 'NO_HEALTHY_SERVER')).toBe(0);
    expect(valueOf(m, 'poolside_requests_total', { pool: 'p' })).toBe(1);
    expect(valueOf(m, 'poolside_request_duration_seconds_count', { pool: 'p' })).toBe(1);
    expect(valueOf(m, 'poolside_pool_waiting_requests', { pool: 'p' })).toBe(0);
    const server = { pool: 'p', server: `127.0.0.1:${port}` };
    expect(valueOf(m, 'poolside_server_connect_failures_total', server)).toBeGreaterThan(0);
    expect(valueOf(m, 'poolside_server_connections_closed_total', { ...server, reason: 'connect_failed' })).toBe(
      valueOf(m, 'poolside_server_connect_failures_total', server),
    );
    expect(valueOf(m, 'poolside_server_health', { ...server, state: 'failing' })).toBe(1);
    expect(valueOf(m, 'poolside_server_up', server)).toBe(0);
    expect(log.lines.some((l) => l.level === 'warn' && l.fields.reason === 'connect_failed')).toBe(true);
  });

  it('counts a request that waited for the only, ejected, server as POOL_TIMEOUT, and the ejection once however many probes fail', async () => {
    const port = await freePort();
    const { proxy, log } = await startYaml(onePool([`127.0.0.1:${port}`], { eject: { after_failures: 1, for: '1m' }, queue: { timeout: '200ms' } }));
    const server = { pool: 'p', server: `127.0.0.1:${port}` };
    await untilMetrics(proxy, 'the server ejected', (x) => valueOf(x, 'poolside_server_ejections_total', server) === 1);
    const c = await client(proxy);
    await expect(c.get('metrics:k')).rejects.toThrow(/^ERR poolside POOL_TIMEOUT /);
    const m = await metrics(proxy);
    expect(failures(m, 'NO_HEALTHY_SERVER')).toBe(0);
    expect(failures(m, 'POOL_TIMEOUT')).toBe(1);
    expect(valueOf(m, 'poolside_server_ejections_total', server)).toBe(1);
    // Probed every 100ms..eject.for: caught between two probes or during one.
    expect(valueOf(m, 'poolside_server_health', { ...server, state: 'ejected' }) + valueOf(m, 'poolside_server_health', { ...server, state: 'probing' })).toBe(1);
    expect(valueOf(m, 'poolside_server_up', server)).toBe(0);
    expect(log.lines.filter((l) => l.level === 'warn' && l.fields.reason === 'ejected')).toHaveLength(1);
  });

  it('counts clients refused at clients.max and clients closed for unframeable bytes', async () => {
    const redis = await redisServer();
    const { proxy, log } = await startYaml(onePool([redis.address], { clients: { max: 1 } }));
    const first = cleanup.add(await RawClient.connect(portOf(proxy)), (x) => x.destroy());
    expect(await first.call('PING')).toBe('PONG');
    const second = cleanup.add(await RawClient.connect(portOf(proxy)), (x) => x.destroy());
    expect(String(await second.reply())).toMatch(/^-ERR poolside TOO_MANY_CLIENTS/);
    first.write('*1\r\n$abc\r\n');
    expect(String(await first.reply())).toMatch(/^-ERR poolside PROTOCOL_ERROR/);
    await first.closed;

    const m = await untilMetrics(proxy, 'the garbage client gone', (x) => valueOf(x, 'poolside_client_connections', { pool: 'p' }) === 0);
    expect(valueOf(m, 'poolside_client_connections_rejected_total', { pool: 'p', reason: 'TOO_MANY_CLIENTS' })).toBe(1);
    expect(valueOf(m, 'poolside_client_connections_accepted_total', { pool: 'p' })).toBe(1);
    expect(failures(m, 'TOO_MANY_CLIENTS')).toBe(1);
    expect(valueOf(m, 'poolside_protocol_errors_total', { pool: 'p' })).toBe(1);
    expect(failures(m, 'PROTOCOL_ERROR')).toBe(1);
    for (const reason of ['TOO_MANY_CLIENTS', 'PROTOCOL_ERROR']) {
      expect(log.lines.filter((l) => l.level === 'warn' && l.fields.reason === reason)).toHaveLength(1);
    }
  });
});

describe('/readyz', () => {
  it('answers 503 when the only server dies and 200 again once it is back', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(
      onePool([redis.address], { eject: { after_failures: 3, for: '200ms' }, connect: { timeout: '500ms', backoff: { initial: '20ms', max: '100ms' } } }),
    );
    const admin = proxy.adminAddress();
    await waitFor(async () => (await request(admin, '/readyz')).status === 200, '/readyz 200 at start');

    await redis.kill();
    let reply = await request(admin, '/readyz');
    await waitFor(
      async () => {
        reply = await request(admin, '/readyz');
        return reply.status === 503;
      },
      '/readyz 503 after the server died',
    );
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    const body = JSON.parse(reply.body) as { ready: boolean; reasons: string[] };
    expect(body.ready).toBe(false);
    expect(body.reasons).toHaveLength(1);
    expect(body.reasons[0]).toMatch(new RegExp(`^pool p has no server with a ready connection \\(${redis.address.replace(/\./g, '\\.')} `));
    expect(valueOf(await metrics(proxy), 'poolside_server_up', { pool: 'p', server: redis.address })).toBe(0);
    expect((await request(admin, '/healthz')).status).toBe(200);

    await redis.restart();
    await waitFor(async () => (await request(admin, '/readyz')).status === 200, '/readyz 200 after restart', 15_000);
    expect(JSON.parse((await request(admin, '/readyz')).body)).toEqual({ ready: true, reasons: [] });
    expect(valueOf(await metrics(proxy), 'poolside_server_up', { pool: 'p', server: redis.address })).toBe(1);
  });

  it('answers 503 while draining, keeps answering until the drain ends, then stops listening', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address]));
    const admin = proxy.adminAddress();
    await waitFor(async () => (await request(admin, '/readyz')).status === 200, '/readyz 200 at start');
    const c = await client(proxy);
    expect(await c.ping()).toBe('PONG');

    // A delay long enough for the checks below; the client leaving ends it no sooner (the delay is
    // for the app's last requests), so it is kept short.
    const closing = proxy.drain({ delayMs: 300, timeoutMs: 10_000 });
    expect(proxy.draining).toBe(true);
    const reply = await request(admin, '/readyz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toEqual({ ready: false, reasons: ['poolside is shutting down'] });
    expect((await request(admin, '/healthz')).status).toBe(200);
    // The connected client still works during shutdown.delay.
    expect(await c.ping()).toBe('PONG');

    c.disconnect();
    await closing;
    await expect(request(admin, '/healthz')).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('/stats', () => {
  it('reports pools, servers, counters and uptime as JSON, and never the server password', async () => {
    const password = 'pw-Zq7!never-shown-4711';
    const redis = await redisServer();
    // Set after start rather than with --requirepass: RedisServer's start-up check is an
    // unauthenticated PING, which a password-protected server answers with NOAUTH.
    expect(await redis.command('CONFIG', 'SET', 'requirepass', password)).toBe('+OK\r\n');
    expect(await redis.command('PING')).toMatch(/^-NOAUTH/);
    const { proxy, log } = await startYaml(onePool([{ address: redis.address, password_env: 'POOLSIDE_TEST_PASSWORD' }]), {
      env: { POOLSIDE_TEST_PASSWORD: password },
    });
    const admin = proxy.adminAddress();
    await waitFor(async () => (await request(admin, '/readyz')).status === 200, 'authenticated connections');
    const c = await client(proxy);
    await c.set('stats:k', 'v');

    const reply = await request(admin, '/stats');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    const stats = JSON.parse(reply.body) as {
      version: string;
      uptimeSeconds: number;
      draining: boolean;
      pools: {
        name: string;
        protocol: string;
        clients: number;
        waiting: { sessions: number; requests: number; oldestMs: number };
        counters: { requests: number; failures: Record<string, number>; requestDuration: { count: number; buckets: { le: string; count: number }[] } };
        servers: { name: string; address: string; up: boolean; health: { state: string }; connections: Record<string, number>; counters: Record<string, unknown> }[];
      }[];
    };
    expect(stats.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(stats.uptimeSeconds).toBeGreaterThan(0);
    expect(stats.draining).toBe(false);
    expect(stats.pools).toHaveLength(1);
    const [pool] = stats.pools;
    expect(pool).toMatchObject({ name: 'p', protocol: 'redis', clients: 1, waiting: { sessions: 0, requests: 0, oldestMs: 0 } });
    expect(pool.counters.requests).toBe(1);
    expect(pool.counters.failures.POOL_TIMEOUT).toBe(0);
    expect(pool.counters.requestDuration.count).toBe(1);
    expect(pool.counters.requestDuration.buckets.at(-1)).toEqual({ le: '+Inf', count: 1 });
    expect(pool.servers).toHaveLength(1);
    expect(pool.servers[0]).toMatchObject({ name: redis.address, address: redis.address, up: true, health: { state: 'up' } });
    expect(pool.servers[0].connections).toEqual({ idle: 2, active: 0, connecting: 0 });
    expect(pool.servers[0].counters).toMatchObject({ connectionsOpened: 2, connectFailures: 0, ejections: 0 });

    for (const path of ['/stats', '/metrics', '/readyz']) expect((await request(admin, path)).body).not.toContain(password);
    expect(JSON.stringify(log.lines)).not.toContain(password);
  });
});

describe('HTTP', () => {
  it('answers 404 for unknown paths, 405 with Allow for other methods, and HEAD like GET without a body', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address]));
    const admin = proxy.adminAddress();

    const health = await request(admin, '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toBe('ok\n');

    expect((await request(admin, '/nope')).status).toBe(404);
    expect((await request(admin, '/metrics/')).status).toBe(404);
    expect((await request(admin, '/metrics?name[]=poolside_requests_total')).status).toBe(200);

    for (const [method, path] of [['POST', '/metrics'], ['DELETE', '/readyz'], ['PUT', '/stats'], ['POST', '/healthz']]) {
      const reply = await request(admin, path, method);
      expect(reply.status, `${method} ${path}`).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
    }

    const get = await request(admin, '/metrics');
    const head = await request(admin, '/metrics', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-type']).toBe(get.headers['content-type']);
    expect(get.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(Number(head.headers['content-length'])).toBeGreaterThan(1000);
  });

  it('answers 500 when a handler throws and keeps serving', async () => {
    const redis = await redisServer();
    const registry = new Registry();
    new Gauge({
      name: 'embedder_broken',
      help: 'A metric whose collect() throws.',
      registers: [registry],
      collect() {
        throw new Error('collect exploded');
      },
    });
    const { proxy, log } = await startYaml(onePool([redis.address]), { registry });
    const admin = proxy.adminAddress();
    const reply = await request(admin, '/metrics');
    expect(reply.status).toBe(500);
    expect(reply.body).toBe('internal error\n');
    expect((await request(admin, '/healthz')).status).toBe(200);
    expect(log.lines.filter((l) => l.level === 'warn' && l.fields.reason === 'admin_handler_error').map((l) => l.fields.error)).toEqual(['collect exploded']);
    // The proxy itself is unaffected.
    await waitFor(() => proxy.stats()[0].servers[0].connections.idle === 2, 'connected');
    const c = await client(proxy);
    expect(await c.ping()).toBe('PONG');
  });

  it('is off with admin: false, and refuses to start on an address in use', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml({ admin: false, ...onePool([redis.address]) });
    expect(() => proxy.adminAddress()).toThrow(/admin endpoint is off/);

    const { proxy: first } = await startYaml(onePool([redis.address]));
    const taken = first.adminAddress().port;
    const config = parseConfig(YAML.stringify({ admin: { listen: `127.0.0.1:${taken}` }, ...onePool([redis.address]) }), 'test.yaml', {});
    await expect(Proxy.start(config, { log: quietLog() })).rejects.toThrow(`cannot listen on admin 127.0.0.1:${taken}: address already in use`);
  });
});

describe('admin connections', () => {
  it('answers /healthz while other local processes hold many idle connections to the admin port', async () => {
    const redis = await redisServer();
    const { proxy } = await startYaml(onePool([redis.address]));
    const admin = proxy.adminAddress();
    const idle = await Promise.all(
      Array.from({ length: 40 }, () => new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect({ host: admin.host, port: admin.port }, () => resolve(socket));
        socket.on('error', () => {});
        socket.once('error', reject);
      })),
    );
    for (const socket of idle) cleanup.defer(() => socket.destroy());
    for (let i = 0; i < 5; i++) expect((await request(admin, '/healthz')).status).toBe(200);
  });
});
