/**
 * The Redis Cluster harness itself (test/helpers/cluster.ts), directly against the nodes with no
 * poolside in between: a 3 + 3 cluster starts and agrees, a slot held mid-migration answers ASK
 * for a moved key and serves the others, finishing it moves the slot, and a manual failover swaps
 * the roles everywhere, redis-cli reshard moves slots, and a killed or frozen primary is replaced by
 * its replica. How long start and failover took is printed for the record.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS, keySlot, startCluster, tagForSlot } from '../helpers/cluster.js';
import { RespError } from '../helpers/resp-client.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const measured: Record<string, string> = {};
afterAll(() => {
  console.log(`cluster harness times:\n${Object.entries(measured).map(([k, v]) => `  ${k}: ${v}`).join('\n')}`);
});

it('starts 3 primaries with a replica each, migrates a slot by hand (ASK while held), and fails over', async () => {
  let t = performance.now();
  const cluster = await startCluster(cleanup, { primaries: 3, replicasPerPrimary: 1 });
  measured['start (6 nodes, create, stable)'] = `${(performance.now() - t).toFixed(0)}ms`;

  const primaries = await cluster.primaries();
  expect(primaries).toHaveLength(3);
  expect(new Set(primaries.map((p) => p.id)).size).toBe(3);
  let slots = 0;
  for (const primary of primaries) {
    expect(await cluster.replicasOf(primary)).toHaveLength(1);
    slots += (await cluster.slotsOf(primary)).length;
  }
  expect(slots).toBe(SLOTS);

  // The harness's own key → slot function agrees with the server's, hash tags included.
  const samples = ['', 'a', 'user:1000', '{user1000}.following', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', '{}x', 'ü', `{${tagForSlot(12345)}}k`];
  for (const key of samples) expect(keySlot(key), key).toBe(await cluster.slotOf(key));
  expect(keySlot(`{${tagForSlot(12345)}}k`)).toBe(12345);

  // Three keys in one slot (a hash tag), written on their owner.
  const keys = ['{h}a', '{h}b', '{h}c'];
  const slot = await cluster.slotOf(keys[0]);
  const from = await cluster.ownerOfKey(keys[0]);
  for (const key of keys) expect(await cluster.command(from, 'SET', key, `v-${key}`)).toBe('OK');
  const other = primaries.find((p) => p !== from);
  if (other === undefined) throw new Error('one primary only');
  const wrongNode = await cluster.command(other, 'GET', keys[0]);
  expect(wrongNode).toEqual(new RespError(`MOVED ${slot} ${from.address}`));

  // Held mid-migration: one of three keys moved (half, rounded down).
  const held = await cluster.migrateSlot(slot, other, { stopAt: 'migrating' });
  const left = Number(await cluster.command(from, 'CLUSTER', 'COUNTKEYSINSLOT', slot));
  expect(left).toBe(2);
  const answers = await Promise.all(keys.map((key) => cluster.command(from, 'GET', key)));
  const asked = answers.filter((a) => a instanceof RespError);
  expect(asked).toEqual([new RespError(`ASK ${slot} ${other.address}`)]);
  const movedKey = keys[answers.findIndex((a) => a instanceof RespError)];
  // The target answers for it only after ASKING, on the same connection (here: MOVED back without).
  expect(await cluster.command(other, 'GET', movedKey)).toEqual(new RespError(`MOVED ${slot} ${from.address}`));
  expect(await cluster.command(from, 'GET', 'new{h}')).toEqual(new RespError(`ASK ${slot} ${other.address}`));
  await held.finish();
  expect(await cluster.ownerOfSlot(slot)).toBe(other);
  for (const key of keys) expect(await cluster.command(other, 'GET', key)).toBe(`v-${key}`);
  expect(await cluster.command(from, 'GET', keys[0])).toEqual(new RespError(`MOVED ${slot} ${other.address}`));

  // A manual failover of the slot's new owner.
  const [replica] = await cluster.replicasOf(other);
  t = performance.now();
  await cluster.manualFailover(replica);
  measured['manual failover (agreed everywhere)'] = `${(performance.now() - t).toFixed(0)}ms`;
  expect(await cluster.roleOf(replica)).toBe('primary');
  expect(await cluster.roleOf(other)).toBe('replica');
  expect(await cluster.ownerOfSlot(slot)).toBe(replica);
  expect(await cluster.command(replica, 'GET', keys[1])).toBe(`v-${keys[1]}`);

  // redis-cli --cluster reshard moves 10 slots, keys and all.
  const third = primaries.find((p) => p !== from && p !== other);
  if (third === undefined) throw new Error('two primaries only');
  t = performance.now();
  const moved = await cluster.reshard(10, replica, third);
  measured['redis-cli reshard of 10 slots'] = `${(performance.now() - t).toFixed(0)}ms`;
  expect(moved).toHaveLength(10);
  for (const s of moved) expect(await cluster.ownerOfSlot(s)).toBe(third);
});

it('promotes a replica when a primary is killed, and the restarted node rejoins as its replica', async () => {
  const cluster = await startCluster(cleanup, { primaries: 3, replicasPerPrimary: 1 });
  const victim = await cluster.ownerOfKey('k');
  const [replica] = await cluster.replicasOf(victim);
  // No check here that a write survives the failover: that is Redis's asynchronous replication,
  // not the harness. (A SET acknowledged with WAIT 1 before the kill read back missing on the
  // promoted replica once, in a full suite run at load 12; cause not found — a false failover of
  // the starved primary under the 1s node timeout would explain it.)

  let t = performance.now();
  const promoted = await cluster.killPrimary(victim);
  measured['killed primary -> promotion, cluster_state:ok'] = `${(performance.now() - t).toFixed(0)}ms`;
  expect(promoted).toBe(replica);
  expect(await cluster.ownerOfKey('k')).toBe(promoted);
  expect(await cluster.command(promoted, 'SET', 'k', 'after')).toBe('OK');

  t = performance.now();
  await cluster.restart(victim);
  measured['restart of the killed node -> replica, stable'] = `${(performance.now() - t).toFixed(0)}ms`;
  expect(await cluster.roleOf(victim)).toBe('replica');
  expect(await cluster.replicasOf(promoted)).toEqual([victim]);

  // A frozen primary is failed over like a dead one; resumed, it finds itself a replica.
  t = performance.now();
  await cluster.pause(promoted);
  expect(await cluster.waitPromotion(promoted)).toBe(victim);
  measured['frozen primary -> promotion, cluster_state:ok'] = `${(performance.now() - t).toFixed(0)}ms`;
  cluster.resume(promoted);
  await cluster.waitStable();
  expect(await cluster.roleOf(promoted)).toBe('replica');
  expect(await cluster.ownerOfKey('k')).toBe(victim);
});
