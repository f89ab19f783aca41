/**
 * The cluster topology's refresh against a scripted cluster node (a small RESP server in the test
 * that says what the test wants: CLUSTER SLOTS only, errors, a map): the CLUSTER SLOTS fallback,
 * a failed refresh that keeps the old map and is retried with backoff, and a seed that is no
 * cluster node at all. What a real cluster does is in redis-cluster-routing.test.ts.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { Pool } from '../../src/pool/pool.js';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { RawClient, RespError, parseReply } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { freePort, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

type Mode = 'slots-only' | 'broken';

const bulk = (text: string): string => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;

interface ScriptedNode {
  port: number;
  mode: Mode;
  /** CLUSTER subcommands asked, in order. */
  asked: string[];
  /** Key commands (SET/GET) received, in order, as `SET k`. */
  keyed: string[];
  /** The reply to a command, before the built-in ones (null: the built-in one); a promise holds it, and the replies behind it. */
  hook: (args: string[]) => string | Promise<string> | null;
}

/** A node that owns every slot itself; `mode` says how it answers CLUSTER subcommands. */
async function scriptedNode(): Promise<ScriptedNode> {
  const state: ScriptedNode = { port: 0, mode: 'slots-only', asked: [], keyed: [], hook: () => null };
  const values = new Map<string, string>();
  const answer = (args: string[]): string | Promise<string> => {
    const command = args.map((a) => a.toUpperCase()).slice(0, 2).join(' ');
    if (command.startsWith('CLUSTER')) state.asked.push(command);
    if (args[0].toUpperCase() === 'SET' || (args[0].toUpperCase() === 'GET' && args[1] !== 'k' && args[1] !== 'loop')) {
      state.keyed.push(`${args[0].toUpperCase()} ${args[1]}`);
    }
    const hooked = state.hook(args);
    if (hooked !== null) return hooked;
    if (args[0].toUpperCase() === 'SET') {
      values.set(args[1], args[2]);
      return '+OK\r\n';
    }
    if (args[0].toUpperCase() === 'GET' && values.has(args[1])) return bulk(values.get(args[1]) ?? '');
    if (command === 'PING') return '+PONG\r\n';
    if (command === 'GET K') return bulk('from-scripted');
    // A node that keeps redirecting to itself: only the hop limit ends it.
    if (command === 'GET LOOP') return `-MOVED 1234 127.0.0.1:${state.port}\r\n`;
    if (command.startsWith('CLUSTER') && state.mode === 'broken') return '-ERR scripted failure\r\n';
    if (command === 'CLUSTER SHARDS') return "-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n";
    if (command === 'CLUSTER SLOTS') return `*1\r\n*3\r\n:0\r\n:${SLOTS - 1}\r\n*3\r\n${bulk('127.0.0.1')}:${state.port}\r\n${bulk('f'.repeat(40))}`;
    if (command === 'CLUSTER INFO') return bulk('cluster_state:ok\r\ncluster_current_epoch:7\r\n');
    return '+OK\r\n';
  };
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    // Replies in request order, a held one holding those behind it, as on a real connection.
    let replies = Promise.resolve();
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let at = 0;
      for (let parsed = parseReply(buf, at); parsed !== null; parsed = parseReply(buf, at)) {
        at = parsed.end;
        const args = parsed.value as RespValue[];
        const reply = answer(args.map(String));
        replies = replies.then(async () => {
          socket.write(await reply);
        });
      }
      buf = buf.subarray(at);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  state.port = address.port;
  const connections = new Set<net.Socket>();
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  cleanup.add(server, (s) => new Promise((resolve) => s.close(resolve)));
  // Before the server's close (cleanup runs in reverse): poolside's connections to it go first.
  cleanup.defer(() => {
    for (const socket of connections) socket.destroy();
  });
  return state;
}

function clusterOf(pool: Pool | undefined): NonNullable<Pool['cluster']> {
  if (pool?.cluster == null) throw new Error('not a cluster pool');
  return pool.cluster;
}

it('falls back to CLUSTER SLOTS, keeps the last map when a refresh fails, and retries with backoff', async () => {
  const node = await scriptedNode();
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
  expect(node.asked.slice(0, 3)).toEqual(['CLUSTER SHARDS', 'CLUSTER INFO', 'CLUSTER SLOTS']);
  expect(topology.stats()).toMatchObject({ epoch: 7, nodes: 1, refreshes: { ok: { start: 1 } } });
  const client = cleanup.add(await RawClient.connect(portOf(proxy)), (c) => c.destroy());
  expect(await client.call('GET', 'k')).toBe('from-scripted');

  node.mode = 'broken';
  topology.refresh('periodic');
  await waitFor(() => topology.stats().refreshes.failed.retry >= 2, 'failed retries');
  const failing = topology.stats();
  expect(failing.refreshes.failed.periodic).toBe(1);
  // The old map is kept: requests still go where it says.
  expect(failing.slotsCovered).toBe(SLOTS);
  expect(await client.call('GET', 'k')).toBe('from-scripted');

  node.mode = 'slots-only';
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
  const node = await scriptedNode();
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
  const a = await scriptedNode();
  const b = await scriptedNode();
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
  await waitFor(() => a.keyed.includes('SET x'), 'the SET on A');
  // Another client's MOVED (as the topology hears it) moves x's slot to B while the SET is out.
  const slot = 16287; // CLUSTER KEYSLOT x
  topology.moved(slot, '127.0.0.1', b.port);
  client.send('GET', 'x');
  // The GET waits (it would reach B before the SET it follows), rather than go by the new map now.
  await waitFor(() => pool?.waitingRequests === 1, 'the GET to be held');
  expect(b.keyed).toEqual([]);
  release(`-MOVED ${slot} 127.0.0.1:${b.port}\r\n`);
  expect(await client.take(2)).toEqual(['OK', 'v']);
  expect(b.keyed).toEqual(['SET x', 'GET x']);
});

