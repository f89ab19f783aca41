/**
 * The replicas of a cluster pool's shards as nodes reads may go to (`cluster.read_from`): one
 * ServerPool per replica, created when the slot map names it and drained when it stops naming it,
 * and the choice of replica for a read. The topology (topology.ts) owns the node set and calls this
 * from its map updates; with `read_from: primary` nothing is created and every read goes to the
 * primary.
 *
 *   replica         a replica of the shard that is in routing (not ejected), even one still
 *                   connecting or failing: the read waits for it; the primary only when the shard
 *                   has no replica in routing. A replica the cluster calls `loading` (syncing)
 *                   counts only once it has a ready connection: one still loading its dataset
 *                   answers -LOADING and would make reads wait for nothing.
 *   prefer_replica  a replica of the shard with a ready connection now, else the primary: a read
 *                   never waits for a replica.
 *
 * Replicas of a shard take turns (round robin). Nothing is allocated per read.
 */
import type { ReadFrom } from '../config/schema.js';
import type { ServerPool } from '../pool/server-pool.js';
import type { NodeAddress } from './shards.js';
import { nodeKey } from './shards.js';

/** One shard of the new map as the replicas see it: its primary's node and its replicas' addresses. */
export interface ShardReplicas {
  primary: ServerPool;
  replicas: readonly NodeAddress[];
}

export class ReplicaReads {
  readonly #mode: ReadFrom;
  /** Replica nodes by `host:port`. */
  #byKey = new Map<string, ServerPool>();
  /** Each primary's replica nodes, in the map's order. */
  #of = new Map<ServerPool, readonly ServerPool[]>();
  /** Replicas CLUSTER SHARDS called `loading` in the last map. */
  #loading = new Set<ServerPool>();
  #turn = 0;

  constructor(mode: ReadFrom) {
    this.#mode = mode;
  }

  /** Whether reads may go to replicas at all (read_from is not primary). */
  get enabled(): boolean {
    return this.#mode !== 'primary';
  }

  /** The replica node at `key` (`host:port`), if there is one. */
  find(key: string): ServerPool | undefined {
    return this.#byKey.get(key);
  }

  /** Every replica node now. */
  servers(): IterableIterator<ServerPool> {
    return this.#byKey.values();
  }

  /** A primary's replica nodes (none when read_from is primary). */
  replicasOf(primary: ServerPool): readonly ServerPool[] {
    return this.#of.get(primary) ?? NONE;
  }

  /**
   * A new slot map: the replica nodes are now those it names. `obtain` gives the node for an
   * address this does not have yet (one the topology is draining, or a new one, started).
   * Returns the replica nodes the map no longer names and that are not primaries now, for the
   * topology to drain.
   */
  apply(shards: readonly ShardReplicas[], primaries: ReadonlySet<ServerPool>, obtain: (key: string, address: NodeAddress) => ServerPool): ServerPool[] {
    const before = this.#byKey;
    const byKey = new Map<string, ServerPool>();
    const of = new Map<ServerPool, readonly ServerPool[]>();
    const loading = new Set<ServerPool>();
    if (this.enabled) {
      for (const shard of shards) {
        const replicas: ServerPool[] = [];
        for (const address of shard.replicas) {
          // Redis 7.0 says `fail` where its documentation (and later versions) say `failed`.
          if (address.health === 'fail' || address.health === 'failed') continue;
          const key = nodeKey(address.host, address.port);
          const server = byKey.get(key) ?? before.get(key) ?? obtain(key, address);
          if (primaries.has(server)) continue;
          byKey.set(key, server);
          replicas.push(server);
          if (address.health === 'loading') loading.add(server);
        }
        of.set(shard.primary, replicas);
      }
    }
    const dropped: ServerPool[] = [];
    for (const [key, server] of before) if (!byKey.has(key) && !primaries.has(server)) dropped.push(server);
    this.#byKey = byKey;
    this.#of = of;
    this.#loading = loading;
    return dropped;
  }

  /**
   * The replica a read-only request for `primary`'s slots goes to, or null: the primary takes it
   * (read_from primary, no replica, or none that read_from accepts now).
   */
  pick(primary: ServerPool): ServerPool | null {
    const replicas = this.#of.get(primary);
    if (replicas === undefined || replicas.length === 0) return null;
    const n = replicas.length;
    const start = this.#turn % n;
    this.#turn = (this.#turn + 1) & 0x3fffffff;
    const waitable = this.#mode === 'replica';
    let fallback: ServerPool | null = null;
    for (let i = 0; i < n; i++) {
      const replica = replicas[(start + i) % n];
      if (replica.health.kind === 'ejected') continue;
      if (replica.usable) return replica;
      if (!this.#loading.has(replica)) fallback ??= replica;
    }
    return waitable ? fallback : null;
  }

  clear(): void {
    this.#byKey = new Map();
    this.#of = new Map();
    this.#loading = new Set();
  }
}

const NONE: readonly ServerPool[] = [];
