/**
 * File descriptors: how many clients poolside can hold without running out. Out of descriptors,
 * accept() fails silently (libuv closes the connection for us: a bare RST or FIN), and worse, the
 * pools cannot open connections and the admin endpoint cannot answer. So the clients of all
 * listeners together are capped below RLIMIT_NOFILE, keeping a reserve for everything else:
 *
 *   capacity = limit − open at start − listeners − admin − Σ servers × (connections.max + exclusive.max) − slack
 *
 * A client past the capacity is refused with TOO_MANY_CLIENTS, like one past clients.max.
 */
import type { Config } from './config/schema.js';

/** Admin connections at once (scrapers, probes, a human): past it the oldest is closed for the new one. */
export const ADMIN_MAX_CONNECTIONS = 16;
/**
 * Descriptors for everything else poolside opens now and then: a unix socket probe at start,
 * files read at reload, libuv's own, a connection being replaced while its successor connects.
 */
export const FD_SLACK = 16;

export interface FdBudget {
  /** RLIMIT_NOFILE (soft). */
  limit: number;
  /** Descriptors kept for everything but clients. */
  reserve: number;
  /** Clients across all listeners; 0 when the limit leaves no room at all. */
  capacity: number;
}

/**
 * The soft "Max open files" of /proc/<pid>/limits; null when unlimited or not found (not Linux).
 */
export function parseOpenFilesLimit(limits: string): number | null {
  const match = /^Max open files\s+(\S+)/m.exec(limits);
  if (match === null || match[1] === 'unlimited') return null;
  const limit = Number(match[1]);
  return Number.isSafeInteger(limit) && limit > 0 ? limit : null;
}

/** `openNow`: descriptors already open before poolside starts (stdio, the event loop's own). */
export function fdBudget(config: Config, limit: number, openNow: number): FdBudget {
  let reserve = openNow + FD_SLACK;
  if (config.admin !== null) reserve += 1 + ADMIN_MAX_CONNECTIONS;
  for (const pool of config.pools) {
    reserve += pool.listen.length;
    // A cluster pool's nodes are discovered, not configured: at least the seeds, and at least the
    // three primaries a Redis Cluster needs.
    const servers = pool.routing === 'cluster' ? Math.max(pool.servers.length, 3) : pool.servers.length;
    reserve += servers * (pool.connections.max + pool.exclusive.max);
  }
  return { limit, reserve, capacity: Math.max(0, limit - reserve) };
}
