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
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

type Mode = 'slots-only' | 'broken';

/** A node that owns every slot itself; `mode` says how it answers CLUSTER subcommands. */
async function scriptedNode(): Promise<{ port: number; mode: Mode; asked: string[] }> {
  const state = { port: 0, mode: 'slots-only' as Mode, asked: [] as string[] };
  const bulk = (text: string): string => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  const answer = (args: string[]): string => {
    const command = args.map((a) => a.toUpperCase()).slice(0, 2).join(' ');
    if (command.startsWith('CLUSTER')) state.asked.push(command);
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
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let at = 0;
      for (let parsed = parseReply(buf, at); parsed !== null; parsed = parseReply(buf, at)) {
        at = parsed.end;
        const args = parsed.value as RespValue[];
        socket.write(answer(args.map(String)));
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
