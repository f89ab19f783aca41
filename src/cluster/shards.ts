/**
 * What a node says of the cluster: `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older, and the
 * fallback when SHARDS is an unknown subcommand), read into one shape. Pure: no I/O.
 */
import { RespError, pairs } from './resp-value.js';
import type { RespValue } from './resp-value.js';
import { SLOTS } from './slot.js';

export interface NodeAddress {
  host: string;
  port: number;
  /** The cluster's node id (40 hex), when the reply gave it. */
  id: string | null;
  /**
   * CLUSTER SHARDS's health: `online`, or `loading` (a replica still syncing, or one whose offset
   * the primary has not heard yet: Redis 7.0 reports fresh replicas so); null from CLUSTER SLOTS.
   */
  health: string | null;
}

export interface Shard {
  /** Inclusive ranges [start, end], as the cluster gives them. */
  ranges: [number, number][];
  primary: NodeAddress;
  /** Replicas not flagged failed (read_from decides what `loading` ones are worth). */
  replicas: NodeAddress[];
}

/** `host:port` (IPv6 hosts bracketed): the key of a node in the topology, and its name. */
export function nodeKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function slotNumber(value: RespValue | undefined): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < SLOTS ? value : null;
}

/**
 * CLUSTER SHARDS: per shard `slots` (flat start, end, …) and `nodes` (maps: id, ip, endpoint,
 * hostname, port, tls-port, role, health). A shard without a healthy primary, or without slots,
 * is left out. `tls`: the pool talks TLS to its nodes, so `tls-port` is the port to use.
 */
export function readShards(reply: RespValue, tls: boolean): Shard[] {
  if (!Array.isArray(reply)) throw new Error('CLUSTER SHARDS: expected an array');
  const shards: Shard[] = [];
  for (const entry of reply) {
    const shard = pairs(entry);
    const slots = shard.get('slots');
    const nodes = shard.get('nodes');
    if (!Array.isArray(slots) || !Array.isArray(nodes)) continue;
    const ranges: [number, number][] = [];
    for (let i = 0; i + 1 < slots.length; i += 2) {
      const start = slotNumber(slots[i]);
      const end = slotNumber(slots[i + 1]);
      if (start !== null && end !== null && start <= end) ranges.push([start, end]);
    }
    let primary: NodeAddress | null = null;
    const replicas: NodeAddress[] = [];
    for (const nodeEntry of nodes) {
      const node = pairs(nodeEntry);
      const endpoint = node.get('endpoint');
      const ip = node.get('ip');
      const host = typeof endpoint === 'string' && endpoint !== '' && endpoint !== '?' ? endpoint : typeof ip === 'string' ? ip : null;
      const port = tls && typeof node.get('tls-port') === 'number' ? node.get('tls-port') : node.get('port');
      const id = node.get('id');
      if (host === null || typeof port !== 'number' || port <= 0) continue;
      const health = node.get('health');
      const address: NodeAddress = { host, port, id: typeof id === 'string' ? id : null, health: typeof health === 'string' ? health : null };
      const role = node.get('role');
      if (role === 'master' || role === 'primary') {
        if (health !== 'failed') primary = address;
      } else if (health !== 'failed') {
        replicas.push(address);
      }
    }
    if (primary !== null && ranges.length > 0) shards.push({ ranges, primary, replicas });
  }
  return disjoint(shards, 'CLUSTER SHARDS');
}

/**
 * The shards, if no slot is in two ranges; throws otherwise. A node's view gives each slot one
 * owner, so an overlap is a broken or hostile reply, and applying it would cost a pass over every
 * range (20,000 copies of 0-16383, 0.6 MB, held the event loop ~3 s): refused, the next node is asked.
 */
function disjoint(shards: Shard[], what: string): Shard[] {
  const ranges = shards.flatMap((shard) => shard.ranges).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] <= ranges[i - 1][1]) throw new Error(`${what}: slot ranges overlap (${ranges[i - 1].join('-')} and ${ranges[i].join('-')})`);
  }
  return shards;
}

/** CLUSTER SLOTS: [start, end, [host, port, id, …] primary, [host, port, id, …] replica, …] per range. */
export function readSlots(reply: RespValue): Shard[] {
  if (!Array.isArray(reply)) throw new Error('CLUSTER SLOTS: expected an array');
  const byPrimary = new Map<string, Shard>();
  for (const entry of reply) {
    if (!Array.isArray(entry) || entry.length < 3) continue;
    const start = slotNumber(entry[0]);
    const end = slotNumber(entry[1]);
    if (start === null || end === null || start > end) continue;
    const addresses: NodeAddress[] = [];
    for (let i = 2; i < entry.length; i++) {
      const node = entry[i];
      if (!Array.isArray(node) || typeof node[0] !== 'string' || typeof node[1] !== 'number') continue;
      addresses.push({ host: node[0], port: node[1], id: typeof node[2] === 'string' ? node[2] : null, health: null });
    }
    const [primary, ...replicas] = addresses;
    if (primary === undefined || primary.host === '' || primary.host === '?') continue;
    const key = nodeKey(primary.host, primary.port);
    const shard = byPrimary.get(key);
    if (shard === undefined) byPrimary.set(key, { ranges: [[start, end]], primary, replicas });
    else shard.ranges.push([start, end]);
  }
  return disjoint([...byPrimary.values()], 'CLUSTER SLOTS');
}

/** `cluster_current_epoch` of a CLUSTER INFO reply, or null. */
export function readEpoch(reply: RespValue): number | null {
  if (typeof reply !== 'string') return null;
  const match = /^cluster_current_epoch:(\d+)/m.exec(reply);
  return match === null ? null : Number(match[1]);
}

/** An error reply that says the subcommand does not exist (CLUSTER SHARDS before Redis 7). */
export function isUnknownSubcommand(reply: RespValue): boolean {
  return reply instanceof RespError && /unknown subcommand|unknown command/i.test(reply.message);
}
