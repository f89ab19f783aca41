/**
 * routing: cluster against a real 3 + 3 Redis Cluster (test/helpers/cluster.ts): the topology is
 * discovered from a seed, and single-key commands go to the primary that owns their slot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../src/pool/pool.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS, startCluster } from '../helpers/cluster.js';
import type { RedisCluster } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
let cluster: RedisCluster;
let proxy: Proxy;
let pool: Pool;
let client: RawClient;

beforeAll(async () => {
  cluster = await startCluster(cleanup, { primaries: 3, replicasPerPrimary: 1 });
  // One seed is enough: the rest is discovered.
  proxy = cleanup.add(await startProxy([cluster.nodes[0].address], { routing: 'cluster', cluster: { refresh_interval: '30s' } }), (p) => p.close());
  const found = proxy.pools.get('p');
  if (found?.cluster == null) throw new Error('pool p is not a cluster pool');
  pool = found;
  await waitFor(() => pool.cluster?.stats().slotsCovered === SLOTS, 'the slot map to be discovered', 10_000);
  client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
}, 60_000);
afterAll(() => cleanup.run());

describe('routing: cluster', () => {
  it('discovers the three primaries from one seed, with their replicas', async () => {
    const stats = pool.cluster?.stats();
    expect(stats?.nodes).toBe(3);
    expect(stats?.replicas).toBe(3);
    expect(stats?.epoch).toBeGreaterThan(0);
    const primaries = (await cluster.primaries()).map((p) => p.address).sort();
    expect(pool.cluster?.primaries().map((s) => `${s.config.address.host}:${s.config.address.port}`).sort()).toEqual(primaries);
  });

  it('sends each single-key command to the primary that owns its slot, all three of them', async () => {
    const keys = Array.from({ length: 60 }, (_, i) => `route:${i}`);
    for (const key of keys) client.send('SET', key, `v-${key}`);
    expect(await client.take(keys.length)).toEqual(keys.map(() => 'OK'));
    const owners = new Set<string>();
    for (const key of keys) {
      const owner = await cluster.ownerOfKey(key);
      owners.add(owner.id);
      // On its owner, read directly: no MOVED, the value poolside wrote.
      expect(await cluster.command(owner, 'GET', key)).toBe(`v-${key}`);
    }
    expect(owners.size).toBe(3);
    for (const key of keys) client.send('GET', key);
    expect(await client.take(keys.length)).toEqual(keys.map((key) => `v-${key}`));
    expect(pool.cluster?.stats().redirections.moved).toBe(0);
  });

  it('sends keyless commands to a primary', async () => {
    expect(await client.call('PING')).toBe('PONG');
    expect(await client.call('ECHO', 'hi')).toBe('hi');
  });
});
