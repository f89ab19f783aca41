/**
 * The admin HTTP endpoint, on node:http with no framework:
 *
 *   GET /metrics   Prometheus text exposition of the registry
 *   GET /healthz   200 "ok" while the process runs (liveness)
 *   GET /readyz    200 when every pool has a server that takes traffic now (and a cluster pool
 *                  its topology); 503 with the reasons
 *                  otherwise, and while poolside drains (readiness: the orchestrator stops
 *                  sending new clients before they would be refused)
 *   GET /stats     JSON snapshot of every pool, server and counter, plus uptime;
 *                  /stats?clients=1 adds the connected clients (at most CLIENT_LIST_MAX)
 *   POST /reload   re-read the config file and apply it (as SIGHUP does): 200 with what changed,
 *                  400 with every problem (file:line:col) and the running config kept, 409 while
 *                  shutting down
 *
 * HEAD is answered wherever GET is. Unknown paths get 404, other methods 405 with an Allow header.
 * A handler that throws answers 500 and is logged; it never takes the process down. Nothing here
 * reads a ServerConfig, so no password can reach a response.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import { SLOTS } from './cluster/slot.js';
import type { TcpAddress } from './config/schema.js';
import { FAILURE_REASONS } from './errors.js';
import { ADMIN_MAX_CONNECTIONS } from './fd-budget.js';
import { formatAddress, ListenError } from './listener.js';
import { isServerUp, slotCount } from './metrics.js';
import type { ClusterView, HistogramCounts, MetricsPool } from './metrics.js';
import type { PoolCounters } from './pool/pool.js';
import type { ServerHealth } from './pool/health.js';
import type { ServerStats } from './pool/server-pool.js';
import type { Clock } from './util/clock.js';
import type { Logger } from './util/log.js';

export interface AdminOptions {
  listen: TcpAddress;
  registry: Registry;
  /** The pools to report, asked for on every request (a reload may replace them). */
  pools: () => Iterable<MetricsPool>;
  /** True once shutdown began: /readyz answers 503 from then on. */
  draining: () => boolean;
  /** Connected clients for /stats?clients=1, at most `max`. */
  clients?: (max: number) => { total: number; truncated: boolean; clients: object[] };
  /** POST /reload; absent: 404. */
  reload?: () => Promise<ReloadOutcome>;
  clock: Clock;
  log: Logger;
  version: string;
}

export interface Readiness {
  ready: boolean;
  /** Why not, one line per problem; empty when ready. */
  reasons: string[];
}

/** What a reload did, as POST /reload answers it. */
export type ReloadOutcome =
  | { ok: true; status: 200; hash: string; changes: string[] }
  | { ok: false; status: 400 | 409; problems: string[] };

interface Reply {
  status: number;
  contentType: string;
  body: string;
}

const ALLOW = 'GET, HEAD';
/** /stats?clients=1 lists at most this many clients, then says `truncated: true`. */
export const CLIENT_LIST_MAX = 1000;
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Ready when poolside is not draining and every pool has at least one server that takes traffic
 * now (isServerUp: not ejected, with a ready shared connection); a cluster pool also once it has
 * read the cluster's topology.
 */
export function readiness(pools: Iterable<MetricsPool>, draining: boolean): Readiness {
  const reasons: string[] = [];
  if (draining) reasons.push('poolside is shutting down');
  for (const pool of pools) {
    const { name, servers, cluster } = pool.stats();
    if (cluster !== undefined && cluster.lastRefreshAt === 0) {
      // Seeds may be up, but without a slot map every request would be a redirection.
      const up = servers.filter(isServerUp).length;
      reasons.push(`pool ${name} has not read the cluster's topology yet (${up} of ${servers.length} seed nodes with a ready connection)`);
      continue;
    }
    if (servers.some(isServerUp)) continue;
    const why = servers.map((s) => `${s.name} ${describeServer(s)}`).join(', ');
    reasons.push(`pool ${name} has no server with a ready connection (${why})`);
  }
  return { ready: reasons.length === 0, reasons };
}

function describeServer(server: ServerStats): string {
  const health = server.health;
  if (health.kind === 'ejected' || health.kind === 'failing' || health.kind === 'probing') return `${health.kind}: ${health.lastError}`;
  if (server.connections.connecting > 0) return `${health.kind}, connecting`;
  return `${health.kind}, no connection`;
}

export class AdminServer {
  /** Admin connections open now, oldest first, and those with a request in progress. */
  readonly #open = new Set<net.Socket>();
  readonly #busy = new Set<net.Socket>();
  readonly #server: http.Server;
  readonly #options: AdminOptions;
  readonly #startedAt: number;
  readonly #routes: ReadonlyMap<string, (query: URLSearchParams) => Reply | Promise<Reply>>;
  #bound: TcpAddress;

  private constructor(options: AdminOptions) {
    this.#options = options;
    this.#startedAt = options.clock.now();
    this.#bound = options.listen;
    this.#routes = new Map<string, (query: URLSearchParams) => Reply | Promise<Reply>>([
      ['/metrics', () => this.#metrics()],
      ['/healthz', () => ({ status: 200, contentType: TEXT, body: 'ok\n' })],
      ['/readyz', () => this.#readyz()],
      ['/stats', (query) => this.#stats(query)],
    ]);
    // connectionsCheckingInterval: how often Node enforces headersTimeout/requestTimeout (30 s by default).
    this.#server = http.createServer({ connectionsCheckingInterval: 250 }, (req, res) => {
      this.#handle(req, res).catch((err: Error) => {
        // Only writing the reply can get here (handlers are caught inside): drop the connection.
        this.#options.log.warn('admin reply failed', { reason: 'admin_handler_error', error: err.message });
        res.destroy();
      });
    });
    // Scrapes and probes are small: a client that dribbles its headers, or sends nothing, is not
    // waited for long.
    this.#server.headersTimeout = 2_000;
    this.#server.requestTimeout = 5_000;
    this.#server.keepAliveTimeout = 2_000;
    // Part of the descriptors kept back from clients (fd-budget.ts). At the cap the OLDEST
    // connection makes room, not the new one: a probe or scrape connects and is done in
    // milliseconds, so idle sockets held open by someone else can never lock them out.
    this.#server.on('connection', (socket: net.Socket) => {
      const open = this.#open;
      if (open.size >= ADMIN_MAX_CONNECTIONS) {
        // The oldest idle one first: a slow scrape in progress is not cut for a newcomer.
        let victim: net.Socket | undefined;
        for (const candidate of open) {
          if (!this.#busy.has(candidate)) {
            victim = candidate;
            break;
          }
        }
        victim ??= open.values().next().value;
        if (victim !== undefined) {
          open.delete(victim);
          victim.destroy();
        }
      }
      open.add(socket);
      socket.once('close', () => {
        open.delete(socket);
        this.#busy.delete(socket);
      });
    });
    this.#server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const socket = req.socket;
      this.#busy.add(socket);
      res.once('close', () => this.#busy.delete(socket));
    });
  }

  /** Binds the endpoint; rejects with a ListenError when the address cannot be used. */
  static async start(options: AdminOptions): Promise<AdminServer> {
    const admin = new AdminServer(options);
    await admin.#listen();
    return admin;
  }

  /** As bound: the real port when the configured one was 0. */
  get address(): TcpAddress {
    return this.#bound;
  }

  /** Stops listening and closes every connection, keep-alive ones included. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #listen(): Promise<void> {
    const { host, port } = this.#options.listen;
    const label = `admin ${formatAddress(this.#options.listen)}`;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ListenError(`cannot listen on ${label}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`));
      };
      this.#server.once('error', onError);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', onError);
        this.#server.on('error', (err) => this.#options.log.error('admin endpoint error', { reason: 'admin_error', error: err.message }));
        const info = this.#server.address();
        if (info !== null && typeof info !== 'string') this.#bound = { kind: 'tcp', host, port: info.port };
        resolve();
      });
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // A request body means nothing here; read and drop it so keep-alive works.
    req.resume();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    const route = this.#routes.get(path);
    const method = req.method ?? 'GET';
    const reload = this.#options.reload;
    let reply: Reply;
    if (path === '/reload' && reload !== undefined) {
      if (method === 'POST') {
        const outcome = await reload();
        reply = { status: outcome.status, contentType: JSON_TYPE, body: `${JSON.stringify(outcome, null, 2)}\n` };
      } else {
        reply = { status: 405, contentType: TEXT, body: `method ${method} not allowed on ${path}; allowed: POST\n` };
      }
    } else if (route === undefined) {
      reply = { status: 404, contentType: TEXT, body: `not found: try ${[...this.#routes.keys()].join(' ')}\n` };
    } else if (method !== 'GET' && method !== 'HEAD') {
      reply = { status: 405, contentType: TEXT, body: `method ${method} not allowed on ${path}; allowed: ${ALLOW}\n` };
    } else {
      try {
        reply = await route(new URLSearchParams(query < 0 ? '' : url.slice(query + 1)));
      } catch (err) {
        this.#options.log.warn('admin request failed', { path, reason: 'admin_handler_error', error: (err as Error).message });
        reply = { status: 500, contentType: TEXT, body: 'internal error\n' };
      }
    }
    if (res.destroyed) return;
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': reply.contentType,
      'Content-Length': Buffer.byteLength(reply.body),
      'Cache-Control': 'no-store',
    };
    if (reply.status === 405) headers.Allow = path === '/reload' ? 'POST' : ALLOW;
    res.writeHead(reply.status, headers);
    res.end(method === 'HEAD' ? undefined : reply.body);
  }

  async #metrics(): Promise<Reply> {
    const registry = this.#options.registry;
    return { status: 200, contentType: registry.contentType, body: await registry.metrics() };
  }

  #readyz(): Reply {
    const result = readiness(this.#options.pools(), this.#options.draining());
    return { status: result.ready ? 200 : 503, contentType: JSON_TYPE, body: `${JSON.stringify(result)}\n` };
  }

  #stats(query: URLSearchParams): Reply {
    const { clock, version } = this.#options;
    const now = clock.now();
    const wanted = query.get('clients');
    const listing = wanted !== null && wanted !== '0' && wanted !== 'false' ? this.#options.clients?.(CLIENT_LIST_MAX) : undefined;
    const body = {
      version,
      uptimeSeconds: (now - this.#startedAt) / 1000,
      draining: this.#options.draining(),
      pools: [...this.#options.pools()].map((pool) => poolJson(pool, now)),
      ...(listing === undefined ? {} : { clients: listing }),
    };
    return { status: 200, contentType: JSON_TYPE, body: `${JSON.stringify(body, null, 2)}\n` };
  }
}

// ── /stats as plain JSON: typed arrays and Maps do not survive JSON.stringify as they are ──────

function poolJson(pool: MetricsPool, now: number): object {
  const stats = pool.stats();
  return {
    name: stats.name,
    protocol: stats.protocol,
    clients: stats.clients,
    waiting: stats.waiting,
    counters: poolCountersJson(pool.counters),
    servers: stats.servers.map((server) => serverJson(server, now)),
    ...(stats.cluster === undefined ? {} : { cluster: clusterJson(stats.cluster, stats.servers) }),
  };
}

/**
 * A cluster pool's topology: epoch, coverage, redirections, refreshes, and each node with its
 * role, primary, slot ranges and health (the node's server entry above has its connections).
 */
function clusterJson(c: ClusterView, servers: readonly ServerStats[]): object {
  const byName = new Map(servers.map((s) => [s.name, s]));
  return {
    epoch: c.epoch,
    slotsCovered: c.slotsCovered,
    slotsUncovered: SLOTS - c.slotsCovered,
    lastRefreshAt: c.lastRefreshAt,
    redirections: { ...c.redirections },
    refreshes: Object.fromEntries([...c.refreshes].map(([trigger, n]) => [trigger, { success: n.success, failure: n.failure }])),
    refreshesCoalesced: c.refreshesCoalesced,
    nodes: c.nodes.map((node) => {
      const server = byName.get(node.server);
      return {
        server: node.server,
        role: node.role,
        primary: node.primary,
        // A node with no server here is a replica poolside does not connect to (read_from: primary).
        connected: server !== undefined,
        up: server === undefined ? false : isServerUp(server),
        health: server === undefined ? null : server.health.kind,
        slots: node.slots.map(([first, last]) => (first === last ? String(first) : `${first}-${last}`)),
        slotCount: slotCount(node.slots),
      };
    }),
  };
}

function poolCountersJson(c: PoolCounters): object {
  return {
    requests: c.requests,
    failures: Object.fromEntries(FAILURE_REASONS.map((reason, i) => [reason, c.failures[i]])),
    retries: c.retries,
    fanouts: { ...c.fanouts },
    protocolErrors: c.protocolErrors,
    clientsAccepted: c.clientsAccepted,
    clientsRejected: c.clientsRejected,
    clientsOverflowed: c.clientsOverflowed,
    clientsInputOverflowed: c.clientsInputOverflowed,
    clientsIdleClosed: c.clientsIdleClosed,
    clientsShutdownClosed: c.clientsShutdownClosed,
    clientsReloadClosed: c.clientsReloadClosed,
    pins: Object.fromEntries(c.pins),
    requestDuration: histogramJson(c.requestDuration),
    waitDuration: histogramJson(c.waitDuration),
  };
}

function serverJson(s: ServerStats, now: number): object {
  const c = s.counters;
  return {
    name: s.name,
    address: s.address,
    up: isServerUp(s),
    health: healthJson(s.health, now),
    connections: s.connections,
    inflight: s.inflight,
    exclusive: s.exclusive,
    counters: {
      connectionsOpened: c.connectionsOpened,
      connectionsClosed: c.connectionsClosed,
      connectFailures: c.connectFailures,
      ejections: c.ejections,
      heartbeatFailures: c.heartbeatFailures,
      lastHeartbeatSuccess: c.lastHeartbeatSuccess,
      heartbeatDuration: histogramJson(c.heartbeatDuration),
      connectDuration: histogramJson(c.connectDuration),
    },
  };
}

/** `until` is on poolside's monotonic clock, meaningless outside it: shown as time left instead. */
function healthJson(health: ServerHealth, now: number): object {
  switch (health.kind) {
    case 'starting':
    case 'up':
      return { state: health.kind };
    case 'failing':
    case 'probing':
      return { state: health.kind, failures: health.failures, lastError: health.lastError };
    case 'ejected':
      return { state: health.kind, failures: health.failures, lastError: health.lastError, probeInMs: Math.max(0, Math.round(health.until - now)) };
  }
}

/**
 * Cumulative counts by upper bound in seconds, as in the Prometheus exposition. A list, not an
 * object keyed by bound: JavaScript would move integer-like keys such as "1" to the front.
 */
function histogramJson(h: HistogramCounts): object {
  const buckets: { le: string; count: number }[] = [];
  let cumulative = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cumulative += h.counts[i];
    buckets.push({ le: String(h.bounds[i]), count: cumulative });
  }
  cumulative += h.counts[h.bounds.length];
  buckets.push({ le: '+Inf', count: cumulative });
  return { count: cumulative, sum: h.sum, buckets };
}
