/**
 * A server's exclusive connections: lent to one session at a time (MULTI…EXEC, BLPOP, AUTH,
 * SUBSCRIBE…). generic-pool keeps them, wrapped here so nothing else sees it, with its known
 * pitfalls handled:
 * - a rejecting create() is retried in a tight loop while anyone waits: create() waits the
 *   server's backoff (shared with its shared connections: one connect in flight while it fails,
 *   an ejected server's probe time) before it connects or rejects, and its failures count against
 *   the server's health;
 * - acquire() waits forever without acquireTimeoutMillis: it is always queue.timeout;
 * - a validate() that throws crashes the process: validate() never throws;
 * - an idle resource cannot be dropped from outside: a dead one is caught on borrow (testOnBorrow),
 *   and one idle longer than the heartbeat interval must answer a heartbeat first.
 * Each lent connection is owned by a `Lease` (lease.ts) until it is back in generic-pool's hands: the
 * lease alone decides between returning it (after a RESET with a deadline when dirty) and destroying
 * it, so a slot is given back exactly once whatever happened to the connection. Lent connections are
 * tracked so the sweep enforces request_timeout on them too, blocking commands excepted.
 * generic-pool's destroy() runs for idle eviction and for shutdown alike: the close reason says which.
 *
 * A relay pool (protocol: tcp, `codec.sessionKind === 'relay'`) keeps its connections here and
 * nowhere else: raw connections, `connections.min` of them kept warm (generic-pool's `min`) up to
 * `connections.max`, idle ones above min closed after `idle_timeout`. generic-pool restores `min`
 * only when a resource is destroyed: creates that failed (the server was down at start, or while
 * connections were being replaced) are never retried, so the pool would stay cold until a client
 * paid for a connect. The sweep warms it back (#warm: borrow and return, which makes generic-pool
 * create what is missing and check what is idle). A configured heartbeat (heartbeat.send/expect)
 * proves each new connection before it is ready, probes idle ones every interval (misses evict, as
 * for Redis) and validates one idle longer than the interval before it is lent.
 */
import genericPool from 'generic-pool';
import { judgeHeartbeat } from '../codec/registry.js';
import type { Codec } from '../codec/registry.js';
import type { PoolConfig, ServerConfig } from '../config/schema.js';
import type { Clock } from '../util/clock.js';
import { jittered } from '../util/clock.js';
import { Connection } from './connection.js';
import { describeProbeFailure, runProbe } from './probe.js';
import type { CloseReason, ConnectionOwner, ConnectionSettings } from './connection.js';
import { Lease } from './lease.js';
import type { LeaseHolder, LeaseHome } from './lease.js';

/** What the exclusive pool needs from its server. */
export interface ExclusiveHost {
  /** How long a connect must wait before it may start, by the server's backoff (0: now). */
  connectWait(now: number): number;
  /** A connect starts now; connectSettled() follows once it is ready or failed. */
  connectStarted(): void;
  /** The connect begun with connectStarted() is over (`ready`: the connection is usable). */
  connectSettled(ready: boolean): void;
  /** An exclusive connection closed (connect failures included: they count against health). */
  countClose(reason: CloseReason, message: string): void;
  /**
   * A raw connection the server hung up on before anyone used it, soon after accepting it (a TCP
   * load balancer with no backend): a failed connect in all but name, backed off and counted.
   */
  refusedAfterConnect(message: string): void;
  countHeartbeatTimeout(): void;
  /** A heartbeat sent at `sentAt` (clock time) was answered as expected. */
  heartbeatAnswered(sentAt: number): void;
  /** A frame the server sent on its own was answered or dropped (ConnectionOwner.onUnasked). */
  countUnasked(action: 'answered' | 'dropped'): void;
  /** A lent connection stopped answering: close it and count it against the server's health. */
  evict(conn: Connection, reason: CloseReason, message: string): void;
  /** poolside's own code threw while handling a reply on one of these connections. */
  internalError(error: unknown): void;
}

export class ExclusivePool implements ConnectionOwner, LeaseHome {
  readonly #pool: PoolConfig;
  readonly #server: ServerConfig;
  readonly #codec: Codec;
  readonly #clock: Clock;
  readonly #settings: ConnectionSettings;
  readonly #host: ExclusiveHost;
  readonly #generic: genericPool.Pool<Connection>;
  /** Lent to sessions now, or being reset on their way back. */
  readonly #lent = new Map<Connection, Lease>();
  /** Connects in progress, by the create() promise waiting for each. */
  readonly #connecting = new Map<Connection, { resolve: (conn: Connection) => void; reject: (err: Error) => void }>();
  /** close() began: generic-pool's destroy() calls from now on are shutdown, not idle eviction. */
  #closing = false;
  /** Lent connections the previous tick found past request_timeout (see ServerPool's #suspects). */
  #suspects = new Set<Connection>();
  /** Relay pools: raw connections, kept warm at connections.min. */
  readonly #relay: boolean;
  /** Relay pools: idle connections in generic-pool's hands, with their next heartbeat and the one out. */
  readonly #idle = new Map<Connection, { dueAt: number; probing: Promise<boolean> | null }>();
  /** Relay pools: borrow-and-return rounds of #warm still out. */
  #warming = 0;
  /** Relay pools: an idle connection died in generic-pool's hands (heartbeat, the server hung up): #warm replaces it. */
  #idleDied = false;
  /** Relay pools: connections ever lent to a client (one the server closes unused may be a refusal). */
  readonly #used = new WeakSet<Connection>();

  constructor(pool: PoolConfig, server: ServerConfig, codec: Codec, clock: Clock, settings: ConnectionSettings, host: ExclusiveHost) {
    this.#pool = pool;
    this.#server = server;
    this.#codec = codec;
    this.#clock = clock;
    this.#relay = codec.sessionKind === 'relay';
    const relay = this.#relay;
    // Exclusive connections learn their server-side id during setup (CLIENT UNBLOCK, TRACKING REDIRECT).
    this.#settings = { ...settings, identify: !relay, raw: relay };
    this.#host = host;
    // generic-pool's idleTimeoutMillis ignores min; softIdleTimeoutMillis keeps it.
    const idleMs = relay ? pool.idleTimeoutMs : pool.exclusive.idleTimeoutMs;
    this.#generic = genericPool.createPool<Connection>(
      {
        create: () => this.#create(),
        // Outside close(), generic-pool destroys only what its idle evictor picked (every other
        // path destroys the connection first, and destroy() is idempotent).
        destroy: async (conn) =>
          this.#closing ? conn.destroy('shutdown', 'poolside is shutting down') : conn.destroy('idle_timeout', `idle for ${idleMs}ms`),
        validate: (conn) => this.#validate(conn),
      },
      {
        max: relay ? pool.connections.max : pool.exclusive.max,
        min: relay ? pool.connections.min : 0,
        testOnBorrow: true,
        acquireTimeoutMillis: Math.max(1, pool.queue.timeoutMs),
        ...(relay ? { softIdleTimeoutMillis: idleMs === 0 ? -1 : idleMs, idleTimeoutMillis: Number.MAX_SAFE_INTEGER } : { idleTimeoutMillis: idleMs }),
        evictionRunIntervalMillis: Math.min(idleMs, 30_000),
        autostart: false,
      },
    );
    // A failed create() would otherwise surface as an unhandled 'factoryCreateError' event.
    this.#generic.on('factoryCreateError', () => {});
    this.#generic.on('factoryDestroyError', () => {});
  }

  /** Relay pools: opens the warm connections (connections.min). */
  start(): void {
    if (this.#relay && this.#pool.connections.min > 0) this.#generic.start();
  }

  /** Borrows a connection for `holder`; rejects after queue.timeout. */
  async acquire(holder: LeaseHolder): Promise<Lease> {
    const conn = await this.#generic.acquire();
    this.#idle.delete(conn);
    this.#used.add(conn);
    const lease = new Lease(conn, this, holder);
    this.#lent.set(conn, lease);
    return lease;
  }

  // ── LeaseHome: how a lease gives its connection back ──

  get db(): number {
    return this.#server.db;
  }

  get clock(): Clock {
    return this.#clock;
  }

  get resetTimeoutMs(): number {
    return this.#pool.connect.timeoutMs;
  }

  resetRequests(): Buffer[] {
    const { username, password, db } = this.#server;
    const reset = this.#codec.resetRequest;
    const init = this.#codec.initRequests(username, password, db);
    return reset === null ? init : [reset, ...init];
  }

  isErrorResponse(bytes: Buffer): boolean {
    return this.#codec.isErrorResponse(bytes);
  }

  giveBack(conn: Connection): void {
    this.#lent.delete(conn);
    if (this.#closing) {
      // clear() has run or is running: a connection released now would sit idle in a closed pool.
      conn.destroy('shutdown', 'poolside is shutting down');
      void this.#generic.destroy(conn).catch(() => {});
      return;
    }
    conn.markProgress(this.#clock.now());
    this.#becameIdle(conn);
    void this.#generic.release(conn).catch(() => {});
  }

  /** Relay pools: an idle connection's next heartbeat is due one (jittered) interval from now. */
  #becameIdle(conn: Connection): void {
    if (!this.#relay) return;
    const { intervalMs, jitter } = this.#pool.heartbeat;
    const dueAt = intervalMs > 0 ? this.#clock.now() + jittered(this.#clock, intervalMs, jitter) : Infinity;
    this.#idle.set(conn, { dueAt, probing: null });
  }

  discard(conn: Connection, reason: CloseReason, message: string): void {
    this.#lent.delete(conn);
    conn.destroy(reason, message);
    void this.#generic.destroy(conn).catch(() => {});
  }

  /**
   * request_timeout on lent connections, from the pool's sweep: from when the oldest request in
   * flight was written (or the last read since), as on shared connections, and found so by two
   * ticks in a row.
   */
  tick(now: number): void {
    if (this.#relay) {
      this.#relayTick(now);
      return;
    }
    const { requestTimeoutMs } = this.#pool;
    if (requestTimeoutMs === 0) return;
    const suspects = this.#suspects;
    this.#suspects = new Set();
    for (const [conn, lease] of this.#lent) {
      if (conn.readSinceMark) conn.markProgress(now);
      if (!lease.blocking && conn.stalledFor(now) >= requestTimeoutMs) {
        if (suspects.has(conn)) this.#host.evict(conn, 'request_timeout', `no response for ${requestTimeoutMs}ms on an exclusive connection`);
        else this.#suspects.add(conn);
      }
    }
  }

  /**
   * Relay pools, from the sweep: heartbeats on idle connections (one out at a time; unanswered for
   * misses × timeout evicts it and counts against the server), and warm connections restored to
   * min. A relay has no requests: request_timeout bounds only how long a server may leave relayed
   * bytes unread (and the relay session's last exchanges).
   */
  #relayTick(now: number): void {
    const { heartbeat, requestTimeoutMs } = this.#pool;
    // A lent connection whose server stopped reading: its client is held back (and, paused, cannot
    // even be seen leaving), so the connection would stay lent forever.
    if (requestTimeoutMs > 0) {
      for (const conn of [...this.#lent.keys()]) {
        if (conn.writeStalledFor(now) >= requestTimeoutMs) this.#host.evict(conn, 'request_timeout', `the server took no relayed byte for ${requestTimeoutMs}ms`);
      }
    }
    const probe = heartbeat.probe;
    if (probe !== null && heartbeat.intervalMs > 0) {
      for (const [conn, idle] of this.#idle) {
        if (idle.probing !== null || now < idle.dueAt || !conn.ready) continue;
        idle.probing = this.#heartbeat(conn, heartbeat.timeoutMs * heartbeat.misses).then((ok) => {
          idle.probing = null;
          idle.dueAt = this.#clock.now() + jittered(this.#clock, heartbeat.intervalMs, heartbeat.jitter);
          return ok;
        });
      }
    }
    this.#warm();
  }

  /**
   * One heartbeat on an idle raw connection, waited for up to `timeoutMs`; a failure evicts it
   * (generic-pool drops it on its next borrow, and #warm replaces it).
   */
  async #heartbeat(conn: Connection, timeoutMs: number): Promise<boolean> {
    const probe = this.#pool.heartbeat.probe;
    if (probe === null) return conn.ready;
    const sentAt = this.#clock.now();
    const result = await runProbe(conn, probe, timeoutMs, this.#clock);
    if (result.kind === 'ok') {
      conn.markProgress(this.#clock.now());
      this.#host.heartbeatAnswered(sentAt);
      return true;
    }
    if (result.kind === 'timeout') {
      for (let i = 0; i < this.#pool.heartbeat.misses; i++) this.#host.countHeartbeatTimeout();
    }
    if (conn.ready) this.#host.evict(conn, 'heartbeat_failed', `heartbeat ${describeProbeFailure(result, timeoutMs)}`);
    return false;
  }

  /**
   * Relay pools: brings generic-pool back to min when connects failed or idle connections died.
   * generic-pool has no public way to ask for that, so this borrows every idle connection plus the
   * missing ones and returns them at once: borrowing makes it create what is missing (each create
   * waits the server's backoff, so this never connects faster than the refill would), and
   * testOnBorrow drops the dead idle ones (which creates their replacements). One round at a time,
   * and none while clients wait (they already make generic-pool create).
   */
  #warm(): void {
    const min = this.#pool.connections.min;
    if (this.#closing || this.#warming > 0 || this.#generic.pending > 0) return;
    const missing = min - this.#generic.size;
    if (missing <= 0 && !this.#idleDied) return;
    this.#idleDied = false;
    const rounds = Math.max(0, missing) + this.#generic.available;
    for (let i = 0; i < rounds; i++) {
      this.#warming++;
      this.#generic.acquire().then(
        (conn) => {
          this.#warming--;
          if (this.#closing || !conn.ready) {
            void this.#generic.destroy(conn).catch(() => {});
            return;
          }
          this.#becameIdle(conn);
          void this.#generic.release(conn).catch(() => {});
        },
        () => {
          this.#warming--;
        },
      );
    }
  }

  stats(): { borrowed: number; idle: number; pending: number } {
    return { borrowed: this.#generic.borrowed, idle: this.#generic.available, pending: this.#generic.pending };
  }

  async close(): Promise<void> {
    this.#closing = true;
    // Sessions are closed first, so their leases are on their way back (a reset has a deadline);
    // anything still lent now is ended here, or drain() would wait for it forever.
    for (const conn of [...this.#lent.keys()]) conn.destroy('shutdown', 'poolside is shutting down');
    this.#idle.clear();
    // drain() refuses new acquires and, once the pending ones are settled and every lent
    // connection is back, deschedules generic-pool's evictor: without it the evictor's timer runs
    // forever and keeps this pool (its config: passwords, TLS key) reachable after a reload
    // retired it. It is not awaited: it waits for every pending acquire, which a session that
    // asked for a lease just before shutdown holds for up to queue.timeout (those fail on their
    // own). clear() closes the idle connections and waits only for connects already under way.
    void this.#generic.drain().catch(() => {});
    await this.#generic.clear();
  }

  onReady(conn: Connection): void {
    const waiter = this.#connecting.get(conn);
    this.#connecting.delete(conn);
    waiter?.resolve(conn);
  }

  onHeartbeat(): void {}

  onUnasked(_conn: Connection, action: 'answered' | 'dropped'): void {
    this.#host.countUnasked(action);
  }

  onInternalError(_conn: Connection, error: unknown): void {
    this.#host.internalError(error);
  }

  onClose(conn: Connection, reason: CloseReason, message: string): void {
    this.#host.countClose(reason, message);
    // Without a heartbeat a raw connection is ready at TCP connect: a server that accepts and hangs
    // up at once would otherwise be reconnected every sweep, unbacked-off and never ejected.
    const unused = this.#relay && !this.#used.has(conn) && !this.#connecting.has(conn);
    if (unused && (reason === 'remote_closed' || reason === 'error') && this.#clock.now() - conn.createdAt <= this.#pool.connect.timeoutMs) {
      this.#host.refusedAfterConnect(`the server closed a new connection before it was used: ${message}`);
    }
    // An idle connection that died by itself is still in generic-pool's idle list: testOnBorrow,
    // or #warm, drops it and has it replaced. (generic-pool's own evictions and shutdown are not.)
    if (this.#idle.delete(conn) && reason !== 'idle_timeout' && reason !== 'shutdown') this.#idleDied = true;
    this.#lent.get(conn)?.connectionClosed(reason, message);
    const waiter = this.#connecting.get(conn);
    this.#connecting.delete(conn);
    waiter?.reject(new Error(`connect failed (${reason}): ${message}`));
  }

  /**
   * generic-pool calls this again at once whenever it rejects, for as long as anyone waits: it
   * always waits the server's backoff first, so a refusing server sees one connect per backoff
   * from here, not hundreds a second. Local errors (EMFILE on connect) fail the connect the same
   * way and back off the same way.
   */
  async #create(): Promise<Connection> {
    if (this.#closing) {
      // A session still waiting for a lease after close(): no new connection for it; it times out
      // (queue.timeout) on its own. One nap, so generic-pool's retries cannot spin.
      await new Promise((resolve) => this.#clock.setTimeout(() => resolve(undefined), this.#pool.connect.backoff.initialMs).unref());
      throw new Error('poolside is shutting down');
    }
    const wait = this.#host.connectWait(this.#clock.now());
    if (wait > 0) {
      // At most backoff.initial at a time: generic-pool's clear() waits for pending creates, so
      // a create asleep until an ejected server's next probe would hold up shutdown. A rejection
      // costs nothing here: the next create() checks again, and no connect is made meanwhile.
      const nap = Math.min(wait, this.#pool.connect.backoff.initialMs);
      await new Promise((resolve) => this.#clock.setTimeout(() => resolve(undefined), nap).unref());
      if (this.#closing || this.#host.connectWait(this.#clock.now()) > 0) throw new Error(`server ${this.#server.name} is backing off after failed connects`);
    }
    this.#host.connectStarted();
    let ready = false;
    try {
      const conn = await new Promise<Connection>((resolve, reject) => {
        const conn = new Connection(this.#codec, this.#settings, this, this.#clock.now());
        this.#connecting.set(conn, { resolve, reject });
        conn.start();
      });
      // A relay pool's connection is ready once its heartbeat, if one is configured, is answered: a
      // SIGSTOPped server still completes TCP handshakes from its backlog.
      const probe = this.#pool.heartbeat.probe;
      if (this.#relay && probe !== null) {
        const result = await runProbe(conn, probe, this.#pool.connect.timeoutMs, this.#clock);
        if (result.kind !== 'ok') {
          const message = `heartbeat on connect ${describeProbeFailure(result, this.#pool.connect.timeoutMs)}`;
          conn.destroy('init_failed', message);
          throw new Error(message);
        }
      }
      ready = true;
      if (this.#relay) this.#becameIdle(conn);
      return conn;
    } finally {
      this.#host.connectSettled(ready);
    }
  }

  /** Before lending: a connection idle longer than the heartbeat interval must answer one. */
  #validate(conn: Connection): Promise<boolean> {
    if (this.#relay) return this.#validateRaw(conn);
    if (!conn.ready || conn.inflight > 0) return Promise.resolve(false);
    const { intervalMs, timeoutMs } = this.#pool.heartbeat;
    const heartbeat = this.#codec.heartbeatRequest;
    if (intervalMs === 0 || heartbeat === null || this.#clock.now() - conn.lastProgressAt <= intervalMs) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#host.countHeartbeatTimeout();
        conn.destroy('heartbeat_failed', `validation heartbeat unanswered within ${timeoutMs}ms`);
        resolve(false);
      }, timeoutMs);
      conn.send(heartbeat, {
        onResponse: (bytes) => {
          this.#clock.clearTimeout(timer);
          const ok = judgeHeartbeat(this.#codec, bytes) === 'ok';
          if (ok) conn.markProgress(this.#clock.now());
          else conn.destroy('heartbeat_failed', 'validation heartbeat answered with an error');
          resolve(ok);
        },
        onFailure: () => {
          this.#clock.clearTimeout(timer);
          resolve(false);
        },
      });
    });
  }

  /** Relay pools: the heartbeat already out is waited for; else one is sent when idle longer than the interval. */
  #validateRaw(conn: Connection): Promise<boolean> {
    if (!conn.ready || conn.halfClosed) return Promise.resolve(false);
    const probing = this.#idle.get(conn)?.probing;
    if (probing !== undefined && probing !== null) return probing;
    const { intervalMs, timeoutMs, probe } = this.#pool.heartbeat;
    if (probe === null || intervalMs === 0 || this.#clock.now() - conn.lastProgressAt <= intervalMs) return Promise.resolve(true);
    return this.#heartbeat(conn, timeoutMs);
  }
}
