/**
 * metrics.ts against plain counters: the exposition it produces (histograms cumulative with +Inf,
 * _sum and _count; every known series present at 0), values read at scrape time, and the one
 * definition of "server up" that /readyz shares.
 */
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { readiness } from '../../src/admin.js';
import { FAILURE_REASONS } from '../../src/errors.js';
import { HEALTH_STATES, isServerUp, PIN_REASONS, REDIRECTION_KINDS, registerMetrics } from '../../src/metrics.js';
import type { ClusterNodeView, ClusterView, MetricsPool } from '../../src/metrics.js';
import { CLOSE_REASONS } from '../../src/pool/connection.js';
import type { ServerHealth } from '../../src/pool/health.js';
import { newPoolCounters } from '../../src/pool/pool.js';
import type { PoolCounters, PoolStats } from '../../src/pool/pool.js';
import { newServerCounters } from '../../src/pool/server-pool.js';
import type { ServerCounters, ServerStats } from '../../src/pool/server-pool.js';
import { REQUEST_BUCKETS } from '../../src/util/histogram.js';
import { find, parseExposition, promtoolCheck, valueOf } from '../helpers/prometheus.js';
import type { Exposition } from '../helpers/prometheus.js';

const poolCounters = (): PoolCounters => newPoolCounters();
const serverCounters = (): ServerCounters => newServerCounters();

function server(name: string, health: ServerHealth = { kind: 'up' }, connections = { idle: 2, active: 0, connecting: 0 }): ServerStats {
  return {
    name,
    address: name,
    health,
    connections,
    inflight: 0,
    exclusive: { borrowed: 0, idle: 0, pending: 0 },
    counters: serverCounters(),
  };
}

/** A pool as metrics.ts sees it; `stats` counts how often it was asked. */
class FakePool implements MetricsPool {
  readonly config: { name: string; connections: { max: number } };
  readonly counters = poolCounters();
  readonly servers: ServerStats[];
  clients = 0;
  waitingRequests = 0;
  statsCalls = 0;
  cluster: ClusterView | undefined = undefined;

  constructor(name: string, servers: ServerStats[], max = 8) {
    this.config = { name, connections: { max } };
    this.servers = servers;
  }

  stats(): PoolStats {
    this.statsCalls++;
    return {
      name: this.config.name,
      protocol: 'redis',
      clients: this.clients,
      waiting: { sessions: 0, requests: this.waitingRequests, oldestMs: 0 },
      servers: this.servers,
      ...(this.cluster === undefined ? {} : { cluster: this.cluster }),
    };
  }
}

function setup(pools: FakePool[], defaultMetrics = false): () => Promise<Exposition & { text: string }> {
  const registry = new Registry();
  registerMetrics({ registry, pools: () => pools, version: '1.2.3', nodeVersion: 'v20.0.0', defaultMetrics });
  return async () => {
    const text = await registry.metrics();
    return { text, ...parseExposition(text) };
  };
}

describe('histograms from plain bucket counts', () => {
  it('exposes cumulative buckets ending with le="+Inf", then _sum and _count', async () => {
    const pool = new FakePool('cache', [server('s1')]);
    const h = pool.counters.requestDuration;
    for (const seconds of [0.00003, 0.0002, 0.0002, 0.003, 10]) h.observe(seconds);
    const m = await setup([pool])();
    const buckets = find(m, 'poolside_request_duration_seconds_bucket', { pool: 'cache' });
    expect(buckets.map((b) => b.labels.le)).toEqual([...REQUEST_BUCKETS.map(String), '+Inf']);
    const cumulative = Object.fromEntries(buckets.map((b) => [b.labels.le, b.value]));
    expect(cumulative).toMatchObject({ '0.00005': 1, '0.0001': 1, '0.00025': 3, '0.0005': 3, '0.001': 3, '0.0025': 3, '0.005': 4, '2.5': 4, '+Inf': 5 });
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(valueOf(m, 'poolside_request_duration_seconds_count', { pool: 'cache' })).toBe(5);
    expect(valueOf(m, 'poolside_request_duration_seconds_sum', { pool: 'cache' })).toBeCloseTo(10.00343, 10);
    expect(m.families.get('poolside_request_duration_seconds')?.type).toBe('histogram');
  });

  it('writes a bucket at its upper bound into that bucket (le is inclusive)', async () => {
    const pool = new FakePool('cache', [server('s1')]);
    pool.counters.waitDuration.observe(0.001);
    const m = await setup([pool])();
    expect(valueOf(m, 'poolside_pool_wait_duration_seconds_bucket', { pool: 'cache', le: '0.0001' })).toBe(0);
    expect(valueOf(m, 'poolside_pool_wait_duration_seconds_bucket', { pool: 'cache', le: '0.001' })).toBe(1);
  });

  it('labels per-server histograms with le, pool and server', async () => {
    const s = server('10.0.0.5:6379');
    s.counters.connectDuration.observe(0.002);
    const m = await setup([new FakePool('cache', [s])])();
    // le first, as prom-client's own histograms write it; the order means nothing to Prometheus.
    expect(m.text).toContain('poolside_server_connect_duration_seconds_bucket{le="0.0025",pool="cache",server="10.0.0.5:6379"} 1\n');
    expect(m.text).toContain('poolside_server_connect_duration_seconds_count{pool="cache",server="10.0.0.5:6379"} 1\n');
    expect(valueOf(m, 'poolside_server_connect_duration_seconds_count', { server: '10.0.0.5:6379' })).toBe(1);
  });
});

describe('series present before anything happens', () => {
  it('pre-creates every failure reason, close reason, pin reason, health state and rejection reason at 0', async () => {
    const m = await setup([new FakePool('cache', [server('s1', { kind: 'starting' }, { idle: 0, active: 0, connecting: 0 })])])();
    for (const reason of FAILURE_REASONS) expect(valueOf(m, 'poolside_request_failures_total', { pool: 'cache', reason })).toBe(0);
    for (const reason of CLOSE_REASONS) expect(valueOf(m, 'poolside_server_connections_closed_total', { server: 's1', reason })).toBe(0);
    for (const reason of PIN_REASONS) expect(valueOf(m, 'poolside_lease_pins_total', { pool: 'cache', reason })).toBe(0);
    for (const reason of ['TOO_MANY_CLIENTS', 'output_overflow']) {
      expect(valueOf(m, 'poolside_client_connections_rejected_total', { pool: 'cache', reason })).toBe(0);
    }
    for (const reason of ['timeout', 'error']) expect(valueOf(m, 'poolside_heartbeat_failures_total', { server: 's1', reason })).toBe(0);
    for (const state of ['idle', 'active', 'connecting']) expect(valueOf(m, 'poolside_pool_connections', { server: 's1', state })).toBe(0);
    for (const state of ['borrowed', 'idle']) expect(valueOf(m, 'poolside_exclusive_connections', { server: 's1', state })).toBe(0);
    expect(find(m, 'poolside_server_health', { server: 's1' }).map((s) => [s.labels.state, s.value])).toEqual(
      HEALTH_STATES.map((state) => [state, state === 'starting' ? 1 : 0]),
    );
    expect(valueOf(m, 'poolside_request_duration_seconds_bucket', { pool: 'cache', le: '+Inf' })).toBe(0);
    expect(valueOf(m, 'poolside_heartbeat_last_success_timestamp_seconds', { server: 's1' })).toBe(0);
  });

  it('reports build_info with the version and Node.js version, and a successful config load', async () => {
    const m = await setup([])();
    expect(find(m, 'poolside_build_info')).toEqual([{ name: 'poolside_build_info', labels: { version: '1.2.3', node_version: 'v20.0.0' }, value: 1 }]);
    expect(valueOf(m, 'poolside_config_last_reload_successful')).toBe(1);
  });
});

describe('values read at scrape time', () => {
  it('shows counters changed since the previous scrape without re-registering anything', async () => {
    const pool = new FakePool('cache', [server('s1')]);
    const scrape = setup([pool]);
    expect(valueOf(await scrape(), 'poolside_requests_total', { pool: 'cache' })).toBe(0);
    pool.counters.requests += 41;
    pool.counters.requests++;
    pool.counters.failures[FAILURE_REASONS.indexOf('POOL_TIMEOUT')] += 3;
    pool.counters.clientsAccepted = 7;
    pool.counters.clientsRejected = 2;
    pool.counters.clientsOverflowed = 1;
    pool.counters.retries = 4;
    pool.counters.protocolErrors = 5;
    pool.counters.pins.set('transaction', 6);
    pool.clients = 3;
    pool.waitingRequests = 9;
    const s = pool.servers[0];
    s.counters.connectionsOpened = 11;
    s.counters.connectionsClosed.remote_closed = 2;
    s.counters.ejections = 1;
    s.counters.connectFailures = 3;
    s.counters.heartbeatFailures.timeout = 4;
    s.counters.lastHeartbeatSuccess = 1_700_000_000.5;
    s.exclusive.borrowed = 2;
    s.exclusive.idle = 1;
    const m = await scrape();
    expect(valueOf(m, 'poolside_requests_total', { pool: 'cache' })).toBe(42);
    expect(valueOf(m, 'poolside_request_failures_total', { pool: 'cache', reason: 'POOL_TIMEOUT' })).toBe(3);
    expect(valueOf(m, 'poolside_request_failures_total', { pool: 'cache', reason: 'QUEUE_FULL' })).toBe(0);
    expect(valueOf(m, 'poolside_client_connections_accepted_total', { pool: 'cache' })).toBe(7);
    expect(valueOf(m, 'poolside_client_connections_rejected_total', { reason: 'TOO_MANY_CLIENTS' })).toBe(2);
    expect(valueOf(m, 'poolside_client_connections_rejected_total', { reason: 'output_overflow' })).toBe(1);
    expect(valueOf(m, 'poolside_request_retries_total', { pool: 'cache' })).toBe(4);
    expect(valueOf(m, 'poolside_protocol_errors_total', { pool: 'cache' })).toBe(5);
    expect(valueOf(m, 'poolside_lease_pins_total', { reason: 'transaction' })).toBe(6);
    expect(valueOf(m, 'poolside_client_connections', { pool: 'cache' })).toBe(3);
    expect(valueOf(m, 'poolside_pool_waiting_requests', { pool: 'cache' })).toBe(9);
    expect(valueOf(m, 'poolside_server_connections_opened_total', { server: 's1' })).toBe(11);
    expect(valueOf(m, 'poolside_server_connections_closed_total', { server: 's1', reason: 'remote_closed' })).toBe(2);
    expect(valueOf(m, 'poolside_server_ejections_total', { server: 's1' })).toBe(1);
    expect(valueOf(m, 'poolside_server_connect_failures_total', { server: 's1' })).toBe(3);
    expect(valueOf(m, 'poolside_heartbeat_failures_total', { server: 's1', reason: 'timeout' })).toBe(4);
    expect(valueOf(m, 'poolside_heartbeat_last_success_timestamp_seconds', { server: 's1' })).toBe(1_700_000_000.5);
    expect(valueOf(m, 'poolside_exclusive_connections', { state: 'borrowed' })).toBe(2);
    expect(valueOf(m, 'poolside_exclusive_connections', { state: 'idle' })).toBe(1);
    expect(valueOf(m, 'poolside_pool_max_connections', { server: 's1' })).toBe(8);
  });

  it('asks each pool for its stats once per scrape, not once per metric', async () => {
    const pools = [new FakePool('a', [server('s1'), server('s2')]), new FakePool('b', [server('s3')])];
    const scrape = setup(pools);
    await scrape();
    expect(pools.map((p) => p.statsCalls)).toEqual([1, 1]);
    await scrape();
    expect(pools.map((p) => p.statsCalls)).toEqual([2, 2]);
  });

  it('adds a pin reason it does not know as its own series', async () => {
    const pool = new FakePool('cache', [server('s1')]);
    pool.counters.pins.set('something_new', 2);
    const m = await setup([pool])();
    expect(valueOf(m, 'poolside_lease_pins_total', { reason: 'something_new' })).toBe(2);
  });
});

describe('declarations', () => {
  it('declares every family once with help text; counters end in _total and nothing else does', async () => {
    const m = await setup([new FakePool('cache', [server('s1')])])();
    expect(m.families.size).toBeGreaterThanOrEqual(26);
    for (const [name, family] of m.families) {
      expect(name.startsWith('poolside_'), name).toBe(true);
      expect(family.help.length, name).toBeGreaterThan(10);
      expect(name.endsWith('_total'), name).toBe(family.type === 'counter');
    }
    const typeLines = m.text.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(new Set(typeLines).size).toBe(typeLines.length);
  });

  it('gives every sample of a family the same label names', async () => {
    const m = await setup([new FakePool('a', [server('s1'), server('s2')]), new FakePool('b', [server('s3')])])();
    const byFamily = new Map<string, Set<string>>();
    for (const sample of m.samples) {
      const family = sample.name.replace(/_(bucket|sum|count)$/, '');
      const name = m.families.has(family) ? family : sample.name;
      const keys = Object.keys(sample.labels)
        .filter((k) => k !== 'le')
        .sort()
        .join(',');
      byFamily.set(name, (byFamily.get(name) ?? new Set()).add(keys));
    }
    for (const [name, keySets] of byFamily) expect([...keySets], name).toHaveLength(1);
    expect([...(byFamily.get('poolside_server_connections_closed_total') ?? [])]).toEqual(['pool,reason,server']);
    expect([...(byFamily.get('poolside_request_duration_seconds') ?? [])]).toEqual(['pool']);
    for (const bucket of find(m, 'poolside_heartbeat_duration_seconds_bucket')) expect(bucket.labels.le).toBeDefined();
  });

  it('refuses to declare the same metrics twice on one registry', () => {
    const registry = new Registry();
    registerMetrics({ registry, pools: () => [], version: '1', defaultMetrics: false });
    expect(() => registerMetrics({ registry, pools: () => [], version: '1', defaultMetrics: false })).toThrow(/already been registered/);
  });

  it('uses the registry it is given and leaves prom-client’s global registry alone', async () => {
    const { register } = await import('prom-client');
    const before = register.getMetricsAsArray().length;
    setup([new FakePool('cache', [server('s1')])], true);
    expect(register.getMetricsAsArray().length).toBe(before);
  });

  it('includes prom-client’s process and Node.js metrics, minus the gauges promtool rejects for their _total suffix', async () => {
    const m = await setup([], true)();
    expect(m.families.get('process_cpu_seconds_total')?.type).toBe('counter');
    expect(m.families.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(m.families.has('nodejs_active_handles')).toBe(true);
    for (const [name, family] of m.families) expect(name.endsWith('_total'), name).toBe(family.type === 'counter');
  });

  it('leaves other metrics on the same registry untouched', async () => {
    const registry = new Registry();
    registerMetrics({ registry, pools: () => [], version: '1', defaultMetrics: false });
    new Counter({ name: 'embedder_things_total', help: 'Things the embedding app counts.', registers: [registry] }).inc(3);
    const m = parseExposition(await registry.metrics());
    expect(valueOf(m, 'embedder_things_total')).toBe(3);
    expect(valueOf(m, 'poolside_config_last_reload_successful')).toBe(1);
  });
});

describe('server up and readiness', () => {
  const ready = { idle: 1, active: 0, connecting: 0 };
  const none = { idle: 0, active: 0, connecting: 1 };

  it('counts a server as up only when it is in routing and has a ready shared connection', () => {
    expect(isServerUp(server('s', { kind: 'up' }, ready))).toBe(true);
    expect(isServerUp(server('s', { kind: 'up' }, { idle: 0, active: 3, connecting: 0 }))).toBe(true);
    expect(isServerUp(server('s', { kind: 'up' }, none))).toBe(false);
    expect(isServerUp(server('s', { kind: 'starting' }, none))).toBe(false);
    // One connection missed heartbeats; the others still carry the traffic routing sends.
    expect(isServerUp(server('s', { kind: 'failing', failures: 1, lastError: 'x' }, ready))).toBe(true);
    expect(isServerUp(server('s', { kind: 'ejected', until: 1, failures: 3, probes: 0, lastError: 'x' }, ready))).toBe(false);
  });

  it('exports server_up from the same definition', async () => {
    const m = await setup([
      new FakePool('cache', [server('a', { kind: 'up' }, ready), server('b', { kind: 'ejected', until: 1, failures: 3, probes: 0, lastError: 'refused' }, none)]),
    ])();
    expect(valueOf(m, 'poolside_server_up', { server: 'a' })).toBe(1);
    expect(valueOf(m, 'poolside_server_up', { server: 'b' })).toBe(0);
    expect(valueOf(m, 'poolside_server_health', { server: 'b', state: 'ejected' })).toBe(1);
  });

  it('is ready when every pool has an up server, and says which pool is not', () => {
    const good = new FakePool('good', [server('a', { kind: 'ejected', until: 1, failures: 3, probes: 0, lastError: 'refused' }, none), server('b', { kind: 'up' }, ready)]);
    const bad = new FakePool('bad', [server('c', { kind: 'failing', failures: 2, lastError: 'connect ECONNREFUSED' }, none)]);
    expect(readiness([good], false)).toEqual({ ready: true, reasons: [] });
    const result = readiness([good, bad], false);
    expect(result.ready).toBe(false);
    expect(result.reasons).toEqual(['pool bad has no server with a ready connection (c failing: connect ECONNREFUSED)']);
  });

  it('is not ready while a cluster pool has no topology yet', () => {
    const pool = new FakePool('c', [server('seed', { kind: 'up' }, ready)]);
    pool.cluster = { epoch: 0, slotsCovered: 0, redirections: { moved: 0, ask: 0, tryagain: 0, clusterdown: 0 }, refreshes: new Map(), refreshesCoalesced: 0, lastRefreshAt: 0, nodes: [] };
    expect(readiness([pool], false).reasons).toEqual(["pool c has not read the cluster's topology yet (1 of 1 seed nodes with a ready connection)"]);
    pool.cluster = { ...pool.cluster, lastRefreshAt: 1_700_000_000, slotsCovered: 16384 };
    expect(readiness([pool], false)).toEqual({ ready: true, reasons: [] });
  });

  it('is not ready while draining', () => {
    const good = new FakePool('good', [server('b', { kind: 'up' }, ready)]);
    expect(readiness([good], true)).toEqual({ ready: false, reasons: ['poolside is shutting down'] });
  });
});

describe('cluster pools', () => {
  const node = (server: string, role: ClusterNodeView['role'], primary: string | null, slots: [number, number][] = []): ClusterNodeView => ({ server, role, primary, slots });
  function clusterPool(): FakePool & { cluster: ClusterView } {
    const pool = new FakePool('cluster', [server('10.0.0.1:7000'), server('10.0.0.2:7001'), server('10.0.0.3:7002')]);
    const cluster: ClusterView = {
      epoch: 6,
      slotsCovered: 16384,
      redirections: { moved: 3, ask: 1, tryagain: 0, clusterdown: 2 },
      refreshes: new Map([
        ['startup', { success: 1, failure: 0 }],
        ['moved', { success: 2, failure: 1 }],
      ]),
      refreshesCoalesced: 4,
      lastRefreshAt: 1_700_000_000,
      nodes: [
        node('10.0.0.1:7000', 'primary', null, [
          [0, 8191],
          [10000, 10000],
        ]),
        node('10.0.0.2:7001', 'primary', null, [
          [8192, 9999],
          [10001, 16383],
        ]),
        node('10.0.0.3:7002', 'replica', '10.0.0.1:7000'),
      ],
    };
    pool.cluster = cluster;
    return pool as FakePool & { cluster: ClusterView };
  }

  it('exports redirections by kind, refreshes by trigger and result, epoch, coverage and nodes by role', async () => {
    const m = await setup([clusterPool(), new FakePool('plain', [server('s1')])])();
    for (const kind of REDIRECTION_KINDS) expect(find(m, 'poolside_cluster_redirections_total', { pool: 'cluster', kind })).toHaveLength(1);
    expect(valueOf(m, 'poolside_cluster_redirections_total', { pool: 'cluster', kind: 'moved' })).toBe(3);
    expect(valueOf(m, 'poolside_cluster_redirections_total', { pool: 'cluster', kind: 'clusterdown' })).toBe(2);
    expect(valueOf(m, 'poolside_cluster_topology_refreshes_total', { pool: 'cluster', trigger: 'moved', result: 'failure' })).toBe(1);
    expect(valueOf(m, 'poolside_cluster_topology_refreshes_total', { pool: 'cluster', trigger: 'startup', result: 'success' })).toBe(1);
    expect(valueOf(m, 'poolside_cluster_current_epoch', { pool: 'cluster' })).toBe(6);
    expect(valueOf(m, 'poolside_cluster_topology_refreshes_coalesced_total', { pool: 'cluster' })).toBe(4);
    expect(valueOf(m, 'poolside_cluster_slots_covered', { pool: 'cluster' })).toBe(16384);
    expect(valueOf(m, 'poolside_cluster_last_refresh_success_timestamp_seconds', { pool: 'cluster' })).toBe(1_700_000_000);
    expect(valueOf(m, 'poolside_cluster_nodes', { pool: 'cluster', role: 'primary' })).toBe(2);
    expect(valueOf(m, 'poolside_cluster_nodes', { pool: 'cluster', role: 'replica' })).toBe(1);
    expect(find(m, 'poolside_cluster_node_info', { pool: 'cluster' }).map((s) => [s.labels.server, s.labels.role, s.labels.primary])).toEqual([
      ['10.0.0.1:7000', 'primary', ''],
      ['10.0.0.2:7001', 'primary', ''],
      ['10.0.0.3:7002', 'replica', '10.0.0.1:7000'],
    ]);
    expect(valueOf(m, 'poolside_cluster_node_slots', { server: '10.0.0.1:7000' })).toBe(8193);
    expect(valueOf(m, 'poolside_cluster_node_slots', { server: '10.0.0.2:7001' })).toBe(8191);
    expect(valueOf(m, 'poolside_cluster_node_slots', { server: '10.0.0.3:7002' })).toBe(0);
    // A pool that is not a cluster has none of these series.
    for (const sample of m.samples) if (sample.name.startsWith('poolside_cluster_')) expect(sample.labels.pool).toBe('cluster');
    const check = await promtoolCheck(m.text);
    expect(check.output).toBe('');
    expect(check.code).toBe(0);
  });

  it('drops a node\'s series when it leaves the topology, and relabels a node whose role changed', async () => {
    const pool = clusterPool();
    const scrape = setup([pool]);
    expect(find(await scrape(), 'poolside_cluster_node_info')).toHaveLength(3);
    // Failover: the replica is promoted and takes the slots; the old primary is forgotten.
    pool.servers.splice(0, 1);
    pool.cluster.nodes = [node('10.0.0.2:7001', 'primary', null, [[8192, 16383]]), node('10.0.0.3:7002', 'primary', null, [[0, 8191]])];
    const m = await scrape();
    const gone = m.samples.filter((s) => s.labels.server === '10.0.0.1:7000');
    expect(gone).toEqual([]);
    expect(find(m, 'poolside_cluster_node_info').map((s) => [s.labels.server, s.labels.role, s.labels.primary])).toEqual([
      ['10.0.0.2:7001', 'primary', ''],
      ['10.0.0.3:7002', 'primary', ''],
    ]);
    expect(valueOf(m, 'poolside_cluster_nodes', { role: 'replica' })).toBe(0);
    expect(valueOf(m, 'poolside_cluster_node_slots', { server: '10.0.0.3:7002' })).toBe(8192);
  });
});
