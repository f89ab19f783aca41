/** Runs the real proxy in-process against configs written as YAML, the way a user writes them. */
import YAML from 'yaml';
import { FAILURE_REASONS } from '../../src/errors.js';
import { parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import type { ProxyOptions } from '../../src/proxy.js';
import type { Logger } from '../../src/util/log.js';
import type { Cleanup } from './cleanup.js';
import { MemcachedServer, RedisServer } from './servers.js';

export type PoolYaml = Record<string, unknown>;

/** A proxy with one pool `p` listening on 127.0.0.1:0 (plus `extra` listeners), for these servers. */
export async function startProxy(servers: string[], pool: PoolYaml = {}, options: ProxyOptions & { admin?: unknown } = {}): Promise<Proxy> {
  const doc = {
    admin: options.admin ?? false,
    pools: { p: { protocol: 'redis', listen: ['127.0.0.1:0'], servers, ...pool } },
  };
  const config = parseConfig(YAML.stringify(doc), 'test.yaml');
  return Proxy.start(config, { log: options.log ?? quietLog(), ...options });
}

export function portOf(proxy: Proxy, pool = 'p', n = 0): number {
  const address = proxy.address(pool, n);
  if (address.kind !== 'tcp') throw new Error('not a TCP listener');
  return address.port;
}

/** A logger that keeps lines for assertions and prints nothing. */
export function quietLog(): Logger & { lines: { level: string; msg: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push({ level, msg, fields: fields ?? {} });
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Waits until every server of every pool has a ready shared connection (start-up is asynchronous). */
export async function waitReady(proxy: Proxy, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const ready = (): boolean =>
    proxy.stats().every((pool) => pool.servers.every((server) => server.connections.idle + server.connections.active > 0));
  while (!ready()) {
    if (performance.now() > deadline) throw new Error(`proxy not ready after ${timeoutMs}ms: ${JSON.stringify(proxy.stats().map((p) => p.servers.map((s) => s.health)))}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One real redis-server and a proxy with pool `p` in front of it, both closed by `cleanup`. */
export async function startRedisAndProxy(cleanup: Cleanup, pool: PoolYaml = {}): Promise<{ redis: RedisServer; proxy: Proxy; port: number }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const proxy = cleanup.add(await startProxy([redis.address], pool), (p) => p.close());
  return { redis, proxy, port: portOf(proxy) };
}

/** One real memcached and a proxy with memcached pool `p` in front of it, both closed by `cleanup`. */
export async function startMemcachedAndProxy(
  cleanup: Cleanup,
  pool: PoolYaml = {},
  memcachedArgs: string[] = [],
): Promise<{ memcached: MemcachedServer; proxy: Proxy; port: number }> {
  const memcached = cleanup.add(await MemcachedServer.start(memcachedArgs), (s) => s.stop());
  const proxy = cleanup.add(await startProxy([memcached.address], { protocol: 'memcached', ...pool }), (p) => p.close());
  return { memcached, proxy, port: portOf(proxy) };
}

/** Client-visible failures counted by pool `p`, by reason (only the non-zero ones). */
export function failureCounts(proxy: Proxy, pool = 'p'): Record<string, number> {
  const found = proxy.pools.get(pool);
  if (found === undefined) throw new Error(`no pool ${pool}`);
  const out: Record<string, number> = {};
  found.counters.failures.forEach((n, i) => {
    if (n > 0) out[FAILURE_REASONS[i]] = n;
  });
  return out;
}

/** The exclusive pool of pool `p`'s first server: lent, idle, and acquires waiting. */
export function exclusiveStats(proxy: Proxy): { borrowed: number; idle: number; pending: number } {
  return proxy.stats()[0].servers[0].exclusive;
}

/**
 * A real redis-server behind a proxy with one pool `cache` and its admin endpoint on a free port:
 * what the tests that scrape poolside (or point Prometheus at it) start from.
 */
export async function startScrapedProxy(cleanup: Cleanup): Promise<{ redis: RedisServer; proxy: Proxy }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const config = parseConfig(
    YAML.stringify({ admin: { listen: '127.0.0.1:0' }, pools: { cache: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [redis.address] } } }),
    'test.yaml',
    {},
  );
  const proxy = cleanup.add(await Proxy.start(config, { log: quietLog() }), (p) => p.close());
  return { redis, proxy };
}
