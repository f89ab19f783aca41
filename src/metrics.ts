/**
 * Every metric poolside exports, declared once, on a prom-client Registry that is passed in (never
 * prom-client's global one). docs/metrics.md describes each of them.
 *
 *   request path ──▶ plain numbers, Float64Array buckets (PoolCounters, ServerCounters, Histogram)
 *                                      ▲ read only at scrape time
 *   GET /metrics ──▶ registry.metrics() ──▶ ScrapedFamily.get() ──▶ one snapshot of every pool
 *
 * prom-client stays off the request path: a labelled `counter.inc` costs ~210 ns and a labelled
 * `histogram.observe` ~600 ns on Node 20, against ~10 ns for the plain fields the proxy updates.
 * Each family here is a small object that produces its samples from those fields when scraped,
 * so nothing is copied into prom-client between scrapes and series cannot drift from the counts
 * the rest of poolside (and /stats) sees.
 */
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics } from 'prom-client';
import type { Metric, Registry } from 'prom-client';
import { FAILURE_REASONS } from './errors.js';
import type { PoolCounters, PoolStats } from './pool/pool.js';
import { CLOSE_REASONS } from './pool/connection.js';
import type { ServerHealth } from './pool/health.js';
import type { ServerStats } from './pool/server-pool.js';

/** What metrics read from a pool at scrape time; `Pool` provides it. */
export interface MetricsPool {
  readonly config: { readonly name: string; readonly connections: { readonly max: number } };
  readonly counters: PoolCounters;
  stats(): PoolStats;
}

export interface MetricsOptions {
  registry: Registry;
  /** The pools to report, asked for once per scrape (a reload may replace them). */
  pools: () => Iterable<MetricsPool>;
  /** poolside's version, for poolside_build_info. */
  version: string;
  /** Defaults to the running Node.js version. */
  nodeVersion?: string;
  /** prom-client's process and Node.js metrics (CPU, memory, event-loop lag, GC); default true. */
  defaultMetrics?: boolean;
  /** Config loads and reloads (Proxy owns it); absent: one successful load, hash unknown. */
  config?: () => ConfigStatus;
}

/** What the poolside_config_* metrics show: the Proxy's record of its reloads. */
export interface ConfigStatus {
  reloads: { success: number; failure: number };
  /** Whether the last load or reload succeeded. */
  lastSuccessful: boolean;
  /** Unix time in seconds of the last successful load or reload. */
  lastSuccessAt: number;
  /** sha256 prefix of the file as last loaded ('' when unknown). */
  hash: string;
}

/** Redirections a cluster pool followed, by the server's error: `-MOVED`, `-ASK`, `-TRYAGAIN`, `-CLUSTERDOWN`. */
export const REDIRECTION_KINDS = ['moved', 'ask', 'tryagain', 'clusterdown'] as const;
export type RedirectionKind = (typeof REDIRECTION_KINDS)[number];
export const NODE_ROLES = ['primary', 'replica'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

/**
 * What metrics and /stats read of a `routing: cluster` pool, at scrape time (PoolStats.cluster).
 * The connections and health of the nodes poolside connects to are the pool's servers
 * (PoolStats.servers, by name; replicas only when read_from reads from them): a node that leaves
 * the topology leaves both lists, and its series go with it.
 */
export interface ClusterView {
  /** The cluster's current epoch as last read (CLUSTER INFO / the highest config epoch seen); 0 before the first topology. */
  epoch: number;
  /** Hash slots (of 16384) the slot map assigns to a primary. */
  slotsCovered: number;
  /** Redirections followed, by kind. */
  redirections: Readonly<Record<RedirectionKind, number>>;
  /** Topology refreshes by what triggered them (startup, periodic, moved, failure…) and outcome. */
  refreshes: ReadonlyMap<string, { readonly success: number; readonly failure: number }>;
  /** Refreshes asked for while one ran, was due or waited: joined to it instead of run. */
  refreshesCoalesced: number;
  /** When the last successful refresh ended, Unix seconds (0 = none yet). */
  lastRefreshAt: number;
  nodes: readonly ClusterNodeView[];
}

export interface ClusterNodeView {
  /** The pool's server name for this node (its address, host:port). */
  server: string;
  role: NodeRole;
  /** For a replica, the server name of its primary (null when not known); for a primary, null. */
  primary: string | null;
  /** Slot ranges the node serves as a primary, inclusive [first, last]; none for a replica. */
  slots: readonly (readonly [number, number])[];
}

/** Reasons a session pins an exclusive connection (the codec's CommandSpec.note), pre-created at 0. */
export const PIN_REASONS = ['transaction', 'blocking', 'session_state', 'subscribe', 'session_mode'] as const;

export const HEALTH_STATES = ['starting', 'up', 'failing', 'ejected', 'probing'] as const satisfies readonly ServerHealth['kind'][];

/**
 * prom-client default metrics that `promtool check metrics` rejects: gauges named `_total`
 * ("non-counter metrics should not have _total suffix"). Their unsuffixed siblings
 * (nodejs_active_handles{type}…) carry the same information by type.
 */
const REJECTED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * A server is up when a request routed to it now would be sent at once: it is in routing (not
 * ejected) and has a ready shared connection. `failing` does not count against it: routing still
 * sends it traffic, and a server whose one connection missed heartbeats stays `failing` while its
 * other connections serve (poolside_server_health shows that state). /readyz and poolside_server_up
 * share this definition.
 */
export function isServerUp(server: Pick<ServerStats, 'health' | 'connections'>): boolean {
  return server.health.kind !== 'ejected' && server.connections.idle + server.connections.active > 0;
}

/** The version in package.json, for poolside_build_info. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Declares every poolside metric (and prom-client's defaults unless turned off) on `options.registry`. */
export function registerMetrics(options: MetricsOptions): void {
  const { registry } = options;
  const snapshot = scrapeSnapshot(options.pools);
  const family = (name: string, help: string, type: FamilyType, labelNames: readonly string[], read: (emit: Emit) => void): void => {
    // ScrapedFamily provides what Registry reads (name, help, type, get, reset); the declared
    // Metric type is the union of prom-client's own classes, which a custom family cannot be.
    registry.registerMetric(new ScrapedFamily(name, help, type, labelNames, read) as unknown as Metric);
  };
  const eachPool = (read: (pool: PoolSnapshot, emit: Emit) => void) => (emit: Emit) => {
    for (const pool of snapshot()) read(pool, emit);
  };
  const eachServer = (read: (pool: PoolSnapshot, server: ServerSnapshot, emit: Emit) => void) => (emit: Emit) => {
    for (const pool of snapshot()) for (const server of pool.servers) read(pool, server, emit);
  };
  const eachCluster = (read: (pool: PoolSnapshot, cluster: ClusterView, emit: Emit) => void) => (emit: Emit) => {
    for (const pool of snapshot()) if (pool.stats.cluster !== undefined) read(pool, pool.stats.cluster, emit);
  };
  const POOL = ['pool'];
  const SERVER = ['pool', 'server'];

  // ── process ────────────────────────────────────────────────────────────────────────────────
  const build = Object.freeze({ version: options.version, node_version: options.nodeVersion ?? process.version });
  family('poolside_build_info', 'poolside build: always 1, with the version and the Node.js version as labels.', 'gauge', ['version', 'node_version'], (emit) =>
    emit(NO_LABELS, 1, build),
  );
  const startedAt = Date.now() / 1000;
  const config = options.config ?? ((): ConfigStatus => ({ reloads: { success: 0, failure: 0 }, lastSuccessful: true, lastSuccessAt: startedAt, hash: '' }));
  family('poolside_config_last_reload_successful', 'Whether the last configuration load or reload succeeded (1) or was rejected (0).', 'gauge', [], (emit) =>
    emit(NO_LABELS, config().lastSuccessful ? 1 : 0),
  );
  family('poolside_config_last_reload_success_timestamp_seconds', 'Unix time of the last successful configuration load or reload.', 'gauge', [], (emit) =>
    emit(NO_LABELS, config().lastSuccessAt),
  );
  family('poolside_config_reloads_total', 'Configuration reloads (SIGHUP, POST /reload) by result: success, or failure (rejected, the running config kept).', 'counter', ['result'], (emit) => {
    const { reloads } = config();
    emit(NO_LABELS, reloads.success, RELOAD_SUCCESS);
    emit(NO_LABELS, reloads.failure, RELOAD_FAILURE);
  });
  family('poolside_config_info', 'The configuration running now: always 1, with a sha256 prefix of its file as the hash label.', 'gauge', ['hash'], (emit) =>
    emit(NO_LABELS, 1, { hash: config().hash }),
  );

  // ── clients and requests, per pool ─────────────────────────────────────────────────────────
  family(
    'poolside_client_connections',
    'Clients connected to the pool now.',
    'gauge',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.stats.clients)),
  );
  family(
    'poolside_client_connections_accepted_total',
    'Clients accepted by the pool.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.clientsAccepted)),
  );
  family(
    'poolside_client_connections_rejected_total',
    'Clients refused (TOO_MANY_CLIENTS: clients.max or the open-file limit reached) or closed by poolside (output_overflow: unread replies past clients.output_buffer limits; input_overflow: unanswered requests past clients.input_buffer.hard; idle_timeout: sent nothing for clients.idle_timeout; shutdown: still holding a request, blocking command or subscription at shutdown.timeout; reload: blocked or subscribed in a pool a reload replaced, at shutdown.timeout after the reload).',
    'counter',
    [...POOL, 'reason'],
    eachPool((p, emit) => {
      emit(p.labels, p.counters.clientsRejected, REJECTED_TOO_MANY);
      emit(p.labels, p.counters.clientsOverflowed, REJECTED_OVERFLOW);
      emit(p.labels, p.counters.clientsInputOverflowed, REJECTED_INPUT_OVERFLOW);
      emit(p.labels, p.counters.clientsIdleClosed, REJECTED_IDLE);
      emit(p.labels, p.counters.clientsShutdownClosed, REJECTED_SHUTDOWN);
      emit(p.labels, p.counters.clientsReloadClosed, REJECTED_RELOAD);
    }),
  );
  family(
    'poolside_requests_total',
    'Requests framed from clients, whether they were forwarded or answered by poolside with an error.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.requests)),
  );
  family(
    'poolside_request_duration_seconds',
    'Time from a request being framed to its reply being written to the client, queueing and retries included.',
    'histogram',
    POOL,
    eachPool((p, emit) => emit.histogram(p.labels, p.counters.requestDuration)),
  );
  family(
    'poolside_request_failures_total',
    'Requests answered by poolside with an error, by reason (the word after "poolside" in the error the client receives).',
    'counter',
    [...POOL, 'reason'],
    eachPool((p, emit) => {
      const failures = p.counters.failures;
      for (let i = 0; i < FAILURE_LABELS.length; i++) emit(p.labels, failures[i], FAILURE_LABELS[i]);
    }),
  );
  family(
    'poolside_request_retries_total',
    'Idempotent requests sent again on another connection after theirs died before any reply byte was read.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.retries)),
  );
  family(
    'poolside_fanout_requests_total',
    'Requests sent to several servers of a ketama pool in parts whose replies were merged: split (keys on several servers, one part per server) or broadcast (to every server).',
    'counter',
    [...POOL, 'kind'],
    eachPool((p, emit) => {
      emit(p.labels, p.counters.fanouts.split, FANOUT_SPLIT);
      emit(p.labels, p.counters.fanouts.broadcast, FANOUT_BROADCAST);
    }),
  );
  family(
    'poolside_fanout_parts_failed_total',
    'Parts of split or broadcast requests that got no reply (connection lost, request_timeout, no healthy server), whatever the merge made of it: an error for the whole request, or a partial answer where the protocol allows one.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.fanouts.partsFailed)),
  );
  family(
    'poolside_protocol_errors_total',
    'Clients closed because they sent bytes that cannot be framed in the pool protocol.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.protocolErrors)),
  );
  family(
    'poolside_client_replies_torn_total',
    'Clients reset because their connection to the server died while a large reply was streaming to them.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.repliesTorn)),
  );
  family(
    'poolside_internal_errors_total',
    'Faults in poolside itself (an exception in session code): the client involved is closed, no peer is blamed.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.internalErrors)),
  );
  family(
    'poolside_client_auth_failures_total',
    'AUTH or HELLO … AUTH from clients with credentials that client_auth does not accept.',
    'counter',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.counters.authFailures)),
  );
  family(
    'poolside_pool_waiting_requests',
    'Requests held by sessions waiting for a connection now (queue.max bounds the waiting sessions).',
    'gauge',
    POOL,
    eachPool((p, emit) => emit(p.labels, p.stats.waiting.requests)),
  );
  family(
    'poolside_pool_wait_duration_seconds',
    'Time requests waited for a connection before they got one (requests that timed out in the queue are not observed).',
    'histogram',
    POOL,
    eachPool((p, emit) => emit.histogram(p.labels, p.counters.waitDuration)),
  );
  family(
    'poolside_lease_pins_total',
    'Sessions that were lent an exclusive connection, by reason (transaction, blocking, session_state, subscribe, session_mode), counted once the lease is obtained.',
    'counter',
    [...POOL, 'reason'],
    eachPool((p, emit) => {
      const pins = p.counters.pins;
      for (let i = 0; i < PIN_REASONS.length; i++) emit(p.labels, pins.get(PIN_REASONS[i]) ?? 0, PIN_LABELS[i]);
      for (const [reason, n] of pins) {
        if (reason !== '' && !(PIN_REASONS as readonly string[]).includes(reason)) emit(p.labels, n, { reason });
      }
    }),
  );

  // ── connections and servers ────────────────────────────────────────────────────────────────
  family(
    'poolside_pool_connections',
    'Shared connections to a server now: idle (nothing in flight), active (requests in flight), connecting (connect, AUTH, SELECT or first PING not answered yet).',
    'gauge',
    [...SERVER, 'state'],
    eachServer((_p, s, emit) => {
      const c = s.stats.connections;
      emit(s.labels, c.idle, STATE_IDLE);
      emit(s.labels, c.active, STATE_ACTIVE);
      emit(s.labels, c.connecting, STATE_CONNECTING);
    }),
  );
  family(
    'poolside_pool_max_connections',
    'Most shared connections poolside opens to a server (connections.max).',
    'gauge',
    SERVER,
    eachServer((p, s, emit) => emit(s.labels, p.maxConnections)),
  );
  family(
    'poolside_exclusive_connections',
    'Exclusive connections to a server now: borrowed (pinned to a session) or idle (ready to be lent).',
    'gauge',
    [...SERVER, 'state'],
    eachServer((_p, s, emit) => {
      emit(s.labels, s.stats.exclusive.borrowed, STATE_BORROWED);
      emit(s.labels, s.stats.exclusive.idle, STATE_IDLE);
    }),
  );
  family(
    'poolside_server_up',
    'Whether a request routed to the server now is sent at once: 1 when it is not ejected and has a ready shared connection.',
    'gauge',
    SERVER,
    eachServer((_p, s, emit) => emit(s.labels, isServerUp(s.stats) ? 1 : 0)),
  );
  family(
    'poolside_server_health',
    'Health state of the server: 1 for the current state (starting, up, failing, ejected, probing), 0 for the others.',
    'gauge',
    [...SERVER, 'state'],
    eachServer((_p, s, emit) => {
      const kind = s.stats.health.kind;
      for (let i = 0; i < HEALTH_STATES.length; i++) emit(s.labels, kind === HEALTH_STATES[i] ? 1 : 0, HEALTH_LABELS[i]);
    }),
  );
  family(
    'poolside_server_ejections_total',
    'Times the server was taken out of routing after eject.after_failures consecutive failures (failed probes of an ejected server not counted again).',
    'counter',
    SERVER,
    eachServer((_p, s, emit) => emit(s.labels, s.stats.counters.ejections)),
  );
  family(
    'poolside_server_connections_opened_total',
    'Connections poolside started to open to the server, shared and exclusive.',
    'counter',
    SERVER,
    eachServer((_p, s, emit) => emit(s.labels, s.stats.counters.connectionsOpened)),
  );
  family(
    'poolside_server_connections_closed_total',
    'Connections to the server that ended, by reason (remote_closed: the server closed it; docs/metrics.md lists every reason).',
    'counter',
    [...SERVER, 'reason'],
    eachServer((_p, s, emit) => {
      const closed = s.stats.counters.connectionsClosed;
      for (let i = 0; i < CLOSE_REASONS.length; i++) emit(s.labels, closed[CLOSE_REASONS[i]], CLOSE_LABELS[i]);
    }),
  );
  family(
    'poolside_server_connect_failures_total',
    'Connections, shared and exclusive, that closed before they became ready (refused, connect timeout, AUTH or SELECT refused, server busy).',
    'counter',
    SERVER,
    eachServer((_p, s, emit) => emit(s.labels, s.stats.counters.connectFailures)),
  );
  family(
    'poolside_server_connect_duration_seconds',
    'Time from starting a connect to the connection being ready (TCP connect, AUTH, SELECT and the first PING answered).',
    'histogram',
    SERVER,
    eachServer((_p, s, emit) => emit.histogram(s.labels, s.stats.counters.connectDuration)),
  );
  family(
    'poolside_heartbeat_duration_seconds',
    'Time for the server to answer a heartbeat on an idle connection, from that heartbeat\'s own send time.',
    'histogram',
    SERVER,
    eachServer((_p, s, emit) => emit.histogram(s.labels, s.stats.counters.heartbeatDuration)),
  );
  family(
    'poolside_heartbeat_failures_total',
    'Heartbeats that failed: timeout (no answer within heartbeat.timeout, a miss) or error (answered with an error).',
    'counter',
    [...SERVER, 'reason'],
    eachServer((_p, s, emit) => {
      emit(s.labels, s.stats.counters.heartbeatFailures.timeout, REASON_TIMEOUT);
      emit(s.labels, s.stats.counters.heartbeatFailures.error, REASON_ERROR);
    }),
  );
  family(
    'poolside_server_unasked_frames_total',
    'Frames a server sent on its own (framed): heartbeat requests poolside answered (heartbeat.answer), or responses to no request waiting that framed.unasked: drop dropped.',
    'counter',
    [...SERVER, 'action'],
    eachServer((_p, s, emit) => {
      emit(s.labels, s.stats.counters.unasked.answered, ACTION_ANSWERED);
      emit(s.labels, s.stats.counters.unasked.dropped, ACTION_DROPPED);
    }),
  );
  family(
    'poolside_heartbeat_last_success_timestamp_seconds',
    'Unix time of the last heartbeat the server answered (0 = none yet).',
    'gauge',
    SERVER,
    eachServer((_p, s, emit) => emit(s.labels, s.stats.counters.lastHeartbeatSuccess)),
  );

  // ── Redis Cluster pools (routing: cluster) ─────────────────────────────────────────────────
  // A cluster's nodes are the pool's servers above (server = the node's host:port), each with
  // its own health and connections; these add what only a cluster has. Every series is bounded by
  // the cluster: a node that leaves the topology leaves every family at the next scrape.
  family(
    'poolside_cluster_redirections_total',
    'Redirections cluster nodes answered to client requests (followed, or passed on once cluster.max_redirects or the deadline ran out), by kind: moved (slot owned elsewhere; the slot map is updated), ask (slot migrating: ASKING and the request sent to the target once), tryagain (multi-key request during a migration) and clusterdown (the cluster cannot serve the slot), the last two retried with backoff.',
    'counter',
    [...POOL, 'kind'],
    eachCluster((p, c, emit) => {
      for (let i = 0; i < REDIRECTION_KINDS.length; i++) emit(p.labels, c.redirections[REDIRECTION_KINDS[i]], REDIRECTION_LABELS[i]);
    }),
  );
  family(
    'poolside_cluster_topology_refreshes_total',
    'Topology refreshes of a cluster pool (CLUSTER SHARDS, else CLUSTER SLOTS) by what triggered them and their result (success: a slot map was read and applied; failure: no node answered with one).',
    'counter',
    [...POOL, 'trigger', 'result'],
    eachCluster((p, c, emit) => {
      for (const [trigger, counts] of c.refreshes) {
        const [success, failure] = refreshLabels(trigger);
        emit(p.labels, counts.success, success);
        emit(p.labels, counts.failure, failure);
      }
    }),
  );
  family(
    'poolside_cluster_topology_refreshes_coalesced_total',
    'Topology refreshes asked for (by a MOVED, a failing node…) while one was running, due or waiting, and joined to it instead: at most one refresh runs at a time, at least 200 ms apart.',
    'counter',
    POOL,
    eachCluster((p, c, emit) => emit(p.labels, c.refreshesCoalesced)),
  );
  family(
    'poolside_cluster_last_refresh_success_timestamp_seconds',
    'Unix time of the last successful topology refresh of a cluster pool (0 = none yet).',
    'gauge',
    POOL,
    eachCluster((p, c, emit) => emit(p.labels, c.lastRefreshAt)),
  );
  family(
    'poolside_cluster_current_epoch',
    'The cluster\'s current epoch as poolside last read it: it grows with every failover and slot migration the cluster agrees on.',
    'gauge',
    POOL,
    eachCluster((p, c, emit) => emit(p.labels, c.epoch)),
  );
  family(
    'poolside_cluster_slots_covered',
    'Hash slots (of 16384) poolside\'s slot map assigns to a primary: 16384 when the whole keyspace is served.',
    'gauge',
    POOL,
    eachCluster((p, c, emit) => emit(p.labels, c.slotsCovered)),
  );
  family(
    'poolside_cluster_nodes',
    'Nodes of the cluster in poolside\'s topology now, by role (primary, replica).',
    'gauge',
    [...POOL, 'role'],
    eachCluster((p, c, emit) => {
      let primaries = 0;
      for (const node of c.nodes) if (node.role === 'primary') primaries++;
      emit(p.labels, primaries, ROLE_PRIMARY);
      emit(p.labels, c.nodes.length - primaries, ROLE_REPLICA);
    }),
  );
  family(
    'poolside_cluster_node_info',
    'One series per node of the cluster now, always 1: its role and, for a replica, the server name of its primary (empty for a primary); join on server with the per-server metrics.',
    'gauge',
    [...SERVER, 'role', 'primary'],
    eachCluster((p, c, emit) => {
      for (const node of c.nodes) emit(p.nodeLabels(node), 1);
    }),
  );
  family(
    'poolside_cluster_node_slots',
    'Hash slots the node serves as a primary (0 for a replica).',
    'gauge',
    SERVER,
    eachCluster((p, c, emit) => {
      for (const node of c.nodes) emit(p.serverLabels(node.server), slotCount(node.slots));
    }),
  );

  if (options.defaultMetrics ?? true) {
    // Unprefixed (process_cpu_seconds_total, nodejs_eventloop_lag_seconds…): the names every
    // existing Node.js dashboard and alert expects; the scrape job tells processes apart.
    collectDefaultMetrics({ register: registry });
    for (const name of REJECTED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }
}

// ── families read at scrape time ─────────────────────────────────────────────────────────────

type FamilyType = 'counter' | 'gauge' | 'histogram';
type Labels = Readonly<Record<string, string>>;

/** A histogram kept outside prom-client: per-bucket (not cumulative) counts, the last for +Inf. */
export interface HistogramCounts {
  readonly bounds: ArrayLike<number>;
  readonly counts: ArrayLike<number>;
  readonly sum: number;
}

/**
 * Hands one family's samples to the exposition during a scrape. `series` names the pool or
 * server and must be the same object from one scrape to the next: prom-client caches the text of
 * a sample's `sharedLabels` by object identity, which makes formatting several times cheaper
 * than building every label set anew. `extra` holds the one label that varies within a series
 * (state, reason), also from constant objects where the values are known.
 */
export interface Emit {
  (series: Labels, value: number, extra?: Labels): void;
  /** The `_bucket` (cumulative, ending with le="+Inf"), `_sum` and `_count` samples of one histogram. */
  histogram(series: Labels, histogram: HistogramCounts): void;
}

interface Sample {
  metricName?: string;
  labels: Labels;
  sharedLabels: Labels;
  value: number;
}

const NO_LABELS: Labels = Object.freeze({});

function constantLabels(name: string, values: readonly string[]): Labels[] {
  return values.map((value) => Object.freeze({ [name]: value }));
}

const FAILURE_LABELS = constantLabels('reason', FAILURE_REASONS);
const CLOSE_LABELS = constantLabels('reason', CLOSE_REASONS);
const PIN_LABELS = constantLabels('reason', PIN_REASONS);
const HEALTH_LABELS = constantLabels('state', HEALTH_STATES);
const [REJECTED_TOO_MANY, REJECTED_OVERFLOW, REJECTED_INPUT_OVERFLOW, REJECTED_IDLE, REJECTED_SHUTDOWN, REJECTED_RELOAD] = constantLabels('reason', [
  'TOO_MANY_CLIENTS',
  'output_overflow',
  'input_overflow',
  'idle_timeout',
  'shutdown',
  'reload',
]);
const [FANOUT_SPLIT, FANOUT_BROADCAST] = constantLabels('kind', ['split', 'broadcast']);
const REDIRECTION_LABELS = constantLabels('kind', REDIRECTION_KINDS);
const [ROLE_PRIMARY, ROLE_REPLICA] = constantLabels('role', NODE_ROLES);
/** `trigger`/`result` label pairs by trigger; triggers are a small set the cluster code names. */
const refreshLabelsByTrigger = new Map<string, readonly [Labels, Labels]>();

function refreshLabels(trigger: string): readonly [Labels, Labels] {
  let labels = refreshLabelsByTrigger.get(trigger);
  if (labels === undefined) {
    labels = [Object.freeze({ trigger, result: 'success' }), Object.freeze({ trigger, result: 'failure' })];
    refreshLabelsByTrigger.set(trigger, labels);
  }
  return labels;
}

/** Slots in inclusive ranges. */
export function slotCount(ranges: readonly (readonly [number, number])[]): number {
  let n = 0;
  for (const [first, last] of ranges) n += last - first + 1;
  return n;
}
const [RELOAD_SUCCESS, RELOAD_FAILURE] = constantLabels('result', ['success', 'failure']);
const [REASON_TIMEOUT, REASON_ERROR] = constantLabels('reason', ['timeout', 'error']);
const [ACTION_ANSWERED, ACTION_DROPPED] = constantLabels('action', ['answered', 'dropped']);
const [STATE_IDLE, STATE_ACTIVE, STATE_CONNECTING, STATE_BORROWED] = constantLabels('state', ['idle', 'active', 'connecting', 'borrowed']);
const LE_INF: Labels = Object.freeze({ le: '+Inf' });
/** `le` label objects by bound; bounds come from a few constant bucket lists, so this stays small. */
const leLabels = new Map<number, Labels>();

function leOf(bound: number): Labels {
  let labels = leLabels.get(bound);
  if (labels === undefined) {
    // String(5e-5) is "0.00005"; JavaScript switches to exponents only below 1e-6, which
    // Prometheus parses as well.
    labels = Object.freeze({ le: String(bound) });
    leLabels.set(bound, labels);
  }
  return labels;
}

/**
 * The part of prom-client's metric contract its Registry uses: name, help, type and aggregator,
 * get() producing every sample, reset() (Registry.resetMetrics; values here belong to the proxy,
 * so there is nothing to reset).
 */
class ScrapedFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: FamilyType,
    /** Documentation and tests: the label names every sample carries (le aside). */
    readonly labelNames: readonly string[],
    readonly read: (emit: Emit) => void,
  ) {}

  async get(): Promise<{ name: string; help: string; type: FamilyType; aggregator: string; values: Sample[] }> {
    const values: Sample[] = [];
    const name = this.name;
    const emit = ((series: Labels, value: number, extra: Labels = NO_LABELS) => {
      values.push({ labels: extra, sharedLabels: series, value });
    }) as Emit;
    emit.histogram = (series, histogram) => exposeHistogram(values, name, series, histogram);
    this.read(emit);
    return { name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {}
}

/** Samples of one histogram as Prometheus expects them; _count is the +Inf bucket, so they always agree. */
function exposeHistogram(values: Sample[], name: string, series: Labels, histogram: HistogramCounts): void {
  const { bounds, counts } = histogram;
  const bucket = `${name}_bucket`;
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += counts[i];
    values.push({ metricName: bucket, labels: leOf(bounds[i]), sharedLabels: series, value: cumulative });
  }
  cumulative += counts[bounds.length];
  values.push({ metricName: bucket, labels: LE_INF, sharedLabels: series, value: cumulative });
  values.push({ metricName: `${name}_sum`, labels: NO_LABELS, sharedLabels: series, value: histogram.sum });
  values.push({ metricName: `${name}_count`, labels: NO_LABELS, sharedLabels: series, value: cumulative });
}

// ── one snapshot per scrape ──────────────────────────────────────────────────────────────────

interface ServerSnapshot {
  labels: Labels;
  stats: ServerStats;
}

interface PoolSnapshot {
  labels: Labels;
  maxConnections: number;
  counters: PoolCounters;
  stats: PoolStats;
  servers: ServerSnapshot[];
  /** `{pool, server}` labels of a server by name (a cluster node's), kept across scrapes like the servers'. */
  serverLabels(server: string): Labels;
  /** `{pool, server, role, primary}` of a cluster node, kept across scrapes while the node keeps them. */
  nodeLabels(node: ClusterNodeView): Labels;
}

/**
 * Registry.metrics() calls every family's get() in one synchronous run, so a snapshot kept until
 * the next microtask is shared by all of them: each pool's stats() (which walks its connections)
 * runs once per scrape, not once per family. Label objects are carried from one snapshot to the
 * next (see Emit); those of pools and servers that are gone are dropped.
 */
function scrapeSnapshot(pools: () => Iterable<MetricsPool>): () => readonly PoolSnapshot[] {
  let current: PoolSnapshot[] | null = null;
  let labels = new Map<string, Labels>();
  const forget = (): void => {
    current = null;
  };
  return () => {
    if (current !== null) return current;
    const next = new Map<string, Labels>();
    const labelsFor = (key: string, make: () => Labels): Labels => {
      const found = labels.get(key) ?? make();
      next.set(key, found);
      return found;
    };
    current = [];
    for (const pool of pools()) {
      const name = pool.config.name;
      const stats = pool.stats();
      current.push({
        labels: labelsFor(name, () => Object.freeze({ pool: name })),
        maxConnections: pool.config.connections.max,
        counters: pool.counters,
        stats,
        // A NUL cannot occur in pool or server names, so keys cannot collide.
        servers: stats.servers.map((server) => ({ stats: server, labels: labelsFor(`${name}\0${server.name}`, () => Object.freeze({ pool: name, server: server.name })) })),
        serverLabels: (server) => labelsFor(`${name}\0${server}`, () => Object.freeze({ pool: name, server })),
        nodeLabels: (node) => {
          const primary = node.primary ?? '';
          return labelsFor(`${name}\0${node.server}\0${node.role}\0${primary}`, () => Object.freeze({ pool: name, server: node.server, role: node.role, primary }));
        },
      });
    }
    labels = next;
    queueMicrotask(forget);
    return current;
  };
}
