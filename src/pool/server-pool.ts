/**
 * The connections to one server: `min..max` shared connections pipelined by many sessions, and
 * its exclusive pool (exclusive-pool.ts) for connections lent to one session at a time. Owns the
 * server's health (health.ts), refill with jittered exponential backoff, and the periodic duties of its
 * connections (request deadline, idle timeout, lifetime), run from the pool's sweep.
 *
 * Slow is not gone. Only a connect that fails (refused, timed out, AUTH/SELECT refused) and a
 * heartbeat left unanswered count against the server's health. A request past request_timeout
 * evicts its connection (its reply stream can no longer be trusted) but is not a server failure:
 * the server may be busy with another client's script. A `-BUSY`/`-LOADING` reply to a heartbeat
 * or to a new connection's setup proves the server alive; that connect backs off like a failed one
 * without counting towards ejection.
 *
 * Every connect to the server, shared or exclusive, shares one backoff and, while the server
 * fails, one connect in flight at a time.
 */
import type { Codec } from '../codec/registry.js';
import type { PoolConfig, ServerConfig } from '../config/schema.js';
import type { Clock, Timer } from '../util/clock.js';
import { jittered } from '../util/clock.js';
import { CONNECT_BUCKETS, Histogram, REQUEST_BUCKETS } from '../util/histogram.js';
import type { Logger } from '../util/log.js';
import { CLOSE_REASONS, Connection, connectionTls } from './connection.js';
import { ExclusivePool } from './exclusive-pool.js';
import type { CloseReason, ConnectionOwner, ConnectionSettings, HeartbeatReply, ResponseTarget } from './connection.js';
import type { EjectPolicy, ServerHealth } from './health.js';
import type { Lease, LeaseHolder } from './lease.js';
import { backoffDelay, isHopeful, nextHealth } from './health.js';

/**
 * Requests in flight a shared connection takes before the next connection is used; a connection
 * is opened beyond min only when every ready one has this many (or is receiving a large reply).
 */
const PACK_DEPTH = 16;

export interface ServerPoolEvents {
  /** A shared connection became ready: sessions waiting for this server may go on. */
  onConnectionReady(server: ServerPool): void;
  /** The server's health changed (for routing rebuilds and logs). */
  onHealthChange(server: ServerPool, before: ServerHealth, after: ServerHealth): void;
  /** Whether every server of the pool is ejected: then requests wait for them rather than fail (panic). */
  everyServerEjected(): boolean;
  /** poolside's own code threw while handling a reply from this server (a bug: made loud, not blamed on the server). */
  onInternalError(error: unknown): void;
}

/** Counters in plain numbers; metrics read them at scrape time. */
export interface ServerCounters {
  connectionsOpened: number;
  connectionsClosed: Record<CloseReason, number>;
  connectFailures: number;
  /** Times the server was taken out of routing (failed probes of an ejected server not counted again). */
  ejections: number;
  heartbeatFailures: { timeout: number; error: number };
  heartbeatDuration: Histogram;
  connectDuration: Histogram;
  /** Unix time in seconds of the last answered heartbeat (0 = never). */
  lastHeartbeatSuccess: number;
  /** Frames the server sent on its own: heartbeat requests poolside answered, responses to nothing dropped. */
  unasked: { answered: number; dropped: number };
}

export function newServerCounters(): ServerCounters {
  return {
    connectionsOpened: 0,
    connectionsClosed: Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>,
    connectFailures: 0,
    ejections: 0,
    heartbeatFailures: { timeout: 0, error: 0 },
    heartbeatDuration: new Histogram(REQUEST_BUCKETS),
    connectDuration: new Histogram(CONNECT_BUCKETS),
    lastHeartbeatSuccess: 0,
    unasked: { answered: 0, dropped: 0 },
  };
}

export interface ServerStats {
  name: string;
  address: string;
  health: ServerHealth;
  connections: { idle: number; active: number; connecting: number };
  inflight: number;
  exclusive: { borrowed: number; idle: number; pending: number };
  counters: ServerCounters;
}

export class ServerPool implements ConnectionOwner {
  readonly config: ServerConfig;
  readonly #pool: PoolConfig;
  readonly #codec: Codec;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: ServerPoolEvents;
  readonly #settings: ConnectionSettings;
  #shared: Connection[] = [];
  #health: ServerHealth = { kind: 'starting' };
  #refillTimer: Timer | null = null;
  /** No connect starts before this clock time: the backoff after the last failed connect. */
  #nextConnectAt = 0;
  /** Connects in a row that the server answered with BUSY/LOADING: alive, so not failures, but backed off. */
  #busyConnects = 0;
  /** Exclusive connects in progress (shared ones are the not-ready members of #shared). */
  #exclusiveConnecting = 0;
  readonly #ejectPolicy: EjectPolicy;
  /**
   * Connections the previous tick found past request_timeout. One is evicted only when the next
   * tick finds it so again: between two ticks the event loop has read the sockets, so a tick that
   * runs late after the loop was blocked cannot blame replies still waiting unread.
   */
  #suspects = new Set<Connection>();
  /**
   * Connections whose oldest request had no answer for half of request_timeout at the last sweep
   * (a slow script, a stuck server): pickConnection puts nothing new behind them while another
   * connection can take it, since an eviction at the deadline fails what is queued behind too.
   * Rebuilt by every sweep.
   */
  #stalled = new Set<Connection>();
  #closed = false;
  /** protocol: tcp: every connection is exclusive, lent to one client for its life. */
  readonly #relay: boolean;
  readonly #exclusive: ExclusivePool;
  readonly counters: ServerCounters = newServerCounters();
  /** Handed to connections for injected SELECTs: an error means the connection's db is unknown. */
  readonly selectTarget: ResponseTarget;

  constructor(config: ServerConfig, pool: PoolConfig, codec: Codec, clock: Clock, log: Logger, events: ServerPoolEvents) {
    this.config = config;
    this.#pool = pool;
    this.#codec = codec;
    this.#clock = clock;
    this.#log = log;
    this.#events = events;
    this.#relay = codec.sessionKind === 'relay';
    this.#ejectPolicy = { afterFailures: pool.eject.afterFailures, forMs: pool.eject.forMs, probeAfterMs: pool.connect.backoff.initialMs };
    this.#settings = {
      host: config.address.host,
      port: config.address.port,
      tls: config.tls === null ? null : connectionTls(config.tls),
      connectTimeoutMs: pool.connect.timeoutMs,
      clock,
      username: config.username,
      password: config.password,
      db: config.db,
      identify: false,
      raw: false,
    };
    this.selectTarget = {
      onResponse: (bytes) => {
        if (codec.isErrorResponse(bytes)) {
          log.warn('replayed SELECT refused by server', { pool: pool.name, server: config.name, reason: 'select_failed' });
        }
      },
      onFailure: () => {},
    };
    this.#exclusive = new ExclusivePool(pool, config, codec, clock, this.#settings, {
      connectWait: (now) => this.#connectWait(now),
      connectStarted: () => {
        this.counters.connectionsOpened++;
        this.#exclusiveConnecting++;
      },
      connectSettled: (ready) => {
        this.#exclusiveConnecting--;
        if (ready) this.#connected();
        // The shared refill held back while this connect was the one in flight.
        this.#refill();
      },
      countClose: (reason, message) => this.#countExclusiveClose(reason, message),
      refusedAfterConnect: (message) => {
        this.counters.connectFailures++;
        this.#log.warn('exclusive connect to server failed', { pool: this.#pool.name, server: this.name, reason: 'remote_closed', error: message });
        this.#connectFailed(message);
      },
      internalError: (error) => this.#events.onInternalError(error),
      countHeartbeatTimeout: () => this.counters.heartbeatFailures.timeout++,
      heartbeatAnswered: (sentAt) => {
        this.counters.heartbeatDuration.observe((this.#clock.now() - sentAt) / 1000);
        this.counters.lastHeartbeatSuccess = this.#clock.epochMs() / 1000;
      },
      countUnasked: (action) => this.counters.unasked[action]++,
      evict: (conn, reason, message) => this.#evict(conn, reason, message),
    });
  }

  get name(): string {
    return this.config.name;
  }

  get health(): ServerHealth {
    return this.#health;
  }

  get hopeful(): boolean {
    return isHopeful(this.#health, this.#health.kind === 'ejected' && this.#events.everyServerEjected());
  }

  /** Opens the first connections (a relay pool's are its exclusive pool's warm ones). */
  start(): void {
    this.#refill();
    this.#exclusive.start();
  }

  /**
   * The shared connection for a request that has no connection of its own yet, or null when none
   * is ready. Requests are packed: the first ready connection (oldest first) with fewer than
   * PACK_DEPTH requests on the wire and no large response arriving takes it (what this turn queued
   * is not on the wire yet, so a turn's requests all go to one connection, in one write). Requests that arrive
   * together, or while earlier ones are on the wire, then leave in one write and come back in one
   * read (one server wakeup, one read syscall for many replies) instead of being dealt out one
   * per connection: on the short-lived workload, spreading over two connections cost ~40 % more
   * proxy CPU per request with a server 1 ms away, and added latency. Redis runs one request at
   * a time whatever the connection, so a deeper pipeline on one connection costs no server time;
   * what a second connection does buy — a request not waiting behind a large reply in transit —
   * is kept by skipping a connection receiving one; and one whose oldest request has waited half
   * of request_timeout (a slow script) is skipped too, as least-in-flight did, since evicting it at
   * the deadline fails every request queued behind. Only when every connection is that full does
   * the least busy take it, and another connection is opened (up to max).
   */
  pickConnection(): Connection | null {
    let best: Connection | null = null;
    let retiring: Connection | null = null;
    let connecting = 0;
    const shared = this.#shared;
    const stalled = this.#stalled;
    let stalledOnly = false;
    for (let i = 0; i < shared.length; i++) {
      const conn = shared[i];
      if (!conn.ready) {
        connecting++;
        continue;
      }
      if (conn.retiring) {
        retiring = conn;
        continue;
      }
      // On the wire: written and unanswered. What this turn has queued but not written yet does not
      // count, so every request of one turn goes to the same connection, in one write.
      const onWire = conn.inflight - conn.unwritten;
      if (onWire < PACK_DEPTH && !conn.receivingLarge) {
        if (stalled.size === 0 || !stalled.has(conn)) return conn;
        // Stalled, not full: another connection would wait on the same server, so none is opened for it.
        stalledOnly = true;
      }
      // Full: the least in flight on the wire; at a tie, the one already gathering this turn's write.
      if (best === null) {
        best = conn;
        continue;
      }
      const bestOnWire = best.inflight - best.unwritten;
      if (onWire < bestOnWire || (onWire === bestOnWire && conn.unwritten > best.unwritten)) best = conn;
    }
    if (best === null) {
      // With min 0 (or every connection evicted) nothing may be on its way: start one, after the
      // backoff if the server is failing, so requests cannot drive connects faster than refill would.
      if (connecting === 0 && shared.length < this.#pool.connections.max && this.#health.kind !== 'ejected' && this.#refillTimer === null) {
        const wait = this.#connectWait(this.#clock.now());
        if (wait === 0) this.#open();
        else this.#openAfter(wait);
      }
      // A connection past its lifetime still serves until its replacement is ready.
      return retiring;
    }
    // Every ready connection is full: another one, for the requests after this one.
    if (!stalledOnly && connecting === 0 && shared.length < this.#pool.connections.max) this.#open();
    return best;
  }

  /** Any ready shared connection? */
  get usable(): boolean {
    for (const conn of this.#shared) if (conn.ready) return true;
    return false;
  }

  /** Lends an exclusive connection to `holder`; rejects after queue.timeout. The lease owns its return. */
  acquireExclusive(holder: LeaseHolder): Promise<Lease> {
    return this.#exclusive.acquire(holder);
  }

  /**
   * Periodic duties, called by the pool's sweep: ejection expiry, request deadlines, heartbeats of
   * idle connections, idle_timeout above min, and max_lifetime replacement.
   */
  tick(now: number): void {
    const before = this.#health;
    const after = nextHealth(before, { kind: 'tick', now }, this.#ejectPolicy, now);
    if (after !== before) {
      this.#setHealth(after);
      this.#refill();
    }
    const { requestTimeoutMs, idleTimeoutMs, connections, heartbeat } = this.#pool;
    this.#exclusive.tick(now);
    const suspects = this.#suspects;
    this.#suspects = new Set();
    if (this.#stalled.size > 0) this.#stalled = new Set();
    let idleAboveMin = this.#shared.length - connections.min;
    // Backwards: destroy() removes the connection from #shared through onClose.
    for (let i = this.#shared.length - 1; i >= 0; i--) {
      const conn = this.#shared[i];
      if (conn === undefined || !conn.ready) continue;
      if (conn.readSinceMark) {
        conn.markProgress(now);
        if (heartbeat.intervalMs > 0) conn.scheduleBeat(now + jittered(this.#clock, heartbeat.intervalMs, heartbeat.jitter));
        // Heartbeat replies keep a connection honest, not busy: idle_timeout counts client traffic only.
        conn.noteUse(now);
      }
      const beat = conn.heartbeat;
      if (beat.kind === 'awaiting') {
        // A heartbeat is out: it alone decides, client requests behind it included. Each
        // heartbeat.timeout it stays unanswered is one miss; no second one is sent behind it.
        if (now - beat.sentAt < heartbeat.timeoutMs * (beat.misses + 1)) continue;
        const misses = conn.miss();
        this.counters.heartbeatFailures.timeout++;
        if (misses >= heartbeat.misses) {
          this.#evict(conn, 'heartbeat_failed', `heartbeat unanswered for ${misses} × ${heartbeat.timeoutMs}ms`);
        }
        continue;
      }
      if (conn.inflight > 0) {
        // From when the oldest request was written (or last read), never from an idle-time mark.
        const stalledFor = requestTimeoutMs > 0 ? conn.stalledFor(now) : 0;
        if (requestTimeoutMs > 0 && stalledFor * 2 >= requestTimeoutMs) this.#stalled.add(conn);
        if (requestTimeoutMs > 0 && stalledFor >= requestTimeoutMs) {
          const message = `no response for ${requestTimeoutMs}ms`;
          // Matched by id, the stuck requests fail alone; in order, the connection is stuck behind them.
          if (suspects.has(conn)) {
            if (!conn.expireStalled(now, requestTimeoutMs, message)) this.#evict(conn, 'request_timeout', message);
          } else {
            this.#suspects.add(conn);
          }
        }
        continue;
      }
      if (conn.retiring && this.#readyCount() > 0) {
        conn.destroy('max_lifetime', 'reached max_lifetime');
        continue;
      }
      if (now >= conn.expiresAt && !conn.retiring) {
        // Replace before retiring: the new connection opens now, the old one closes once another is ready.
        conn.retire();
        this.#refill();
      }
      if (idleTimeoutMs > 0 && idleAboveMin > 0 && now - conn.lastUsedAt >= idleTimeoutMs) {
        idleAboveMin--;
        conn.destroy('idle_timeout', `idle for ${idleTimeoutMs}ms`);
        continue;
      }
      if (heartbeat.intervalMs > 0 && now >= beat.dueAt) conn.beat(now);
    }
  }

  /**
   * A connection that stopped answering: closed and its siblings checked. Only an unanswered
   * heartbeat counts against the server's health: a request past its deadline may be stuck behind
   * a slow script on a server that is alive (the siblings' heartbeats tell which).
   */
  #evict(conn: Connection, reason: CloseReason, message: string): void {
    this.#log.warn('pooled connection evicted', { pool: this.#pool.name, server: this.name, reason, error: message });
    // The failure first: the refill that destroy() triggers must see the server failing, not up.
    if (reason === 'heartbeat_failed') this.#connectFailed(message);
    conn.destroy(reason, message);
    this.#sweepSiblings();
  }

  /**
   * After one connection to this server died, heartbeat every idle sibling now rather than at
   * its next interval: the next client should not be the one to find the next dead connection.
   */
  #sweepSiblings(): void {
    if (this.#pool.heartbeat.intervalMs === 0) return;
    const now = this.#clock.now();
    for (const conn of this.#shared) {
      if (conn.ready && conn.inflight === 0) conn.beat(now);
    }
  }

  onInternalError(_conn: Connection, error: unknown): void {
    this.#events.onInternalError(error);
  }

  onUnasked(_conn: Connection, action: 'answered' | 'dropped'): void {
    this.counters.unasked[action]++;
  }

  onHeartbeat(conn: Connection, reply: HeartbeatReply, sentAt: number): void {
    this.counters.heartbeatDuration.observe((this.#clock.now() - sentAt) / 1000);
    // BUSY or LOADING: the server answered, so it is alive; the connection stays.
    if (reply !== 'error') {
      this.counters.lastHeartbeatSuccess = this.#clock.epochMs() / 1000;
      return;
    }
    this.counters.heartbeatFailures.error++;
    this.#evict(conn, 'heartbeat_failed', 'heartbeat answered with an error');
  }

  stats(): ServerStats {
    let idle = 0;
    let active = 0;
    let connecting = 0;
    let inflight = 0;
    for (const conn of this.#shared) {
      if (!conn.ready) connecting++;
      else if (conn.inflight === 0) idle++;
      else active++;
      inflight += conn.inflight;
    }
    const exclusive = this.#exclusive.stats();
    if (this.#relay) {
      // A relay pool's connections are all exclusive: idle ones are the warm ones, active ones lent.
      idle = exclusive.idle;
      active = exclusive.borrowed;
      connecting = this.#exclusiveConnecting;
    }
    return {
      name: this.config.name,
      address: `${this.config.address.host}:${this.config.address.port}`,
      health: this.#health,
      connections: { idle, active, connecting },
      inflight,
      exclusive,
      counters: this.counters,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#refillTimer !== null) this.#clock.clearTimeout(this.#refillTimer);
    this.#refillTimer = null;
    for (const conn of [...this.#shared]) conn.destroy('shutdown', 'poolside is shutting down');
    await this.#exclusive.close();
  }

  onReady(conn: Connection): void {
    const now = this.#clock.now();
    conn.markProgress(now);
    this.counters.connectDuration.observe((now - conn.createdAt) / 1000);
    const { intervalMs, jitter } = this.#pool.heartbeat;
    if (intervalMs > 0) conn.scheduleBeat(now + jittered(this.#clock, intervalMs, jitter));
    this.#connected();
    this.#events.onConnectionReady(this);
    this.#refill();
  }

  onClose(conn: Connection, reason: CloseReason, message: string, wasReady: boolean): void {
    this.counters.connectionsClosed[reason]++;
    const index = this.#shared.indexOf(conn);
    if (index < 0) return; // an exclusive connection: generic-pool finds out on borrow
    this.#shared.splice(index, 1);
    if (this.#closed) return;
    if (!wasReady) {
      this.counters.connectFailures++;
      this.#log.warn('connect to server failed', { pool: this.#pool.name, server: this.name, reason, error: message });
      if (reason === 'server_busy') this.#connectBusy();
      else this.#connectFailed(message);
    } else if (reason === 'remote_closed' || reason === 'error' || reason === 'protocol_error' || reason === 'unexpected_response') {
      this.#log.warn('pooled connection closed', { pool: this.#pool.name, server: this.name, reason, error: message });
      this.#sweepSiblings();
    }
    this.#refill();
  }

  /** A connect (shared or exclusive) became ready: the server is up, the backoff is over. */
  #connected(): void {
    this.#busyConnects = 0;
    this.#nextConnectAt = 0;
    this.#transition({ kind: 'connected' });
  }

  /** A connect failed or a heartbeat went unanswered: counted against health, next connect backed off. */
  #connectFailed(message: string): void {
    const after = this.#transition({ kind: 'failed', error: message });
    const now = this.#clock.now();
    if (after.kind === 'ejected') this.#nextConnectAt = after.until;
    else if (after.kind === 'failing') this.#nextConnectAt = now + backoffDelay(after.failures, this.#pool.connect.backoff, this.#clock);
  }

  /** The server answered a new connection with BUSY/LOADING: alive, not a failure, but not serving yet either. */
  #connectBusy(): void {
    this.#busyConnects++;
    this.#nextConnectAt = this.#clock.now() + backoffDelay(this.#busyConnects, this.#pool.connect.backoff, this.#clock);
  }

  /**
   * How long an exclusive connect must wait before it may start (0: now). The same rules as the
   * shared refill: an ejected server waits for its probe time, a failing one for its backoff, and
   * while the server fails only one connect is in flight.
   */
  #connectWait(now: number): number {
    const retry = this.#pool.connect.backoff.initialMs;
    const health = this.#health;
    if (health.kind === 'ejected') return Math.max(retry, health.until - now);
    const failures = health.kind === 'failing' || health.kind === 'probing' ? health.failures : 0;
    if (failures === 0 && this.#busyConnects === 0) return 0;
    if (this.#connecting() + this.#exclusiveConnecting > 0) return retry;
    return Math.max(0, this.#nextConnectAt - now);
  }

  #transition(event: { kind: 'connected' } | { kind: 'failed'; error: string }): ServerHealth {
    const now = this.#clock.now();
    const after = nextHealth(this.#health, event, this.#ejectPolicy, now);
    if (after !== this.#health) this.#setHealth(after);
    return after;
  }

  #setHealth(after: ServerHealth): void {
    const before = this.#health;
    this.#health = after;
    if (after.kind === 'ejected' && before.kind === 'probing') {
      this.#log.debug('probe of ejected server failed', { pool: this.#pool.name, server: this.name, error: after.lastError, next_probe_ms: after.until - this.#clock.now() });
    } else if (after.kind === 'ejected' && before.kind !== 'ejected') {
      this.counters.ejections++;
      this.#log.warn('server ejected', {
        pool: this.#pool.name,
        server: this.name,
        reason: 'ejected',
        failures: after.failures,
        error: after.lastError,
        next_probe_ms: after.until - this.#clock.now(),
      });
    } else if (after.kind === 'up' && before.kind !== 'up' && before.kind !== 'starting') {
      this.#log.info('server back in routing', { pool: this.#pool.name, server: this.name });
    }
    this.#events.onHealthChange(this, before, after);
  }

  /** Keeps the pool at min: opens what is missing now, or after a backoff while the server fails. */
  #refill(): void {
    // A relay pool (protocol: tcp) has no shared connections: its exclusive pool keeps them warm.
    if (this.#closed || this.#refillTimer !== null || this.#relay) return;
    const health = this.#health;
    if (health.kind === 'ejected') return;
    let live = 0;
    for (const conn of this.#shared) if (!conn.retiring) live++;
    const missing = this.#pool.connections.min - live;
    if (missing <= 0) return;
    const failures = health.kind === 'failing' || health.kind === 'probing' ? health.failures : 0;
    if (failures === 0 && this.#busyConnects === 0) {
      for (let i = 0; i < missing; i++) this.#open();
      return;
    }
    // Failing, probing or busy: one connect at a time (single-flight), exclusive ones included. A
    // probe goes at once (its wait was the ejection); otherwise the next attempt waits the backoff
    // the last failure set.
    if (this.#connecting() + this.#exclusiveConnecting > 0) return;
    const delay = health.kind === 'probing' ? 0 : this.#nextConnectAt - this.#clock.now();
    if (delay <= 0) this.#open();
    else this.#openAfter(delay);
  }

  /** One connect after `delay`, if the server is still not ejected and no other connect is in flight by then. */
  #openAfter(delay: number): void {
    this.#refillTimer = this.#clock.setTimeout(() => {
      this.#refillTimer = null;
      if (!this.#closed && this.#health.kind !== 'ejected' && this.#connecting() + this.#exclusiveConnecting === 0) this.#open();
      else this.#refill();
    }, delay);
    this.#refillTimer.unref();
  }

  /** Shared connects in progress. */
  #connecting(): number {
    let n = 0;
    for (const conn of this.#shared) if (!conn.ready) n++;
    return n;
  }

  #open(): Connection {
    const now = this.#clock.now();
    const conn = new Connection(this.#codec, this.#settings, this, now);
    this.counters.connectionsOpened++;
    this.#shared.push(conn);
    const { maxLifetimeMs, heartbeat } = this.#pool;
    if (maxLifetimeMs > 0) conn.expireAt(now + jittered(this.#clock, maxLifetimeMs, heartbeat.jitter));
    conn.start();
    return conn;
  }

  /** Ready connections that take new requests. */
  #readyCount(): number {
    let n = 0;
    for (const conn of this.#shared) if (conn.ready && !conn.retiring) n++;
    return n;
  }

  /** Exclusive connection closes are counted like shared ones, and their failed connects count against health. */
  #countExclusiveClose(reason: CloseReason, message: string): void {
    this.counters.connectionsClosed[reason]++;
    if (reason === 'connect_failed' || reason === 'init_failed' || reason === 'server_busy') {
      this.counters.connectFailures++;
      this.#log.warn('exclusive connect to server failed', { pool: this.#pool.name, server: this.name, reason, error: message });
      if (reason === 'server_busy') this.#connectBusy();
      else this.#connectFailed(message);
    }
  }
}

