/**
 * The ketama continuum, bit-exact with twemproxy's `distribution: ketama`
 * (src/hashkit/nc_ketama.c: ketama_update builds it, ketama_dispatch looks a hash up), so that a
 * pool moved from twemproxy to poolside keeps every key on the same server.
 *
 * Server names. Each server contributes points named `<name>-<i>`, so placement depends on the
 * name string and nothing else about the server. twemproxy's name (conf_add_server in
 * src/nc_conf.c) is the explicit name after the server line when one is given, else `host:port`
 * as written — or just `host` when the port is 11211, for libmemcached compatibility:
 *
 *   twemproxy                          poolside                                               name
 *   - 127.0.0.1:6379:1 redis-a         { address: "127.0.0.1:6379", weight: 1, name: "redis-a" }  redis-a
 *   - 127.0.0.1:6379:2                 { address: "127.0.0.1:6379", weight: 2 }                   127.0.0.1:6379
 *   - cache-1:11211:1                  { address: "cache-1:11211", weight: 1 }                    cache-1
 *
 * Naming servers explicitly is what lets an operator move a shard to a new address without
 * moving its keys.
 *
 * Ejection. twemproxy (with auto_eject_hosts) rebuilds the continuum over the live servers only:
 * weights are shared out among them and dead servers contribute no points. Callers mirror that by
 * building a new KetamaContinuum over the live subset and mapping the index it returns back to
 * their own server list. Because each server's point count is recomputed from its share of the
 * live weight, servers of unequal weight gain or lose points on a rebuild, so a few keys move
 * between surviving servers too. With equal weights usually only the ejected server's keys move,
 * but single-precision rounding gives every server 156 points instead of 160 at some server counts
 * (25, 47, 50, 55, …), and a rebuild to or from such a count moves keys between survivors as well.
 */

import { createHash } from 'node:crypto';

/** One server as the continuum sees it. */
export interface KetamaServer {
  /** The twemproxy name: see `twemproxyServerName`. */
  name: string;
  /** A positive whole number; shares are relative to the other servers in the same continuum. */
  weight: number;
}

// nc_ketama.c constants.
const POINTS_PER_SERVER = 160;
const POINTS_PER_HASH = 4;
/**
 * `char host[KETAMA_MAX_HOSTLEN]` in the twemproxy 0.5.0 release: point labels are formatted into
 * 273 bytes, NUL included. (Older sources used 86 and hashed past the buffer on long names.)
 */
const MAX_HOSTLEN = 273;
/**
 * Port whose number twemproxy leaves out of the default server name (CONF_DEFAULT_KETAMA_PORT),
 * as libmemcached does.
 */
export const KETAMA_DEFAULT_PORT = 11211;

/**
 * The name twemproxy gives a server, from the parts of its `host:port:weight [name]` line
 * (conf_add_server). `host` is the host text exactly as configured (no resolution, brackets kept),
 * `port` is written in decimal; an explicit `name` wins.
 */
export function twemproxyServerName(server: { host: string; port: number; name?: string | null }): string {
  if (server.name != null && server.name !== '') return server.name;
  if (server.port === KETAMA_DEFAULT_PORT) return server.host;
  return `${server.host}:${server.port}`;
}

/** The twemproxy `servers:` entry equivalent to a poolside server, e.g. `127.0.0.1:6379:1 redis-a`. */
export function twemproxyServerLine(server: { host: string; port: number; weight: number; name?: string | null }): string {
  const base = `${server.host}:${server.port}:${server.weight}`;
  return server.name != null && server.name !== '' ? `${base} ${server.name}` : base;
}

/**
 * How many continuum points a server gets (ketama_update). twemproxy computes this in single
 * precision, so every intermediate is rounded to float32 the way the C expression
 * `floorf((float)(pct * 160 / 4 * (float)nlive + 0.0000000001)) * 4` is evaluated on x86-64
 * (float operands stay float; the double literal promotes only the last addition). Exact
 * arithmetic would differ: weights 1, 29, 30 give the 29 228 points, not 232.
 */
function pointsFor(weight: number, totalWeight: number, liveServers: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  const perHashShare = f(f(pct * POINTS_PER_SERVER) / POINTS_PER_HASH);
  const hashes = f(perHashShare * f(liveServers));
  return Math.floor(f(hashes + 0.0000000001)) * POINTS_PER_HASH;
}

/**
 * The bytes ketama_update hashes for point group `index` of a server: `"%.*s-%u"` of the name and
 * the index. A label that does not fit the 273-byte buffer is hashed as its first 272 bytes (0.5.0
 * logs "Unexpectedly forced to truncate a hostname" and clamps the length), so groups of a very
 * long name can share points.
 */
function pointLabel(name: string, index: number): Buffer {
  const label = Buffer.from(`${name}-${index}`, 'utf8');
  return label.length < MAX_HOSTLEN ? label : label.subarray(0, MAX_HOSTLEN - 1);
}

export class KetamaContinuum {
  /** Point values, ascending. */
  readonly #values: Uint32Array;
  /** `#servers[i]` owns point `#values[i]`: an index into the constructor's array. */
  readonly #servers: Uint32Array;

  /**
   * Builds the continuum ketama_update would build if exactly these servers were live, in this
   * order. Throws RangeError on an empty list or a weight that is not a positive whole number.
   */
  constructor(servers: readonly KetamaServer[]) {
    if (servers.length === 0) throw new RangeError('a ketama continuum needs at least one server');
    let totalWeight = 0;
    for (const server of servers) {
      if (!Number.isInteger(server.weight) || server.weight <= 0 || server.weight > 0xffffffff) {
        throw new RangeError(`ketama server ${JSON.stringify(server.name)} has weight ${server.weight}; it must be a positive whole number`);
      }
      totalWeight += server.weight;
    }
    if (totalWeight > 0xffffffff) throw new RangeError('ketama server weights add up to more than 2^32 - 1');

    const points: { value: number; server: number }[] = [];
    for (let s = 0; s < servers.length; s++) {
      const count = pointsFor(servers[s].weight, totalWeight, servers.length);
      for (let group = 0; group < count / POINTS_PER_HASH; group++) {
        // ketama_hash: one MD5 digest yields four little-endian 32-bit points.
        const digest = createHash('md5').update(pointLabel(servers[s].name, group)).digest();
        for (let x = 0; x < POINTS_PER_HASH; x++) points.push({ value: digest.readUInt32LE(x * 4), server: s });
      }
    }
    // twemproxy qsorts by value alone. glibc's qsort is a merge sort when it can allocate, hence
    // stable, so equal values (a 32-bit collision between two names) keep build order: the
    // earlier server wins the tie in ketama_dispatch. Array.prototype.sort is stable too.
    points.sort((a, b) => a.value - b.value);

    this.#values = new Uint32Array(points.length);
    this.#servers = new Uint32Array(points.length);
    for (let i = 0; i < points.length; i++) {
      this.#values[i] = points[i].value;
      this.#servers[i] = points[i].server;
    }
  }

  /** Number of points on the continuum (twemproxy's ncontinuum). */
  get size(): number {
    return this.#values.length;
  }

  /**
   * The server owning `hash`: the first point at or after it, wrapping past the last point to the
   * first (ketama_dispatch). Returns an index into the array given to the constructor.
   */
  serverFor(hash: number): number {
    const values = this.#values;
    let left = 0;
    let right = values.length;
    while (left < right) {
      const middle = (left + right) >>> 1;
      if (values[middle] < hash) left = middle + 1;
      else right = middle;
    }
    return this.#servers[right === values.length ? 0 : right];
  }
}
