/**
 * The cluster topology's refresh against a scripted cluster node (a small RESP server in the test
 * that says what the test wants: CLUSTER SLOTS only, errors, a map): the CLUSTER SLOTS fallback,
 * a failed refresh that keeps the old map and is retried with backoff, and a seed that is no
 * cluster node at all. What a real cluster does is in redis-cluster-routing.test.ts.
 */
import { afterEach, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { RawClient, RespError } from '../helpers/resp-client.js';
import { bulk, clusterOf, scriptedClusterNode } from '../helpers/scripted-cluster-node.js';
import type { ScriptedNode } from '../helpers/scripted-cluster-node.js';
import { freePort, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * This file's answers on top of the scripted node's: GET k is "from-scripted", and GET loop a
 * MOVED to the node itself (a node that keeps redirecting to itself: only the hop limit ends it).
 */
function fixedAnswer(node: ScriptedNode, args: string[]): string | null {
  const command = args.map((a) => a.toUpperCase()).slice(0, 2).join(' ');
  if (command === 'GET K') return bulk('from-scripted');
  if (command === 'GET LOOP') return `-MOVED 1234 127.0.0.1:${node.port}\r\n`;
  return null;
}

/** The CLUSTER subcommands the node was asked, in order. */
const asked = (node: ScriptedNode): string[] =>
  node.received.filter((c) => /^CLUSTER /i.test(c)).map((c) => c.split(' ').slice(0, 2).join(' ').toUpperCase());

/** The SETs and GETs of `key` the node received, in order, as `SET key`. */
const keyed = (node: ScriptedNode, key: string): string[] =>
  node.received
    .map((c) => c.split(' '))
    .filter((words) => /^(SET|GET)$/i.test(words[0]) && words[1] === key)
    .map((words) => `${words[0].toUpperCase()} ${key}`);

it('falls back to CLUSTER SLOTS, keeps the last map when a refresh fails, and retries with backoff', async () => {
  const node = await scriptedClusterNode(cleanup, { epoch: 7 });
  let broken = false;
  node.hook = (args) => (broken && args[0].toUpperCase() === 'CLUSTER' ? '-ERR scripted failure\r\n' : fixedAnswer(node, args));
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${node.port}`], {
      routing: 'cluster',
      cluster: { refresh_interval: 0 },
      connect: { backoff: { initial: '20ms', max: '40ms' } },
    }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map from CLUSTER SLOTS');
  expect(asked(node).slice(0, 3)).toEqual(['CLUSTER SHARDS', 'CLUSTER INFO', 'CLUSTER SLOTS']);
  expect(topology.stats()).toMatchObject({ epoch: 7, nodes: 1, refreshes: { ok: { start: 1 } } });
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  expect(await client.call('GET', 'k')).toBe('from-scripted');

  broken = true;
  topology.refresh('periodic');
  await waitFor(() => topology.stats().refreshes.failed.retry >= 2, 'failed retries');
  const failing = topology.stats();
  expect(failing.refreshes.failed.periodic).toBe(1);
  // The old map is kept: requests still go where it says.
  expect(failing.slotsCovered).toBe(SLOTS);
  expect(await client.call('GET', 'k')).toBe('from-scripted');

  broken = false;
  await waitFor(() => topology.stats().refreshes.ok.retry === 1 && topology.stats().refresh === 'idle', 'a retry that succeeds');
  // Back to idle: no more retries once one succeeded.
  const retries = topology.stats().refreshes.failed.retry;
  topology.refresh('moved');
  await waitFor(() => topology.stats().refreshes.ok.moved === 1 && topology.stats().refresh === 'idle', 'the next refresh');
  expect(topology.stats().refreshes.failed.retry).toBe(retries);
});

it('counts a refresh as failed while no node can be reached (seeds refusing), so an alert on failed refreshes fires', async () => {
  const dead = await freePort();
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${dead}`], { routing: 'cluster', cluster: { refresh_interval: '50ms' }, connect: { backoff: { initial: '20ms', max: '40ms' } } }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().refreshes.failed.periodic >= 2, 'failed periodic refreshes counted');
  expect(topology.stats().slotsCovered).toBe(0);
  expect(topology.stats().refresh).toBe('waiting');
});

it('passes the last MOVED to the client after cluster.max_redirects hops', async () => {
  const node = await scriptedClusterNode(cleanup);
  node.hook = (args) => fixedAnswer(node, args);
  const proxy = cleanup.add(await startProxy([`127.0.0.1:${node.port}`], { routing: 'cluster', cluster: { max_redirects: 3 } }), (p) => p.close());
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  expect(await client.call('GET', 'loop')).toEqual(new RespError(`MOVED 1234 127.0.0.1:${node.port}`));
  // The first answer and three hops: four MOVEDs, none of them news to the map.
  expect(topology.stats().redirections.moved).toBe(4);
  expect(topology.stats().refreshes.ok.moved).toBe(0);
  expect(await client.call('GET', 'k')).toBe('from-scripted');
});

it('holds a request routed by a changed slot map until the requests routed by the old one are answered', async () => {
  const a = await scriptedClusterNode(cleanup);
  const b = await scriptedClusterNode(cleanup);
  let release: (reply: string) => void = () => {};
  const held = new Promise<string>((resolve) => {
    release = resolve;
  });
  // A holds its answer to the SET; it will say MOVED to B.
  a.hook = (args) => (args[0].toUpperCase() === 'SET' ? held : null);
  const proxy = cleanup.add(await startProxy([`127.0.0.1:${a.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 } }), (p) => p.close());
  const pool = proxy.pools.get('p');
  const topology = clusterOf(pool);
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  client.send('SET', 'x', 'v');
  await waitFor(() => keyed(a, 'x').includes('SET x'), 'the SET on A');
  // Another client's MOVED (as the topology hears it) moves x's slot to B while the SET is out.
  const slot = 16287; // CLUSTER KEYSLOT x
  topology.moved(slot, '127.0.0.1', b.port);
  client.send('GET', 'x');
  // The GET waits (it would reach B before the SET it follows), rather than go by the new map now.
  await waitFor(() => pool?.waitingRequests === 1, 'the GET to be held');
  expect(keyed(b, 'x')).toEqual([]);
  release(`-MOVED ${slot} 127.0.0.1:${b.port}\r\n`);
  expect(await client.take(2)).toEqual(['OK', 'v']);
  expect(keyed(b, 'x')).toEqual(['SET x', 'GET x']);
});

