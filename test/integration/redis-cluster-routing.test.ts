/**
 * routing: cluster against a real 3 + 3 Redis Cluster (test/helpers/cluster.ts), one cluster for
 * the file (each test uses its own slots): the topology is discovered from a seed; single-key
 * commands go to the primary that owns their slot; MOVED, ASK and TRYAGAIN are followed; multi-key
 * commands are split per slot and merged in order, or refused CROSSSLOT as Redis refuses them; a
 * burst of MOVEDs makes one refresh.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../src/pool/pool.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS, startCluster } from '../helpers/cluster.js';
import type { RedisCluster } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { RawClient, RespError } from '../helpers/resp-client.js';
import { freePort, waitFor } from '../helpers/servers.js';

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

  it('follows MOVED after a slot was moved by hand: the map changes at once and a refresh follows', async () => {
    const keys = ['{moved}a', '{moved}b', '{moved}c'];
    for (const key of keys) client.send('SET', key, `v-${key}`);
    expect(await client.take(keys.length)).toEqual(['OK', 'OK', 'OK']);
    const slot = await cluster.slotOf(keys[0]);
    const from = await cluster.ownerOfSlot(slot);
    const to = (await cluster.primaries()).find((p) => p !== from);
    if (to === undefined) throw new Error('one primary only');
    const before = pool.cluster?.stats();
    await cluster.migrateSlot(slot, to);
    expect(await cluster.command(from, 'GET', keys[0])).toEqual(new RespError(`MOVED ${slot} ${to.address}`));

    for (const key of keys) client.send('GET', key);
    expect(await client.take(keys.length)).toEqual(keys.map((key) => `v-${key}`));
    // A write too (MOVED means it did not run: even a non-idempotent command is sent again).
    expect(await client.call('INCR', '{moved}n')).toBe(1);
    expect(await cluster.command(to, 'GET', '{moved}n')).toBe('1');
    const after = pool.cluster?.stats();
    // The three GETs were pipelined to the old owner before its first MOVED came back; the INCR went right.
    expect(after?.redirections.moved).toBe((before?.redirections.moved ?? 0) + keys.length);
    expect(pool.cluster?.nodeForSlot(slot)?.config.address.port).toBe(to.port);
    await waitFor(() => (pool.cluster?.stats().refreshes.ok.moved ?? 0) > (before?.refreshes.ok.moved ?? 0), 'the refresh MOVED asked for');
  });

  it('follows ASK during a migration with ASKING + the command on the target, ASKING\'s reply swallowed', async () => {
    const keys = ['{ask}a', '{ask}b', '{ask}c', '{ask}d'];
    for (const key of keys) client.send('SET', key, `v-${key}`);
    expect(await client.take(keys.length)).toEqual(keys.map(() => 'OK'));
    const slot = await cluster.slotOf(keys[0]);
    const from = await cluster.ownerOfSlot(slot);
    const to = (await cluster.primaries()).find((p) => p !== from);
    if (to === undefined) throw new Error('one primary only');
    const asks = pool.cluster?.stats().redirections.ask ?? 0;
    const held = await cluster.migrateSlot(slot, to, { stopAt: 'migrating' });
    expect(Number(await cluster.command(from, 'CLUSTER', 'COUNTKEYSINSLOT', slot))).toBe(2);

    // Pipelined: two keys answered by the source, two after ASK by the target, in the client's order.
    for (const key of keys) client.send('GET', key);
    client.send('SET', '{ask}new', 'fresh');
    client.send('GET', '{ask}new');
    expect(await client.take(keys.length + 2)).toEqual([...keys.map((key) => `v-${key}`), 'OK', 'fresh']);
    expect(await cluster.command(to, 'ASKING')).toBe('OK');
    expect(pool.cluster?.stats().redirections.ask).toBeGreaterThanOrEqual(asks + 2 + 2);
    // The map did not change: ASK is for one command.
    expect(pool.cluster?.nodeForSlot(slot)?.config.address.port).toBe(from.port);

    // TRYAGAIN: a multi-key command on the migrating slot whose keys are split between the nodes is
    // retried with backoff until its deadline (request_timeout), not only max_redirects times, then
    // Redis's error passes.
    const tries = pool.cluster?.stats().redirections.tryagain ?? 0;
    const reply = await client.call('MGET', ...keys);
    expect(reply).toBeInstanceOf(RespError);
    expect((reply as RespError).message).toMatch(/^TRYAGAIN /);
    expect(pool.cluster?.stats().redirections.tryagain).toBeGreaterThan(tries + 1 + pool.config.cluster.maxRedirects);

    await held.finish();
    expect(await client.call('MGET', ...keys)).toEqual(keys.map((key) => `v-${key}`));
  });

  it('splits MGET, MSET, DEL, EXISTS across slots and nodes and merges them in the client\'s key order', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `split:${i}`);
    const slots = new Set(await Promise.all(keys.map((key) => cluster.slotOf(key))));
    expect(slots.size).toBe(keys.length);
    expect(await client.call('MSET', ...keys.flatMap((key) => [key, `v-${key}`]))).toBe('OK');
    for (const key of keys) expect(await cluster.command(await cluster.ownerOfKey(key), 'GET', key)).toBe(`v-${key}`);
    expect(await client.call('MGET', ...keys, 'split:none')).toEqual([...keys.map((key) => `v-${key}`), null]);
    expect(await client.call('EXISTS', ...keys, 'split:none', keys[0])).toBe(keys.length + 1);
    expect(await client.call('DEL', keys[0], keys[1], 'split:none')).toBe(2);
    expect(await client.call('MGET', keys[0], keys[1], keys[2])).toEqual([null, null, `v-${keys[2]}`]);
    // Same slot (a hash tag): one request, not split.
    const splits = pool.counters.fanouts.split;
    expect(await client.call('MSET', '{t}1', 'a', '{t}2', 'b')).toBe('OK');
    expect(await client.call('MGET', '{t}1', '{t}2')).toEqual(['a', 'b']);
    expect(pool.counters.fanouts.split).toBe(splits);
  });

  it('refuses cross-slot commands it cannot split with Redis\'s own CROSSSLOT', async () => {
    const crossslot = new RespError("CROSSSLOT Keys in request don't hash to the same slot");
    expect(await client.call('SUNION', 'cross:a', 'cross:b')).toEqual(crossslot);
    expect(await client.call('RENAME', 'cross:a', 'cross:b')).toEqual(crossslot);
    expect(await client.call('BLPOP', 'cross:a', 'cross:b', '1')).toEqual(crossslot);
    // The same command with its keys in one slot runs.
    expect(await client.call('SADD', '{c}a', 'x')).toBe(1);
    expect(await client.call('SUNION', '{c}a', '{c}b')).toEqual(['x']);
  });

  it('makes one or two refreshes for a burst of MOVEDs for two slots (single flight, a minimum gap)', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? `{burst}${i}` : `{burst2}${i}`));
    for (const tag of ['{burst}', '{burst2}']) {
      const tagged = keys.filter((key) => key.startsWith(tag));
      expect(await client.call('MSET', ...tagged.flatMap((key) => [key, key]))).toBe('OK');
      const slot = await cluster.slotOf(tag);
      const from = await cluster.ownerOfSlot(slot);
      const to = (await cluster.primaries()).find((p) => p !== from);
      if (to === undefined) throw new Error('one primary only');
      await cluster.migrateSlot(slot, to);
    }
    const before = pool.cluster?.stats();
    const clients = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(portOf(proxy))));
    for (const c of clients) cleanup.add(c, (x) => x.destroy());
    // Every GET is written before the first MOVED comes back: all of them go to the old owner.
    for (const c of clients) c.write(Buffer.concat(keys.map((key) => Buffer.from(`*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`))));
    const replies = await Promise.all(clients.map((c) => c.take(keys.length)));
    for (const got of replies) expect(got).toEqual(keys);
    const after = pool.cluster?.stats();
    const moved = (after?.redirections.moved ?? 0) - (before?.redirections.moved ?? 0);
    expect(moved).toBeGreaterThan(2);
    const refreshes = (s: typeof after): number => Object.values(s?.refreshes.ok ?? {}).reduce((a, b) => a + b, 0) + Object.values(s?.refreshes.failed ?? {}).reduce((a, b) => a + b, 0);
    // The first MOVED of each slot asks for one; the second finds it running (joined) or scheduled
    // after the minimum gap: one or two, never one per MOVED.
    await waitFor(() => refreshes(pool.cluster?.stats()) > refreshes(before) && pool.cluster?.stats().refresh === 'idle', 'the refreshes to finish');
    const made = refreshes(pool.cluster?.stats()) - refreshes(before);
    expect(made).toBeGreaterThanOrEqual(1);
    expect(made).toBeLessThanOrEqual(2);
  });

  it('sends keyless commands to a primary', async () => {
    expect(await client.call('PING')).toBe('PONG');
    expect(await client.call('ECHO', 'hi')).toBe('hi');
    // Broadcast (spread: all): every primary, the sizes summed.
    let total = 0;
    for (const primary of await cluster.primaries()) total += Number(await cluster.command(primary, 'DBSIZE'));
    expect(await client.call('DBSIZE')).toBe(total);
  });

  it('pins a blocking pop to its key\'s node', async () => {
    const blocked = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
    blocked.send('BLPOP', 'block:list', '5');
    await waitFor(() => (pool.counters.pins.get('blocking') ?? 0) > 0, 'the BLPOP to pin');
    const owner = await cluster.ownerOfKey('block:list');
    await waitFor(async () => String(await cluster.command(owner, 'CLIENT', 'LIST')).includes('cmd=blpop'), 'the BLPOP to block on its key\'s node');
    expect(await client.call('RPUSH', 'block:list', 'x')).toBe(1);
    expect(await blocked.reply()).toEqual(['block:list', 'x']);
  });

  it('discovers from the next seed when the first does not answer, and refreshes periodically', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const other = cleanup.add(
      await startProxy([dead, cluster.nodes[1].address], { routing: 'cluster', cluster: { refresh_interval: '100ms' }, connect: { backoff: { initial: '10ms', max: '50ms' } } }),
      (p) => p.close(),
    );
    const otherPool = other.pools.get('p');
    await waitFor(() => otherPool?.cluster?.stats().slotsCovered === SLOTS, 'the slot map from the second seed', 10_000);
    const c = cleanup.add(await RawClient.connect(portOf(other)), (x) => x.destroy());
    expect(await c.call('SET', 'seed:k', 'v')).toBe('OK');
    expect(await c.call('GET', 'seed:k')).toBe('v');
    await waitFor(() => (otherPool?.cluster?.stats().refreshes.ok.periodic ?? 0) >= 2, 'periodic refreshes');
    // The dead seed is no node of the cluster: drained and closed once the map was known.
    await waitFor(() => otherPool?.servers.every((s) => s.name !== dead) === true, 'the dead seed to leave');
    expect(otherPool?.servers).toHaveLength(3);
  });

  it('follows a manual failover: the new primary joins, the old one is drained and closed', async () => {
    const key = 'failover:k';
    expect(await client.call('SET', key, 'before')).toBe('OK');
    const old = await cluster.ownerOfKey(key);
    const [replica] = await cluster.replicasOf(old);
    await cluster.manualFailover(replica);
    // The old primary answers MOVED now (it is a replica): followed, and the refresh it asks for
    // replaces it in the node set.
    expect(await client.call('GET', key)).toBe('before');
    expect(await client.call('SET', key, 'after')).toBe('OK');
    await waitFor(
      () => pool.servers.some((s) => s.config.address.port === replica.port) && pool.servers.every((s) => s.config.address.port !== old.port),
      'the old primary to be drained and closed',
      10_000,
    );
    expect(pool.cluster?.stats().nodes).toBe(3);
    expect(await cluster.command(replica, 'GET', key)).toBe('after');
  });

  it('finds a killed primary\'s promoted replica without a MOVED to tell it (refresh on node failure)', async () => {
    const key = 'killed:k';
    expect(await client.call('SET', key, 'kept')).toBe('OK');
    const old = await cluster.ownerOfKey(key);
    const [replica] = await cluster.replicasOf(old);
    const onReplica = cleanup.add(await RawClient.connect(replica.port), (c) => c.destroy());
    expect(await onReplica.call('READONLY')).toBe('OK');
    await waitFor(async () => (await onReplica.call('GET', key)) === 'kept', 'the write to reach the replica');
    const promoted = await cluster.killPrimary(old);
    // Errors are allowed while the node is down (the failover window); then the key is served again.
    const seen: string[] = [];
    await waitFor(
      async () => {
        const reply = await client.call('GET', key);
        if (reply instanceof RespError) seen.push(reply.message);
        return reply === 'kept';
      },
      'the key to be served by the promoted replica',
      15_000,
      50,
    );
    // poolside's own error names the slot and its node: the other shards are fine meanwhile.
    for (const message of seen.filter((m) => m.includes('NO_HEALTHY_SERVER'))) expect(message).toMatch(/hash slot \d+ .*its primary 127\.0\.0\.1:\d+ is out of routing/);
    expect(pool.cluster?.primaries().map((s) => s.config.address.port)).toContain(promoted.port);
    expect(pool.cluster?.stats().refreshes.ok.node_failure).toBeGreaterThan(0);
  }, 30_000);
});
