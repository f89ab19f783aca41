/**
 * The one owner of a `routing: cluster` pool's view of the cluster: the slot → node map, the node
 * set (a ServerPool per primary, created at run time from the addresses the cluster gives), the
 * replicas each primary has (recorded for read_from), the epoch, and the refresh that keeps them.
 *
 *   start ─▶ seed ServerPools ─▶ first ready connection ─▶ refresh
 *   refresh (single flight, at least MIN_GAP_MS apart): CLUSTER SHARDS + CLUSTER INFO pipelined on
 *     one ready connection of a known node (primaries first, then the seeds); SHARDS unknown ⇒
 *     CLUSTER SLOTS; a node that fails or does not answer ⇒ the next; all fail ⇒ the old map is
 *     kept, counted, retried with backoff.
 *   triggers: start, periodic (cluster.refresh_interval), moved, node_failure, clusterdown, retry.
 *
 * A node that leaves the topology stops being routed to at once and is closed by the pool's sweep
 * once nothing is in flight on it (its requests finish there, or come back MOVED and follow).
 *
 * route() is an array read: nothing is allocated per request.
 */
import type { PoolConfig, ServerConfig } from '../config/schema.js';
import type { ServerPool } from '../pool/server-pool.js';
import type { ServerHealth } from '../pool/health.js';
import { backoffDelay } from '../pool/health.js';
import type { Router } from '../router/router.js';
import type { Clock, Timer } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { RespError, parseResp } from './resp-value.js';
import type { RespValue } from './resp-value.js';
import { ReplicaReads } from './replicas.js';
import type { ShardReplicas } from './replicas.js';
import { isUnknownSubcommand, nodeKey, readEpoch, readShards, readSlots } from './shards.js';
import type { NodeAddress, Shard } from './shards.js';
import { SLOTS } from './slot.js';

/** Refreshes start at least this far apart, however many MOVEDs ask for one. */
export const MIN_GAP_MS = 200;
/**
 * While a primary of the map is failing or ejected, the map is read again this often (from the
 * sweep): the cluster promotes its replica within its node timeout, and nothing else may ask.
 */
export const DEGRADED_REFRESH_MS = 250;
/** For this long after a primary of the map starts failing; after that (no replica promoted: a shard left down) every DEGRADED_SLOW_MS. */
export const DEGRADED_FAST_FOR_MS = 30_000;
export const DEGRADED_SLOW_MS = 1000;
/**
 * Nodes opened for MOVED/ASK targets the last map does not name, at most, until the next map (or
 * the map's primary count, if larger): a broken or hostile node that redirects each request to
 * another address must not make poolside open pools without end. Past it the redirection is the
 * client's reply.
 */
export const MAX_UNMAPPED_NODES = 16;

export const REFRESH_TRIGGERS = ['start', 'periodic', 'moved', 'node_failure', 'clusterdown', 'retry'] as const;
export type RefreshTrigger = (typeof REFRESH_TRIGGERS)[number];

export const REDIRECTIONS = ['moved', 'ask', 'tryagain', 'clusterdown'] as const;
export type Redirection = (typeof REDIRECTIONS)[number];

/** Plain counters for metrics (observe) and /stats. */
export interface ClusterStats {
  /** cluster_current_epoch at the last refresh (0 before the first). */
  epoch: number;
  /** Slots with a node. */
  slotsCovered: number;
  /** Primaries routed to (nodes being drained not counted). */
  nodes: number;
  /** Replicas the primaries have, as last reported. */
  replicas: number;
  refreshes: { ok: Record<RefreshTrigger, number>; failed: Record<RefreshTrigger, number> };
  /** Refresh requests that found one in flight or too recent, and joined it. */
  refreshesCoalesced: number;
  redirections: Record<Redirection, number>;
  /** Unix time in seconds of the last refresh that succeeded (0 = never). */
  lastRefreshOk: number;
  /** The refresh now: none, one due (gap or backoff), one waiting for a ready connection, or one asking. */
  refresh: 'idle' | 'scheduled' | 'waiting' | 'running';
}

export interface ClusterNode {
  readonly server: ServerPool;
  /** The cluster's node id, when known. */
  readonly id: string | null;
  readonly replicas: readonly NodeAddress[];
}

/** What the topology needs from its pool. */
export interface ClusterHost {
  /** A node's ServerPool, not started (the topology starts it). */
  createNode(config: ServerConfig): ServerPool;
  /** The slot map or the node set changed: waiting sessions may route again. */
  onRoutingChange(): void;
}

const SHARDS_REQUEST = Buffer.from('*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n');
const SLOTS_REQUEST = Buffer.from('*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n');
const INFO_REQUEST = Buffer.from('*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n');

type RefreshState =
  | { kind: 'idle' }
  /** Due at a clock time (the minimum gap, or the backoff after a failed refresh). */
  | { kind: 'scheduled'; timer: Timer; trigger: RefreshTrigger }
  /** Waiting for any node or seed to have a ready connection. */
  | { kind: 'waiting'; trigger: RefreshTrigger }
  | { kind: 'running'; trigger: RefreshTrigger; generation: number; tried: Set<ServerPool>; guard: Timer | null };

function zeroed<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

export class ClusterTopology implements Router {
  readonly keyed = true;
  /** A keyless request goes to any healthy primary (the keyspace table decides which need all of them). */
  readonly keylessAnywhere = true;
  readonly #config: PoolConfig;
  readonly #host: ClusterHost;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** slot → its primary's node, null while unknown or uncovered. */
  readonly #slots: (ServerPool | null)[] = new Array<ServerPool | null>(SLOTS).fill(null);
  /** Nodes routed to, by `host:port`: the primaries of the last map, plus seeds and redirect targets until the next map. */
  readonly #nodes = new Map<string, ClusterNode>();
  /** Nodes that left the topology, closed once nothing is in flight on them. */
  readonly #leaving = new Set<ServerPool>();
  /** Every node, routed to or leaving: what the sweep, /stats and metrics read (rebuilt on change). */
  #all: ServerPool[] = [];
  /** Primaries of the last map, for keyless requests (round robin). */
  #primaries: ServerPool[] = [];
  #next = 0;
  /** Bumped whenever a slot changes owner in the map (see version). */
  #version = 0;
  /** Nodes nodeAt opened since the last map (redirect targets it did not name). */
  #unmapped = 0;
  #refresh: RefreshState = { kind: 'idle' };
  #generation = 0;
  #lastStartAt = -Infinity;
  /** Refreshes failed in a row (the backoff). */
  #failures = 0;
  #periodic: Timer | null = null;
  #closed = false;
  #epoch = 0;
  #covered = 0;
  #replicaCount = 0;
  #lastRefreshOk = 0;
  #coalesced = 0;
  /** Since when a primary of the map has been failing or ejected (tick), or null. */
  #degradedSince: number | null = null;
  readonly #ok = zeroed(REFRESH_TRIGGERS);
  readonly #failed = zeroed(REFRESH_TRIGGERS);
  readonly #redirections = zeroed(REDIRECTIONS);
  /** read_from: the replica nodes reads may go to (none with read_from: primary). */
  readonly #replicas: ReplicaReads;

  constructor(config: PoolConfig, host: ClusterHost, clock: Clock, log: Logger) {
    this.#config = config;
    this.#replicas = new ReplicaReads(config.cluster.readFrom);
    this.#host = host;
    this.#clock = clock;
    this.#log = log;
  }

  /**
   * Changes whenever a slot changes owner in the map. A session with requests in flight that were
   * routed by an older map holds its next ones until those are answered: a GET routed to a slot's
   * new owner must not overtake the SET still on its way to the old one (which answers MOVED).
   */
  get version(): number {
    return this.#version;
  }

  /** Every node's ServerPool, routed to or being drained: the one list the pool's sweep, /stats and metrics read. */
  get nodes(): readonly ServerPool[] {
    return this.#all;
  }

  /** Creates and starts the seed nodes, then discovers the topology from the first that connects. */
  start(): void {
    if (this.#all.length > 0 || this.#closed) return;
    this.#addSeeds();
    const interval = this.#config.cluster.refreshIntervalMs;
    if (interval > 0) {
      this.#periodic = this.#clock.setInterval(() => this.refresh('periodic'), interval);
      this.#periodic.unref();
    }
    this.refresh('start');
  }

  // ── Router ───────────────────────────────────────────────────────────────────────────────────

  /**
   * `hash` is the key's slot (Pool.hashKey). The slot's primary, or, while the slot is unknown, any
   * primary (it answers MOVED, which is followed); null when the owner is out of routing (ejected).
   */
  route(hash: number | null): ServerPool | null {
    if (hash !== null) {
      const node = this.#slots[hash];
      if (node !== null && node !== undefined) return node.hopeful ? node : null;
    }
    return this.anyPrimary();
  }

  /**
   * Where a read-only request goes (CommandSpec.readOnly): a replica of the slot's shard that
   * read_from accepts now (replicas.ts), else wherever route() sends it.
   */
  routeRead(hash: number | null): ServerPool | null {
    if (hash !== null && this.#replicas.enabled) {
      const primary = this.#slots[hash];
      if (primary !== null && primary !== undefined) {
        const replica = this.#replicas.pick(primary);
        if (replica !== null) return replica;
      }
    }
    return this.route(hash);
  }

  /** A primary's replica nodes that reads may go to (none with read_from: primary). */
  replicasOf(primary: ServerPool): readonly ServerPool[] {
    return this.#replicas.replicasOf(primary);
  }

  /** A key's group for splitting a multi-key request: its slot (Redis refuses keys of different slots). */
  group(hash: number): number {
    return hash;
  }

  /** Health changed somewhere: nothing to rebuild (onNodeHealth refreshes on failures). */
  rebuild(): void {}

  /** A healthy primary for a request without keys: round robin over those with a ready connection. */
  anyPrimary(): ServerPool | null {
    const primaries = this.#primaries.length > 0 ? this.#primaries : this.#all;
    const n = primaries.length;
    for (let i = 0; i < n; i++) {
      const node = primaries[(this.#next + i) % n];
      if (node.usable && node.health.kind !== 'ejected' && !this.#leaving.has(node)) {
        this.#next = (this.#next + i + 1) % n;
        return node;
      }
    }
    for (const node of primaries) if (node.hopeful && !this.#leaving.has(node)) return node;
    return null;
  }

  /** The primaries of the last map (every one: for broadcasts and keyspace-wide commands). */
  primaries(): readonly ServerPool[] {
    return this.#primaries.length > 0 ? this.#primaries : this.#all.filter((node) => !this.#leaving.has(node));
  }

  /** The node owning slot `slot` now (null: unknown or uncovered). */
  nodeForSlot(slot: number): ServerPool | null {
    return this.#slots[slot] ?? null;
  }

  /** A node by its name (`host:port`, or a seed's configured name). */
  node(name: string): ServerPool | undefined {
    for (const node of this.#all) if (node.name === name) return node;
    return undefined;
  }

  /** What the last map said of a node (its replicas, for read_from), or undefined. */
  describe(server: ServerPool): ClusterNode | undefined {
    for (const node of this.#nodes.values()) if (node.server === server) return node;
    return undefined;
  }

  // ── redirections ─────────────────────────────────────────────────────────────────────────────

  /**
   * `-MOVED slot host:port`: the slot is the target's now (at once, before any refresh), and a
   * refresh is asked for, unless the map already said so (the MOVEDs of requests that were in
   * flight when the first came back tell nothing new). Returns the target's node, created if it
   * was unknown; null past MAX_UNMAPPED_NODES (a refresh is asked for, the map is left alone).
   */
  moved(slot: number, host: string, port: number): ServerPool | null {
    this.#redirections.moved++;
    const node = this.nodeAt(host, port);
    if (node === null) {
      this.refresh('moved');
      return null;
    }
    if (slot < 0 || slot >= SLOTS || this.#slots[slot] === node) return node;
    if (this.#slots[slot] === null) this.#covered++;
    this.#slots[slot] = node;
    this.#version++;
    this.refresh('moved');
    return node;
  }

  /** Counts a redirection the session followed without the map changing (ask, tryagain, clusterdown). */
  count(kind: Exclude<Redirection, 'moved'>): void {
    this.#redirections[kind]++;
    if (kind === 'clusterdown') this.refresh('clusterdown');
  }

  /**
   * The node at `host:port`, created (and started) if the topology does not know it yet; null when
   * MAX_UNMAPPED_NODES are open already, or once closed.
   */
  nodeAt(host: string, port: number): ServerPool | null {
    const key = nodeKey(host, port);
    const known = this.#nodes.get(key);
    if (known !== undefined) return known.server;
    if (this.#closed) return null;
    // A replica promoted by a failover: the node it already has serves as the slot's owner.
    const replica = this.#replicas.find(key);
    if (replica === undefined) {
      if (this.#unmapped >= Math.max(MAX_UNMAPPED_NODES, this.#primaries.length)) return null;
      this.#unmapped++;
    }
    const server = replica ?? this.#revive(key) ?? this.#create(host, port, key);
    this.#nodes.set(key, { server, id: null, replicas: [] });
    this.#rebuildAll();
    return server;
  }

  /** A node's health changed: a failing or ejected node may mean a failover, so the map is refreshed. */
  onNodeHealth(server: ServerPool, after: ServerHealth): void {
    if (this.#closed || this.#leaving.has(server)) return;
    if (after.kind === 'failing' || after.kind === 'ejected') this.refresh('node_failure');
  }

  /** A node has a ready connection: a refresh that waited for one can go. */
  onConnectionReady(): void {
    const state = this.#refresh;
    if (state.kind === 'waiting') {
      this.#refresh = { kind: 'idle' };
      this.#run(state.trigger);
    }
  }

  // ── refresh ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Asks for a refresh. Single flight: while one runs, or one is scheduled or waiting, this joins
   * it; a refresh starts at least MIN_GAP_MS after the last one started.
   */
  refresh(trigger: RefreshTrigger): void {
    if (this.#closed) return;
    if (this.#refresh.kind === 'waiting' && trigger === 'periodic' && this.#unreachable()) {
      // Every node is unreachable: each periodic refresh fails (counted, so an alert on failed
      // refreshes fires for as long as it lasts); the first connection that is ready asks.
      this.#failed[trigger]++;
      return;
    }
    if (this.#refresh.kind !== 'idle') {
      this.#coalesced++;
      return;
    }
    const wait = this.#lastStartAt + MIN_GAP_MS - this.#clock.now();
    if (wait > 0) {
      this.#schedule(trigger, wait);
      return;
    }
    this.#run(trigger);
  }

  #schedule(trigger: RefreshTrigger, ms: number): void {
    const timer = this.#clock.setTimeout(() => {
      if (this.#refresh.kind !== 'scheduled' || this.#refresh.timer !== timer) return;
      this.#refresh = { kind: 'idle' };
      this.#run(trigger);
    }, ms);
    timer.unref();
    this.#refresh = { kind: 'scheduled', timer, trigger };
  }

  #run(trigger: RefreshTrigger): void {
    if (this.#closed) return;
    this.#lastStartAt = this.#clock.now();
    const generation = ++this.#generation;
    this.#refresh = { kind: 'running', trigger, generation, tried: new Set(), guard: null };
    this.#attempt();
  }

  /** Asks the next untried node with a ready connection; none left: the refresh failed. */
  #attempt(): void {
    const state = this.#refresh;
    if (state.kind !== 'running') return;
    if (state.guard !== null) this.#clock.clearTimeout(state.guard);
    state.guard = null;
    for (const server of this.#candidates()) {
      if (state.tried.has(server)) continue;
      const conn = server.pickConnection();
      if (conn === null) continue;
      state.tried.add(server);
      const generation = state.generation;
      const current = (): boolean => this.#refresh.kind === 'running' && this.#refresh.generation === generation;
      let shards: RespValue | null = null;
      let settled = false;
      const fail = (message: string): void => {
        if (settled || !current()) return;
        settled = true;
        this.#log.debug('cluster topology: a node could not say', { pool: this.#config.name, server: server.name, error: message });
        this.#attempt();
      };
      conn.send(SHARDS_REQUEST, {
        onResponse: (bytes) => {
          try {
            shards = parseResp(bytes);
          } catch (err) {
            fail(String(err));
          }
        },
        onFailure: (_reason, message) => fail(message),
      });
      conn.send(INFO_REQUEST, {
        onResponse: (bytes) => {
          if (settled || !current()) return;
          let info: RespValue = null;
          try {
            info = parseResp(bytes);
          } catch {
            // The epoch is only shown; a map without it is still a map.
          }
          if (shards === null) return fail('no CLUSTER SHARDS reply');
          if (isUnknownSubcommand(shards)) {
            settled = true;
            this.#askSlots(server, generation, info);
            return;
          }
          try {
            const read = readShards(shards, server.config.tls !== null);
            if (shards instanceof RespError) throw new Error(shards.message);
            settled = true;
            this.#succeed(read, readEpoch(info));
          } catch (err) {
            fail(String(err));
          }
        },
        onFailure: (_reason, message) => fail(message),
      });
      this.#guard(state, () => fail('no answer in time'));
      return;
    }
    if (state.tried.size === 0) {
      // Nothing to ask yet (starting, or every node down): the seeds come back if the map had
      // dropped them, and the first connection that is ready asks. Past the start, that is a
      // failed refresh (every node unreachable), counted as one.
      if (state.trigger !== 'start' && this.#unreachable()) {
        this.#failed[state.trigger]++;
        this.#log.warn('cluster topology refresh failed: no node has a ready connection; waiting for one', { pool: this.#config.name, trigger: state.trigger });
      }
      this.#refresh = { kind: 'waiting', trigger: state.trigger };
      this.#addSeeds();
      return;
    }
    this.#fail(state, `all ${state.tried.size} nodes asked failed`);
  }

  /**
   * A node that never answers (request_timeout 0, or a frozen one) must not hold the refresh:
   * after max(request_timeout, connect.timeout, 1s) the next node is asked.
   */
  #guard(state: Extract<RefreshState, { kind: 'running' }>, onTimeout: () => void): void {
    if (state.guard !== null) this.#clock.clearTimeout(state.guard);
    state.guard = this.#clock.setTimeout(onTimeout, Math.max(this.#config.requestTimeoutMs, this.#config.connect.timeoutMs, 1000));
    state.guard.unref();
  }

  /** CLUSTER SHARDS was unknown (Redis before 7): CLUSTER SLOTS on the same node. */
  #askSlots(server: ServerPool, generation: number, info: RespValue): void {
    const state = this.#refresh;
    const conn = server.pickConnection();
    if (state.kind !== 'running' || conn === null) return this.#attempt();
    let settled = false;
    const next = (): void => {
      if (settled || this.#refresh.kind !== 'running' || this.#refresh.generation !== generation) return;
      settled = true;
      this.#attempt();
    };
    conn.send(SLOTS_REQUEST, {
      onResponse: (bytes) => {
        if (settled || this.#refresh.kind !== 'running' || this.#refresh.generation !== generation) return;
        try {
          const reply = parseResp(bytes);
          if (reply instanceof RespError) throw new Error(reply.message);
          const shards = readSlots(reply);
          settled = true;
          this.#succeed(shards, readEpoch(info));
        } catch {
          next();
        }
      },
      onFailure: next,
    });
    this.#guard(state, next);
  }

  /**
   * No node to ask can be reached: every candidate is failing, ejected or probing. (One merely
   * without a connection now, connections.min 0 after an idle spell, is not a failure: it connects
   * and asks.)
   */
  #unreachable(): boolean {
    for (const node of this.#candidates()) {
      const kind = node.health.kind;
      if (kind === 'up' || kind === 'starting') return false;
    }
    return true;
  }

  /** Known primaries first, then the other nodes (seeds, redirect targets). */
  #candidates(): ServerPool[] {
    const rest = this.#all.filter((node) => !this.#primaries.includes(node) && !this.#leaving.has(node));
    return [...this.#primaries, ...rest];
  }

  #fail(state: Extract<RefreshState, { kind: 'running' }>, message: string): void {
    if (state.guard !== null) this.#clock.clearTimeout(state.guard);
    this.#failed[state.trigger]++;
    this.#failures++;
    this.#log.warn('cluster topology refresh failed; the last map is kept', { pool: this.#config.name, trigger: state.trigger, failures: this.#failures, error: message });
    // The seeds are asked too from now on (a seed the map does not name was drained: it comes
    // back, and is drained again once a refresh succeeds), in case the nodes known are all gone.
    this.#addSeeds();
    this.#schedule('retry', backoffDelay(this.#failures, this.#config.connect.backoff, this.#clock));
  }

  #succeed(shards: Shard[], epoch: number | null): void {
    const state = this.#refresh;
    if (state.kind !== 'running') return;
    if (state.guard !== null) this.#clock.clearTimeout(state.guard);
    this.#refresh = { kind: 'idle' };
    if (shards.length === 0) {
      // A node that knows no slots (not yet joined, or a cluster being created) tells nothing.
      this.#refresh = state;
      this.#fail(state, 'the node knows no slot owners');
      return;
    }
    this.#ok[state.trigger]++;
    this.#failures = 0;
    this.#lastRefreshOk = this.#clock.epochMs() / 1000;
    if (epoch !== null) this.#epoch = epoch;
    this.#apply(shards);
  }

  #apply(shards: Shard[]): void {
    const next = new Map<string, ClusterNode>();
    const primaries: ServerPool[] = [];
    let replicas = 0;
    const slots = new Array<ServerPool | null>(SLOTS).fill(null);
    let covered = 0;
    for (const shard of shards) {
      const key = nodeKey(shard.primary.host, shard.primary.port);
      let server = next.get(key)?.server;
      if (server === undefined) {
        server = this.#nodes.get(key)?.server ?? this.#replicas.find(key) ?? this.#revive(key) ?? this.#create(shard.primary.host, shard.primary.port, key);
        next.set(key, { server, id: shard.primary.id, replicas: shard.replicas });
        primaries.push(server);
        replicas += shard.replicas.length;
      }
      for (const [start, end] of shard.ranges) {
        for (let slot = start; slot <= end; slot++) {
          if (slots[slot] === null) covered++;
          slots[slot] = server;
        }
      }
    }
    let changed = false;
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.#slots[slot] === slots[slot]) continue;
      this.#slots[slot] = slots[slot];
      changed = true;
    }
    if (changed) this.#version++;
    const left: ServerPool[] = [];
    for (const [key, node] of this.#nodes) {
      if (next.has(key)) continue;
      // Left the topology (or a seed, or a redirect target the map does not name): drained.
      this.#leaving.add(node.server);
      left.push(node.server);
    }
    this.#nodes.clear();
    for (const [key, node] of next) this.#nodes.set(key, node);
    // Replicas (read_from): a primary demoted by a failover is kept as a replica, not drained.
    const shardReplicas: ShardReplicas[] = [];
    for (const node of next.values()) shardReplicas.push({ primary: node.server, replicas: node.replicas });
    const dropped = this.#replicas.apply(shardReplicas, new Set(primaries), (key, address) => next.get(key)?.server ?? this.#revive(key) ?? this.#create(address.host, address.port, key));
    for (const server of dropped) {
      this.#leaving.add(server);
      this.#log.info('cluster replica left the topology; draining it', { pool: this.#config.name, server: server.name });
    }
    // Logged after the replicas are placed: a primary demoted by a failover stays, as a replica.
    for (const server of left) {
      if (this.#leaving.has(server)) this.#log.info('cluster node left the topology; draining it', { pool: this.#config.name, server: server.name });
    }
    this.#primaries = primaries;
    this.#unmapped = 0;
    this.#next = 0;
    this.#covered = covered;
    this.#replicaCount = replicas;
    this.#rebuildAll();
    if (changed) this.#log.info('cluster slot map read', { pool: this.#config.name, primaries: primaries.length, replicas, slots_covered: covered, epoch: this.#epoch });
    this.#host.onRoutingChange();
  }

  /** A leaving node named again: routed to again instead of closed. */
  #revive(key: string): ServerPool | undefined {
    for (const server of this.#leaving) {
      const { host, port } = server.config.address;
      if (nodeKey(host, port) === key) {
        this.#leaving.delete(server);
        return server;
      }
    }
    return undefined;
  }

  /** A node's ServerPool: the seeds' credentials, TLS and connect settings, at the cluster's address. */
  #create(host: string, port: number, key: string): ServerPool {
    const seed = this.#config.servers[0];
    const config: ServerConfig = {
      address: { kind: 'tcp', host, port },
      name: key,
      weight: 1,
      username: seed?.username ?? null,
      password: seed?.password ?? null,
      db: 0,
      tls: seed?.tls ?? null,
    };
    const server = this.#host.createNode(config);
    server.start();
    return server;
  }

  /** The configured seeds as nodes (created only for those not known already). */
  #addSeeds(): void {
    for (const seed of this.#config.servers) {
      const key = nodeKey(seed.address.host, seed.address.port);
      if (this.#nodes.has(key)) continue;
      const server = this.#revive(key) ?? this.#host.createNode(seed);
      if (!this.#all.includes(server)) server.start();
      this.#nodes.set(key, { server, id: null, replicas: [] });
    }
    this.#rebuildAll();
  }

  #rebuildAll(): void {
    const all: ServerPool[] = [];
    for (const node of this.#nodes.values()) if (!all.includes(node.server)) all.push(node.server);
    for (const server of this.#replicas.servers()) if (!all.includes(server)) all.push(server);
    for (const server of this.#leaving) if (!all.includes(server)) all.push(server);
    this.#all = all;
  }

  /**
   * From the pool's sweep: while a primary is failing or ejected the map is refreshed every
   * DEGRADED_REFRESH_MS (to find its promoted replica); nodes that left and have nothing in flight
   * are closed.
   */
  tick(now: number): void {
    let down = false;
    for (const node of this.#primaries) {
      const kind = node.health.kind;
      if (kind === 'failing' || kind === 'ejected' || kind === 'probing') {
        down = true;
        break;
      }
    }
    if (!down) {
      this.#degradedSince = null;
    } else {
      this.#degradedSince ??= now;
      const every = now - this.#degradedSince < DEGRADED_FAST_FOR_MS ? DEGRADED_REFRESH_MS : DEGRADED_SLOW_MS;
      if (this.#refresh.kind === 'idle' && now - this.#lastStartAt >= every) this.refresh('node_failure');
    }
    if (this.#leaving.size === 0) return;
    let changed = false;
    for (const server of this.#leaving) {
      const stats = server.stats();
      if (stats.inflight > 0 || stats.exclusive.borrowed > 0) continue;
      this.#leaving.delete(server);
      changed = true;
      void server.close();
    }
    if (changed) this.#rebuildAll();
  }

  stats(): ClusterStats {
    return {
      epoch: this.#epoch,
      slotsCovered: this.#covered,
      nodes: this.#primaries.length,
      replicas: this.#replicaCount,
      refreshes: { ok: { ...this.#ok }, failed: { ...this.#failed } },
      refreshesCoalesced: this.#coalesced,
      redirections: { ...this.#redirections },
      lastRefreshOk: this.#lastRefreshOk,
      refresh: this.#refresh.kind,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#periodic !== null) this.#clock.clearInterval(this.#periodic);
    this.#periodic = null;
    const state = this.#refresh;
    if (state.kind === 'scheduled') this.#clock.clearTimeout(state.timer);
    if (state.kind === 'running' && state.guard !== null) this.#clock.clearTimeout(state.guard);
    this.#refresh = { kind: 'idle' };
    const all = this.#all;
    this.#leaving.clear();
    this.#nodes.clear();
    this.#replicas.clear();
    this.#all = [];
    await Promise.all(all.map((server) => server.close()));
  }
}
