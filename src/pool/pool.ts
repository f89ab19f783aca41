/**
 * One configured pool: its servers, its router, the queue of sessions waiting for a connection,
 * and one periodic sweep that runs every time-based duty (queue timeouts, request deadlines, idle
 * and lifetime retirement, ejection expiry) for all of its connections. One timer per pool, not
 * one per request or per connection.
 */
import type { Codec } from '../codec/registry.js';
import type { ClusterView } from '../metrics.js';
import type { ClientHandle } from '../codec/session-rules.js';
import { ClusterTopology } from '../cluster/topology.js';
import { keySlot } from '../cluster/slot.js';
import { clusterView } from '../cluster/view.js';
import type { PoolConfig, ServerConfig } from '../config/schema.js';
import { FAILURE_REASONS } from '../errors.js';
import type { FailureReason } from '../errors.js';
import { FailoverRouter } from '../router/failover.js';
import { hashFunction, hashKey } from '../router/hash.js';
import type { HashFunction } from '../router/hash.js';
import { KetamaRouter } from '../router/ketama-router.js';
import type { Router } from '../router/router.js';
import type { Clock, Timer } from '../util/clock.js';
import { Fifo } from '../util/fifo.js';
import { Histogram, REQUEST_BUCKETS, WAIT_BUCKETS } from '../util/histogram.js';
import type { Logger } from '../util/log.js';
import { ClientLimits } from '../session/limits.js';
import { Roster } from '../util/roster.js';
import type { ServerHealth } from './health.js';
import { ServerPool } from './server-pool.js';
import type { ServerPoolEvents, ServerStats } from './server-pool.js';

/** A session that waits for a connection to its server. */
export interface Waiter {
  /** A connection became ready (or routing changed): try again. */
  resume(): void;
  /** queue.timeout passed, or no server is left to wait for. */
  abandon(reason: FailureReason, message: string): void;
}

/** A connected client as the pool and the proxy's lifecycle see it (ClientSession). */
export interface PoolClient extends ClientHandle {
  /** Shutdown began: close now if idle, else once its replies are written; new requests get DRAINING. */
  drain(): void;
  /** A reload replaced its pool: close it the first moment it holds nothing. */
  retire(): void;
  /** The shutdown deadline: close now, between replies; false if it was gone already. */
  cut(): boolean;
  /**
   * The deadline of a pool a reload replaced: a blocked or subscribed client is cut now (true);
   * any other is closed after the replies it is owed, its next request answered DRAINING.
   */
  retireDeadline(): boolean;
  /** clients.idle_timeout: closes it if it sent nothing for idleMs and has no request in flight, blocking command or subscription. */
  closeIfIdle(now: number, idleMs: number): boolean;
  info(now: number): ClientInfo;
}

/** One client in /stats?clients=1. */
export interface ClientInfo {
  id: number;
  /** Remote host:port, or `unix`. */
  peer: string;
  listener: string;
  ageMs: number;
  /** Since it last sent anything. */
  idleMs: number;
  lastCommand: string;
  inflight: number;
  /**
   * What keeps it from being idle: a request in flight, a blocking command, a subscription, an
   * open transaction (MULTI/WATCH), or an exclusive connection held for session state; null: nothing.
   */
  holds: 'request' | 'blocking' | 'subscription' | 'transaction' | 'connection' | null;
}

interface WaitEntry {
  waiter: Waiter;
  since: number;
}

/** Per-pool counters in plain numbers; metrics read them at scrape time. */
export interface PoolCounters {
  requests: number;
  failures: Float64Array;
  clientsAccepted: number;
  clientsRejected: number;
  protocolErrors: number;
  /** Exceptions in poolside's own session code (a bug): counted and logged at error. */
  internalErrors: number;
  /** Idempotent requests sent again after their connection died. */
  retries: number;
  /**
   * Requests sent to several servers of a sharded pool in parts: split by key, or broadcast to
   * every server; and parts that got no reply (whatever the codec's merge made of that).
   */
  fanouts: { split: number; broadcast: number; partsFailed: number };
  /** Clients reset because their connection died while a large reply streamed to them. */
  repliesTorn: number;
  /** Clients reset for their unread replies (clients.output_buffer: hard, or soft for soft_seconds). */
  clientsOverflowed: number;
  /** Clients reset for the requests they sent and were not yet answered for (clients.input_buffer.hard). */
  clientsInputOverflowed: number;
  /** AUTH or HELLO … AUTH with credentials client_auth does not accept. */
  authFailures: number;
  /** Clients closed by clients.idle_timeout. */
  clientsIdleClosed: number;
  /** Clients closed at the shutdown deadline while they still held something (blocked, subscribed, in flight). */
  clientsShutdownClosed: number;
  /** Clients of a pool a reload replaced, cut at its deadline (shutdown.timeout after the reload) while blocked or subscribed. */
  clientsReloadClosed: number;
  pins: Map<string, number>;
  /** From the request being framed to its reply being written to the client. */
  requestDuration: Histogram;
  /** How long requests waited for a connection (only those that waited). */
  waitDuration: Histogram;
}

export function newPoolCounters(): PoolCounters {
  return {
    requests: 0,
    failures: new Float64Array(FAILURE_REASONS.length),
    clientsAccepted: 0,
    clientsRejected: 0,
    protocolErrors: 0,
    internalErrors: 0,
    retries: 0,
    fanouts: { split: 0, broadcast: 0, partsFailed: 0 },
    repliesTorn: 0,
    clientsOverflowed: 0,
    clientsInputOverflowed: 0,
    authFailures: 0,
    clientsIdleClosed: 0,
    clientsShutdownClosed: 0,
    clientsReloadClosed: 0,
    pins: new Map(),
    requestDuration: new Histogram(REQUEST_BUCKETS),
    waitDuration: new Histogram(WAIT_BUCKETS),
  };
}

export interface PoolStats {
  name: string;
  protocol: string;
  clients: number;
  waiting: { sessions: number; requests: number; oldestMs: number };
  servers: ServerStats[];
  /** routing: cluster only: the topology and its counters (metrics.ts, /stats). */
  cluster?: ClusterView;
}

export class Pool implements ServerPoolEvents {
  readonly config: PoolConfig;
  readonly codec: Codec;
  readonly router: Router;
  /** routing: cluster: the topology (slot map, nodes, refresh), which owns the node set; null otherwise. */
  readonly cluster: ClusterTopology | null;
  /** Carried over from the pool a reload replaced, so the pool's series go on rather than reset. */
  readonly counters: PoolCounters;
  /** What each client may make poolside hold (clients.output_buffer, clients.input_buffer). */
  readonly clientLimits: ClientLimits;
  readonly #clients = new Roster<PoolClient>();
  /** Requests held by waiting sessions (for /stats; queue.max bounds the sessions, not these). */
  waitingRequests = 0;
  /** The configured servers (failover, ketama); a cluster pool's nodes are its topology's. */
  readonly #servers: readonly ServerPool[];
  readonly #serversByName: Map<string, ServerPool>;
  readonly #hash: HashFunction;
  readonly #hashTag: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  #waiters = new Fifo<WaitEntry>();
  readonly #failureLoggedAt = new Float64Array(FAILURE_REASONS.length).fill(-Infinity);
  readonly #failuresUnlogged = new Float64Array(FAILURE_REASONS.length);
  /** The periodic sweep, from start() to close(). */
  #sweep: Timer | null = null;
  #resumeScheduled = false;
  /** When the sweep next looks for idle clients (clients.idle_timeout). */
  #nextIdleCheck = 0;

  constructor(config: PoolConfig, codec: Codec, clock: Clock, log: Logger, counters: PoolCounters = newPoolCounters()) {
    this.config = config;
    this.counters = counters;
    // A cluster pool's codec reads the slot map (SCAN across primaries) once the topology exists.
    const slotOwner = config.routing === 'cluster' ? (slot: number) => this.cluster?.nodeForSlot(slot) ?? null : undefined;
    this.codec = codec.forPool(config, { clock, log, slotOwner });
    this.#clock = clock;
    this.#log = log;
    this.clientLimits = new ClientLimits(config, clock, log, this.counters);
    if (config.routing === 'cluster') {
      this.#servers = [];
      this.cluster = new ClusterTopology(
        config,
        {
          createNode: (server: ServerConfig) => new ServerPool(server, config, this.codec, clock, log, this),
          onRoutingChange: () => this.#scheduleResume(),
        },
        clock,
        log,
      );
      this.router = this.cluster;
    } else {
      this.#servers = config.servers.map((server) => new ServerPool(server, config, this.codec, clock, log, this));
      this.cluster = null;
      this.router = config.routing === 'ketama' ? new KetamaRouter(this.#servers, config) : new FailoverRouter(this.#servers);
    }
    this.#serversByName = new Map(this.#servers.map((server) => [server.name, server]));
    this.#hash = hashFunction(config.ketama.hash);
    this.#hashTag = config.ketama.hashTag;
  }

  /** Opens the first connections and starts the sweep: the constructor has no side effects. */
  start(): void {
    if (this.#sweep === null) {
      this.#sweep = this.#clock.setInterval(() => this.#onSweep(), sweepInterval(this.config));
      this.#sweep.unref();
    }
    if (this.cluster !== null) this.cluster.start();
    for (const server of this.#servers) server.start();
  }

  /**
   * Every server of the pool: the configured ones, or a cluster pool's nodes as its topology knows
   * them now (those being drained included). What the sweep, /stats and metrics read.
   */
  get servers(): readonly ServerPool[] {
    return this.cluster !== null ? this.cluster.nodes : this.#servers;
  }

  /** Where a keyless broadcast goes: every server, or a cluster's primaries. */
  broadcastTargets(): readonly ServerPool[] {
    return this.cluster !== null ? this.cluster.primaries() : this.#servers;
  }

  /** The key's hash: the continuum hash (ketama pools), or the Redis Cluster hash slot (cluster pools). */
  hashKey(bytes: Buffer, start: number, end: number): number {
    if (this.cluster !== null) return keySlot(bytes, start, end);
    return hashKey(this.#hash, bytes, start, end, this.#hashTag);
  }

  /**
   * The server for a key hash (null: a request without keys), or null when none can take it.
   * `readOnly` (CommandSpec.readOnly): a cluster pool may send it to a replica (cluster.read_from).
   */
  route(hash: number | null, readOnly = false): ServerPool | null {
    if (readOnly && this.cluster !== null) return this.cluster.routeRead(hash);
    return this.router.route(hash);
  }

  /** A server of this pool by its name (the config's, unique in the pool). */
  server(name: string): ServerPool | undefined {
    if (this.cluster !== null) return this.cluster.node(name);
    return this.#serversByName.get(name);
  }

  /**
   * Queues a session until a connection is ready; `since` is when it began waiting (kept across
   * resumes that found nothing ready). False when queue.max sessions already wait. A session's
   * own pipeline behind its first waiting request is its own to bound (its input budget), not the
   * pool's: refusing the middle of a pipeline would break what Redis runs whole.
   */
  wait(waiter: Waiter, since: number): boolean {
    if (this.#waiters.length >= this.config.queue.max) return false;
    this.#waiters.push({ waiter, since });
    return true;
  }

  /** A waiting session left: it no longer counts against queue.max (rare: linear in the queue). */
  cancelWait(waiter: Waiter): void {
    if (this.#waiters.length === 0) return;
    const kept = new Fifo<WaitEntry>();
    for (const entry of this.#waiters.drain()) if (entry.waiter !== waiter) kept.push(entry);
    this.#waiters = kept;
  }

  now(): number {
    return this.#clock.now();
  }

  /** The pool's clock, for sessions' own deadlines (a relay's reset exchange). */
  get clock(): Clock {
    return this.#clock;
  }

  /** Sessions connected now. */
  get clients(): number {
    return this.#clients.size;
  }

  addClient(client: PoolClient): void {
    this.#clients.add(client);
  }

  removeClient(client: PoolClient): void {
    this.#clients.remove(client.id);
  }

  /** A connected client of this pool by its poolside id. */
  client(id: number): PoolClient | undefined {
    return this.#clients.get(id);
  }

  /** The clients connected now (a copy: the caller may close them as it goes). */
  connectedClients(): PoolClient[] {
    return this.#clients.snapshot();
  }

  /**
   * Counts a request poolside answered with an error, and logs it at warn: at most once a second
   * per reason, with how many were not logged, so a flood of failures cannot flood the log.
   */
  fail(reason: FailureReason, message: string): void {
    const i = FAILURE_REASONS.indexOf(reason);
    this.counters.failures[i]++;
    const now = this.#clock.now();
    if (now - this.#failureLoggedAt[i] < 1000) {
      this.#failuresUnlogged[i]++;
      return;
    }
    this.#log.warn('request failed', { pool: this.config.name, reason, error: message, unlogged_since_last: this.#failuresUnlogged[i] });
    this.#failureLoggedAt[i] = now;
    this.#failuresUnlogged[i] = 0;
  }

  countPin(reason: string): void {
    this.counters.pins.set(reason, (this.counters.pins.get(reason) ?? 0) + 1);
  }

  onInternalError(error: unknown): void {
    this.counters.internalErrors++;
    this.#log.error('internal error handling a server reply', { pool: this.config.name, error: String((error as Error).stack ?? error) });
  }

  onConnectionReady(): void {
    this.cluster?.onConnectionReady();
    this.#scheduleResume();
  }

  everyServerEjected(): boolean {
    for (const server of this.servers) if (server.health.kind !== 'ejected') return false;
    return true;
  }

  onHealthChange(server: ServerPool, before: ServerHealth, after: ServerHealth): void {
    if ((before.kind === 'ejected') !== (after.kind === 'ejected')) this.router.rebuild();
    this.cluster?.onNodeHealth(server, after);
    // Waiters re-route: an ejected server's waiters move on or fail fast.
    this.#scheduleResume();
  }

  stats(): PoolStats {
    let oldest = 0;
    const now = this.#clock.now();
    for (const entry of this.#waiters) {
      oldest = Math.max(oldest, now - entry.since);
      break;
    }
    return {
      name: this.config.name,
      protocol: this.config.protocol,
      clients: this.clients,
      waiting: { sessions: this.#waiters.length, requests: this.waitingRequests, oldestMs: oldest },
      servers: this.servers.map((server) => server.stats()),
      ...(this.cluster === null ? {} : { cluster: clusterView(this.cluster) }),
    };
  }

  async close(): Promise<void> {
    if (this.#sweep !== null) this.#clock.clearInterval(this.#sweep);
    this.#sweep = null;
    for (const entry of this.#waiters.drain()) entry.waiter.abandon('DRAINING', 'poolside is shutting down');
    await Promise.all(this.#servers.map((server) => server.close()));
    if (this.cluster !== null) await this.cluster.close();
  }

  #scheduleResume(): void {
    if (this.#resumeScheduled || this.#waiters.length === 0) return;
    this.#resumeScheduled = true;
    queueMicrotask(() => {
      this.#resumeScheduled = false;
      // Waiters that still cannot go re-queue themselves behind this snapshot.
      for (const entry of this.#waiters.drain()) entry.waiter.resume();
    });
  }

  #onSweep(): void {
    const now = this.#clock.now();
    for (const server of this.servers) server.tick(now);
    this.cluster?.tick(now);
    const idleMs = this.config.clients.idleTimeoutMs;
    if (idleMs > 0 && now >= this.#nextIdleCheck) {
      // One pass over the clients, no timer per client: a client is closed at most a quarter of
      // idle_timeout (and never more than a second) late.
      this.#nextIdleCheck = now + Math.min(1000, Math.max(10, idleMs / 4));
      for (const client of this.#clients.snapshot()) {
        if (client.closeIfIdle(now, idleMs)) this.counters.clientsIdleClosed++;
      }
    }
    const timeout = this.config.queue.timeoutMs;
    for (let head = this.#waiters.peek(); head !== undefined && now - head.since >= timeout; head = this.#waiters.peek()) {
      this.#waiters.shift();
      head.waiter.abandon('POOL_TIMEOUT', `no connection to pool ${this.config.name} within ${timeout}ms`);
    }
    if (this.#waiters.length > 0 && this.route(null) === null && !this.router.keyed) {
      for (const entry of this.#waiters.drain()) entry.waiter.resume();
    }
  }
}

/** Often enough to honour the tightest deadline within a quarter of it, never busier than 10 ms. */
export function sweepInterval(config: Pick<PoolConfig, 'queue' | 'requestTimeoutMs' | 'heartbeat'>): number {
  const deadlines = [config.queue.timeoutMs, config.requestTimeoutMs, config.heartbeat.timeoutMs, 1000].filter((ms) => ms > 0);
  return Math.max(10, Math.min(250, Math.floor(Math.min(...deadlines) / 4)));
}
