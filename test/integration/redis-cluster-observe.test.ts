/**
 * A cluster pool against a real 3 + 3 Redis Cluster, as operators and read_from see it: reads land
 * on replicas and writes on primaries (counted by each node's own INFO commandstats), a killed
 * replica sends its shard's reads back to the primary, and /metrics and /stats show the topology
 * (promtool clean, a gone node's series gone with it).
 */
import YAML from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { SLOTS, startCluster } from '../helpers/cluster.js';
import type { ClusterNode, RedisCluster } from '../helpers/cluster.js';
import { find, promtoolCheck, request, scrape, valueOf } from '../helpers/prometheus.js';
import { portOf, quietLog } from '../helpers/proxy.js';
import type { PoolYaml } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

let cluster: RedisCluster;
const clusterCleanup = new Cleanup();
beforeAll(async () => {
  cluster = await startCluster(clusterCleanup, { primaries: 3, replicasPerPrimary: 1 });
}, 60_000);
afterAll(() => clusterCleanup.run());

/** A proxy with one cluster pool `c` seeded with one node, its admin endpoint on a free port. */
async function startClusterProxy(cluster: RedisCluster, pool: PoolYaml = {}): Promise<Proxy> {
  const doc = {
    admin: { listen: '127.0.0.1:0' },
    pools: { c: { protocol: 'redis', listen: ['127.0.0.1:0'], routing: 'cluster', servers: [cluster.nodes[0].address], ...pool, cluster: { refresh_interval: '300ms', ...(pool.cluster as object | undefined) } } },
  };
  const proxy = cleanup.add(await Proxy.start(parseConfig(YAML.stringify(doc), 'test.yaml'), { log: quietLog() }), (p) => p.close());
  // Every node known in its role, every slot covered, and every node with a ready connection.
  await waitFor(
    () => {
      const stats = proxy.stats()[0];
      const c = stats.cluster;
      return c !== undefined && c.slotsCovered === SLOTS && c.nodes.length === 6 && stats.servers.every((s) => s.connections.idle + s.connections.active > 0);
    },
    'poolside to know the whole cluster',
    20_000,
    20,
  );
  return proxy;
}

/** `calls` of each command in a node's INFO commandstats (lowercase names). */
async function commandCalls(node: ClusterNode): Promise<Record<string, number>> {
  const info = String(await cluster.must(node, 'INFO', 'commandstats'));
  const out: Record<string, number> = {};
  for (const [, name, calls] of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) out[name] = Number(calls);
  return out;
}

async function resetStats(): Promise<void> {
  for (const node of cluster.nodes) if (node.state === 'running') await cluster.must(node, 'CONFIG', 'RESETSTAT');
}

describe('read_from against a real cluster', () => {
  it('replica: reads land on replicas, writes on primaries, connections are READONLY', async () => {
    const proxy = await startClusterProxy(cluster, { cluster: { read_from: 'replica' } });
    const client = await connectRedis(cleanup, portOf(proxy, 'c'), { disableClientInfo: true });
    const keys = Array.from({ length: 30 }, (_, i) => `observe:rw:${i}`);
    await resetStats();
    for (const key of keys) expect(await client.set(key, `v-${key}`)).toBe('OK');
    // Replicas are asynchronous: wait until each has the write, reading through poolside.
    for (const key of keys) await waitFor(async () => (await client.get(key)) === `v-${key}`, `${key} replicated`, 5000, 10);
    await resetStats();
    for (let round = 0; round < 3; round++) {
      for (const key of keys) expect(await client.get(key)).toBe(`v-${key}`);
      expect(await client.mget(...keys.slice(0, 5))).toEqual(keys.slice(0, 5).map((k) => `v-${k}`));
    }
    for (const key of keys) await client.set(key, 'again');

    const primaries = await cluster.primaries();
    let primaryReads = 0;
    let primarySets = 0;
    let replicaReads = 0;
    for (const node of cluster.nodes) {
      const calls = await commandCalls(node);
      if (primaries.includes(node)) {
        primaryReads += (calls.get ?? 0) + (calls.mget ?? 0);
        primarySets += calls.set ?? 0;
      } else {
        replicaReads += (calls.get ?? 0) + (calls.mget ?? 0);
      }
    }
    expect(primaryReads).toBe(0);
    expect(replicaReads).toBeGreaterThanOrEqual(90);
    expect(primarySets).toBe(keys.length);
    // Nothing was sent where it had to be redirected: reads were served READONLY, writes went to the owner.
    const redirections = proxy.stats()[0].cluster?.redirections;
    expect(redirections?.moved).toBe(0);
    // Every replica connection said READONLY before it was used.
    for (const node of cluster.nodes) {
      if (primaries.includes(node)) continue;
      const clients = String(await cluster.must(node, 'CLIENT', 'LIST'));
      const ours = clients.split('\n').filter((line) => line.includes('cmd=') && !line.includes('cmd=client|list') && / flags=[A-Za-z]*r/.test(line));
      expect(ours.length, clients).toBeGreaterThan(0);
    }
  });

  it('replica: a replica that answers MOVED after its slot moved to another shard is followed, and the next reads go to the new shard\'s replica', async () => {
    // No periodic refresh: the map changes only on what the nodes answer.
    const proxy = await startClusterProxy(cluster, { cluster: { read_from: 'replica', refresh_interval: '0s' } });
    const client = await connectRedis(cleanup, portOf(proxy, 'c'), { disableClientInfo: true });
    const key = 'observe:moving';
    await client.set(key, 'before');
    await waitFor(async () => (await client.get(key)) === 'before', `${key} replicated`, 5000, 10);
    const from = await cluster.ownerOfKey(key);
    const to = (await cluster.primaries()).find((p) => p !== from);
    if (to === undefined) throw new Error('one primary only');
    const [toReplica] = await cluster.replicasOf(to);
    const movedBefore = proxy.stats()[0].cluster?.redirections.moved ?? 0;
    await (await cluster.migrateSlot(await cluster.slotOf(key), to)).finish();
    // The old shard's replica (or primary) now answers MOVED for the key; poolside follows it.
    for (let i = 0; i < 10; i++) expect(await client.get(key)).toBe('before');
    expect(proxy.stats()[0].cluster?.redirections.moved ?? 0).toBeGreaterThan(movedBefore);
    await resetStats();
    await waitFor(async () => (await client.get(key)) === 'before' && ((await commandCalls(toReplica)).get ?? 0) > 0, 'reads on the new shard\'s replica', 10_000, 20);
    expect((await commandCalls(to)).get ?? 0).toBe(0);
  });

  it('replica: a killed replica is waited for only until it is out of routing, then its shard\'s reads go to the primary', async () => {
    const proxy = await startClusterProxy(cluster, {
      cluster: { read_from: 'replica' },
      eject: { after_failures: 1 },
      heartbeat: { interval: '200ms', timeout: '100ms', misses: 1 },
    });
    const client = await connectRedis(cleanup, portOf(proxy, 'c'), { disableClientInfo: true });
    const key = 'observe:replica-down';
    await client.set(key, 'y');
    await waitFor(async () => (await client.get(key)) === 'y', `${key} replicated`, 5000, 10);
    const owner = await cluster.ownerOfKey(key);
    const [replica] = await cluster.replicasOf(owner);
    await resetStats();
    await cluster.kill(replica);
    const served = async (): Promise<boolean> => {
      try {
        return (await client.get(key)) === 'y' && ((await commandCalls(owner)).get ?? 0) > 0;
      } catch {
        return false; // POOL_TIMEOUT while the dead replica was still waited for
      }
    };
    await waitFor(served, 'reads served by the primary', 15_000, 20);
    for (let i = 0; i < 20; i++) expect(await client.get(key)).toBe('y');
    await cluster.restart(replica);
  });

  it('primary: every read goes to the primary and no replica connection is opened', async () => {
    const proxy = await startClusterProxy(cluster);
    const client = await connectRedis(cleanup, portOf(proxy, 'c'), { disableClientInfo: true });
    await client.set('observe:p', '1');
    await resetStats();
    for (let i = 0; i < 20; i++) expect(await client.get('observe:p')).toBe('1');
    const owner = await cluster.ownerOfKey('observe:p');
    expect((await commandCalls(owner)).get).toBe(20);
    const primaries = (await cluster.primaries()).map((n) => n.address).sort();
    expect(proxy.stats()[0].servers.map((s) => s.name).sort()).toEqual(primaries);
    // The replicas are still the cluster's nodes in /stats, shown as not connected.
    const stats = JSON.parse((await request(proxy.adminAddress(), '/stats')).body) as { pools: { cluster: { nodes: { server: string; role: string; connected: boolean; health: string | null }[] } }[] };
    const replicas = stats.pools[0].cluster.nodes.filter((n) => n.role === 'replica');
    expect(replicas).toHaveLength(3);
    for (const replica of replicas) expect(replica).toMatchObject({ connected: false, health: null });
  });
});

describe('metrics and /stats of a cluster pool', () => {
  it('export the topology (promtool clean), and a killed replica sends reads to its primary and leaves the series', async () => {
    const proxy = await startClusterProxy(cluster, {
      cluster: { read_from: 'prefer_replica', refresh_interval: '300ms' },
      eject: { after_failures: 1 },
      heartbeat: { interval: '200ms', timeout: '100ms', misses: 1 },
    });
    const client = await connectRedis(cleanup, portOf(proxy, 'c'), { disableClientInfo: true });
    const admin = proxy.adminAddress();
    const key = 'observe:failover';
    await client.set(key, 'x');
    await waitFor(async () => (await client.get(key)) === 'x', `${key} replicated`, 5000, 10);

    const m = await scrape(admin);
    const check = await promtoolCheck(m.text);
    expect(check.output).toBe('');
    expect(valueOf(m, 'poolside_cluster_slots_covered', { pool: 'c' })).toBe(SLOTS);
    expect(valueOf(m, 'poolside_cluster_nodes', { pool: 'c', role: 'primary' })).toBe(3);
    expect(valueOf(m, 'poolside_cluster_nodes', { pool: 'c', role: 'replica' })).toBe(3);
    expect(valueOf(m, 'poolside_cluster_current_epoch', { pool: 'c' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(m, 'poolside_cluster_topology_refreshes_total', { pool: 'c', trigger: 'start', result: 'success' })).toBe(1);
    expect(find(m, 'poolside_cluster_node_info', { pool: 'c' })).toHaveLength(6);
    const slotsByNode = find(m, 'poolside_cluster_node_slots', { pool: 'c' });
    expect(slotsByNode.reduce((n, s) => n + s.value, 0)).toBe(SLOTS);
    expect(find(m, 'poolside_server_up', { pool: 'c' }).map((s) => s.value)).toEqual([1, 1, 1, 1, 1, 1]);

    const stats = JSON.parse((await request(admin, '/stats')).body) as { pools: { cluster: { slotsCovered: number; nodes: { server: string; role: string; primary: string | null; slots: string[]; up: boolean }[] } }[] };
    const section = stats.pools[0].cluster;
    expect(section.slotsCovered).toBe(SLOTS);
    const owner = await cluster.ownerOfKey(key);
    const [replica] = await cluster.replicasOf(owner);
    expect(section.nodes.find((n) => n.server === replica.address)).toMatchObject({ role: 'replica', primary: owner.address, slots: [], up: true });
    expect(section.nodes.find((n) => n.server === owner.address)?.slots.length).toBeGreaterThan(0);

    // The shard's replica dies: its reads go to the primary, and once the cluster stops naming
    // it, poolside drains it and its series leave the exposition.
    await resetStats();
    await cluster.kill(replica);
    await waitFor(async () => (await client.get(key)) === 'x' && ((await commandCalls(owner)).get ?? 0) > 0, 'reads served by the primary', 10_000, 20);
    for (let i = 0; i < 20; i++) expect(await client.get(key)).toBe('x');
    await waitFor(
      async () => (await scrape(admin)).samples.every((s) => s.labels.server !== replica.address),
      `${replica.address}'s series gone`,
      20_000,
      100,
    );
    const after = await scrape(admin);
    expect(valueOf(after, 'poolside_cluster_nodes', { pool: 'c', role: 'replica' })).toBe(2);
    expect((await promtoolCheck(after.text)).code).toBe(0);
    await cluster.restart(replica);
  });
});
