/**
 * A scripted Redis Cluster node: a small RESP server on 127.0.0.1 that owns every slot itself
 * (CLUSTER SLOTS; CLUSTER SHARDS is unknown to it, as before Redis 7.0), keeps SET/GET/INCR
 * values, and lets the test's `hook` answer any command first. For what a real cluster cannot be
 * made to do on cue (hostile maps, held replies, redirect loops); a real one is in cluster.ts.
 */
import net from 'node:net';
import type { Pool } from '../../src/pool/pool.js';
import type { Cleanup } from './cleanup.js';
import { SLOTS } from './cluster.js';
import { parseReply } from './resp-client.js';
import type { RespValue } from './resp-client.js';

/** A RESP bulk string. */
export const bulk = (text: string): string => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;

export interface ScriptedNode {
  readonly port: number;
  /** Every command received, in order, as its words joined by spaces. */
  readonly received: string[];
  /**
   * The reply to a command, before the built-in ones (null: the built-in one). A promise holds
   * that reply and the ones behind it on the same connection, as on a real node.
   */
  hook: (args: string[]) => string | Promise<string> | null;
}

/**
 * Starts a scripted node; closed (its connections first) by `cleanup`. `epoch` is what CLUSTER
 * INFO says as cluster_current_epoch.
 */
export async function scriptedClusterNode(cleanup: Cleanup, options: { epoch?: number } = {}): Promise<ScriptedNode> {
  const received: string[] = [];
  let port = 0;
  const node: ScriptedNode = {
    get port() {
      return port;
    },
    received,
    hook: () => null,
  };
  const values = new Map<string, string>();
  const answer = (args: string[]): string | Promise<string> => {
    received.push(args.join(' '));
    const hooked = node.hook(args);
    if (hooked !== null) return hooked;
    const name = args[0].toUpperCase();
    const command = args.map((a) => a.toUpperCase()).slice(0, 2).join(' ');
    if (name === 'SET') {
      values.set(args[1], args[2]);
      return '+OK\r\n';
    }
    if (name === 'GET') return values.has(args[1]) ? bulk(values.get(args[1]) ?? '') : '$-1\r\n';
    if (name === 'INCR') {
      const next = Number(values.get(args[1]) ?? '0') + 1;
      values.set(args[1], String(next));
      return `:${next}\r\n`;
    }
    if (name === 'PING') return '+PONG\r\n';
    if (command === 'CLUSTER SHARDS') return "-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n";
    if (command === 'CLUSTER SLOTS') return `*1\r\n*3\r\n:0\r\n:${SLOTS - 1}\r\n*3\r\n${bulk('127.0.0.1')}:${node.port}\r\n${bulk('f'.repeat(40))}`;
    if (command === 'CLUSTER INFO') return bulk(`cluster_state:ok\r\ncluster_current_epoch:${options.epoch ?? 1}\r\n`);
    return '+OK\r\n';
  };
  const connections = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    // Replies in request order, a held one holding those behind it, as on a real connection.
    let replies = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let at = 0;
      for (let parsed = parseReply(buf, at); parsed !== null; parsed = parseReply(buf, at)) {
        at = parsed.end;
        const reply = answer((parsed.value as RespValue[]).map(String));
        replies = replies.then(async () => {
          socket.write(await reply);
        });
      }
      buf = buf.subarray(at);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('scripted cluster node: no port');
  port = address.port;
  cleanup.add(server, (s) => new Promise((resolve) => s.close(resolve)));
  // Before the server's close (cleanup runs in reverse): poolside's connections to it go first.
  cleanup.defer(() => {
    for (const socket of connections) socket.destroy();
  });
  return node;
}

/** A pool's cluster topology; throws for a pool that has none. */
export function clusterOf(pool: Pool | undefined): NonNullable<Pool['cluster']> {
  if (pool?.cluster == null) throw new Error('not a cluster pool');
  return pool.cluster;
}
