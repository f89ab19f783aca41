/**
 * Attacks on the cluster redirection path from a cold review, against scripted cluster nodes (a
 * small RESP server that owns every slot and answers what the test says): redirected requests of
 * one client keep their order, hostile redirections end cleanly.
 */
import { afterEach, expect, it } from 'vitest';
import { MAX_UNMAPPED_NODES } from '../../src/cluster/topology.js';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS, tagForSlot } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/resp-client.js';
import { bulk, clusterOf, scriptedClusterNode } from '../helpers/scripted-cluster-node.js';
import { freePort, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const scriptedNode = () => scriptedClusterNode(cleanup);

it('never retries a pipelined client\'s CLUSTERDOWN-refused write after its later one: the first gets the node\'s error, the last is retried', async () => {
  const node = await scriptedNode();
  // The first three SETs the node sees are refused: both pipelined SETs, then the first one's retry.
  let refused = 0;
  node.hook = (args) => (args[0] === 'SET' && refused++ < 3 ? '-CLUSTERDOWN The cluster is down\r\n' : null);
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${node.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, request_timeout: '5s' }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  client.send('SET', 'k', '1');
  client.send('SET', 'k', '2');
  // SET k 2 was on the wire when SET k 1 was refused: a retry of SET k 1 could run after it (had
  // the node accepted it), so SET k 1 gets the node's CLUSTERDOWN, as from the node itself; SET
  // k 2, the last the client sent, is retried until the node takes it.
  const [first, second] = await client.take(2);
  expect(String((first as { message?: string }).message)).toMatch(/^CLUSTERDOWN /);
  expect(second).toBe('OK');
  expect(node.received.filter((c) => c.startsWith('SET'))).toEqual(['SET k 1', 'SET k 2', 'SET k 2', 'SET k 2']);
  expect(await client.call('GET', 'k')).toBe('2');
});

it('refuses a slot map whose ranges overlap (a hostile reply must not freeze the proxy assigning the same slots again and again)', async () => {
  const node = await scriptedNode();
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${node.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, connect: { backoff: { initial: '1s', max: '1s' } } }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  // 20,000 copies of [0, 16383] (0.6 MB): 330 million slot assignments if each is applied.
  const entry = `*3\r\n:0\r\n:${SLOTS - 1}\r\n*2\r\n${bulk('127.0.0.1')}:${node.port}\r\n`;
  const huge = `*20000\r\n${entry.repeat(20000)}`;
  node.hook = (args) => (args[0].toUpperCase() === 'CLUSTER' && args[1].toUpperCase() === 'SLOTS' ? huge : null);
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  const failedBefore = topology.stats().refreshes.failed.periodic;
  topology.refresh('periodic');
  await waitFor(() => topology.stats().refreshes.failed.periodic === failedBefore + 1, 'the overlapping map refused');
  expect(topology.stats().slotsCovered).toBe(SLOTS);
  expect(await client.call('SET', 'a', '1')).toBe('OK');
});

it('opens at most MAX_UNMAPPED_NODES nodes for redirect targets the map does not name, however many addresses a node sends requests to', async () => {
  const node = await scriptedNode();
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${node.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, request_timeout: '300ms' }),
    (p) => p.close(),
  );
  const pool = proxy.pools.get('p');
  const topology = clusterOf(pool);
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  // Every GET is sent to another address (nothing listens there): a broken or hostile node. Its
  // map cannot be read meanwhile, so no refresh drains the nodes opened for them.
  let next = 0;
  let mapBroken = true;
  node.hook = (args) => {
    if (args[0] === 'GET') return `-MOVED 5 127.0.0.1:${20000 + next++}\r\n`;
    return mapBroken && args[0].toUpperCase() === 'CLUSTER' ? '-ERR scripted failure\r\n' : null;
  };
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  for (let i = 0; i < 300; i++) client.send('GET', `g${i}`);
  const replies = await client.take(300, 20_000);
  // Each is an error: the MOVED itself (no node opened for it) or no connection to the node it named.
  for (const reply of replies) expect(String((reply as { message?: string }).message)).toMatch(/^(MOVED 5 127\.0\.0\.1:\d+|ERR poolside NO_HEALTHY_SERVER)/);
  expect(topology.stats().redirections.moved).toBe(300);
  // The node itself, plus the capped redirect targets.
  expect(pool?.servers.length).toBe(1 + MAX_UNMAPPED_NODES);
  mapBroken = false;
  expect(await client.call('SET', 'a', '1')).toBe('OK');
  await waitFor(() => pool?.servers.length === 1, 'the redirect targets closed once the map is read again');
});

it('does not retry a pipelined MGET refused TRYAGAIN after the SET sent behind it (the retry would read it); alone it is retried', async () => {
  // The harness's resharding case (h/harness d589ee1), scripted: {t} is MIGRATING from A to B; MGET {t}a {t}b is
  // refused TRYAGAIN on A (its keys are split), the SET {t}b behind it in the same write gets ASK to B.
  // A guard for the redirect queue's order: this scripted form did not fail on h/core either.
  const a = await scriptedNode();
  const b = await scriptedNode();
  const order: string[] = [];
  let mgets = 0;
  a.hook = (args) => {
    const name = args[0].toUpperCase();
    if (name === 'MGET') {
      order.push('MGET on A');
      return mgets++ === 0 ? '-TRYAGAIN Multiple keys request during rehashing of slot\r\n' : '*2\r\n$-1\r\n$-1\r\n';
    }
    if (name === 'SET') return `-ASK 5 127.0.0.1:${b.port}\r\n`;
    return null;
  };
  b.hook = (args) => {
    if (args[0].toUpperCase() === 'SET') order.push('SET on B');
    return null;
  };
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${a.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, request_timeout: '5s' }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  // B has a ready connection before the test: the SET could follow its ASK at once.
  topology.nodeAt('127.0.0.1', b.port);
  await waitFor(() => proxy.pools.get('p')?.server(`127.0.0.1:${b.port}`)?.usable === true, 'a connection to B');
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  client.send('MGET', '{t}a', '{t}b');
  client.send('SET', '{t}b', 'new');
  // The SET was sent after the MGET: the MGET is not retried (its retry would read the SET's
  // value), it gets the node's TRYAGAIN; the SET follows its ASK.
  const [mget, set] = await client.take(2);
  expect(String((mget as { message?: string }).message)).toMatch(/^TRYAGAIN /);
  expect(set).toBe('OK');
  expect(order).toEqual(['MGET on A', 'SET on B']);
  // Sent alone, a TRYAGAIN is retried within the deadline.
  mgets = 0;
  expect(await client.call('MGET', '{t}a', '{t}b')).toEqual([null, null]);
});

it('holds a pipelined request waiting for another node\'s connection behind an earlier request backing off after CLUSTERDOWN', async () => {
  // A owns 8192-16383; B (0-8191) is an address nothing listens on. GET a (A) is refused
  // CLUSTERDOWN until A has seen a SET; GET b waits for B's connection; SET a is behind it. When B
  // is given up, the SET must still not run before GET a's retries end: a retry would read it.
  const a = await scriptedClusterNode(cleanup);
  const deadB = await freePort();
  const half = SLOTS / 2;
  let setSeen = false;
  a.hook = (args) => {
    const name = args.map((x) => x.toUpperCase()).slice(0, 2).join(' ');
    if (name === 'CLUSTER SLOTS') {
      return `*2\r\n*3\r\n:0\r\n:${half - 1}\r\n*3\r\n${bulk('127.0.0.1')}:${deadB}\r\n${bulk('b'.repeat(40))}*3\r\n:${half}\r\n:${SLOTS - 1}\r\n*3\r\n${bulk('127.0.0.1')}:${a.port}\r\n${bulk('a'.repeat(40))}`;
    }
    if (args[0] === 'SET') setSeen = true;
    if (args[0] === 'GET' && !setSeen) return '-CLUSTERDOWN The cluster is down\r\n';
    return null;
  };
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${a.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, request_timeout: '1s', connect: { backoff: { initial: '300ms', max: '300ms' } } }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  const keyA = `{${tagForSlot(half + 100)}}k`;
  const keyB = `{${tagForSlot(100)}}k`;
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  client.send('GET', keyA);
  client.send('GET', keyB);
  client.send('SET', keyA, 'new');
  const [getA, getB, set] = await client.take(3, 10_000);
  // GET a never saw the later SET: its retries ran out (CLUSTERDOWN) before the SET was sent.
  expect(String((getA as { message?: string }).message)).toMatch(/^CLUSTERDOWN /);
  expect(String((getB as { message?: string }).message)).toMatch(/NO_HEALTHY_SERVER|POOL_TIMEOUT/);
  expect(set).toBe('OK');
  const commands = a.received.filter((c) => c.startsWith('GET') || c.startsWith('SET'));
  expect(commands.at(-1)).toBe(`SET ${keyA} new`);
});

it('retries a split MGET\'s part refused TRYAGAIN after its sibling\'s retry went out: the sibling is the same client request, not a later one', async () => {
  const node = await scriptedClusterNode(cleanup);
  let mgets = 0;
  node.hook = (args) => {
    if (args[0].toUpperCase() !== 'MGET') return null;
    mgets++;
    if (mgets === 1) return '-TRYAGAIN Multiple keys request during rehashing of slot\r\n';
    // The second part's refusal comes late: its sibling's retry (10 ms backoff) is out by then.
    if (mgets === 2) return new Promise((resolve) => setTimeout(() => resolve('-TRYAGAIN Multiple keys request during rehashing of slot\r\n'), 60));
    return '*1\r\n$-1\r\n';
  };
  const proxy = cleanup.add(
    await startProxy([`127.0.0.1:${node.port}`], { routing: 'cluster', cluster: { refresh_interval: 0 }, request_timeout: '5s' }),
    (p) => p.close(),
  );
  const topology = clusterOf(proxy.pools.get('p'));
  await waitFor(() => topology.stats().slotsCovered === SLOTS, 'the map');
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  // Two keys in different slots: split in two parts, both to the one node.
  expect(await client.call('MGET', `{${tagForSlot(1)}}a`, `{${tagForSlot(2)}}b`)).toEqual([null, null]);
  expect(mgets).toBe(4);
});
