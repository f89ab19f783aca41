/**
 * An exclusive connection lent to one session: the only owner of that connection's life between
 * acquire and its return to the pool.
 *
 *   ExclusivePool.acquire(holder) ──▶ Lease(lent) ──release(clean)──▶ returned (idle in the pool)
 *                                        │      └──release(dirty)──▶ resetting ──ok──▶ returned
 *                                        │                              └─refused / deadline / died──▶ discarded
 *                                        └──connection died──▶ lost: holder.onLeaseLost(), once; slot freed
 *
 * Every path ends in exactly one of "returned" or "discarded", and each of those gives the slot back to
 * generic-pool exactly once: a refused RESET, a reset that never answers (SIGSTOP, blackhole) or a
 * connection that dies while lent can no longer leave a slot borrowed forever.
 */
import type { FailureReason } from '../errors.js';
import type { Clock, Timer } from '../util/clock.js';
import type { CloseReason, Connection, ResponseTarget } from './connection.js';

/** The session a lease is lent to. */
export interface LeaseHolder {
  /**
   * The connection died while lent. Every request in flight on it has already been failed through
   * its target; this fires once, after them, and the lease is gone.
   */
  onLeaseLost(reason: CloseReason, message: string): void;
  /** A frame the server sent unasked: a RESP3 push, or every frame once relaying. */
  onPush(bytes: Buffer): void;
}

/** What a lease needs from the pool that lent it. */
export interface LeaseHome {
  /** The requests that return a connection to its fresh state (RESET, AUTH, SELECT); each answers once. */
  resetRequests(): Buffer[];
  /** The database a connection is in after the reset. */
  readonly db: number;
  isErrorResponse(bytes: Buffer): boolean;
  /** How long a reset may take before the connection is discarded instead. */
  readonly resetTimeoutMs: number;
  readonly clock: Clock;
  /** The connection is clean: back to the idle pool. Called at most once per lease. */
  giveBack(conn: Connection): void;
  /** The connection cannot be lent again: destroy it and free its slot. Called at most once per lease. */
  discard(conn: Connection, reason: CloseReason, message: string): void;
}

const DROP_PUSH = (): void => {};

export type LeaseState =
  | { kind: 'lent' }
  | { kind: 'resetting'; timer: Timer }
  | { kind: 'returned' }
  | { kind: 'discarded'; reason: CloseReason }
  | { kind: 'lost'; reason: CloseReason };

export class Lease {
  readonly #conn: Connection;
  readonly #home: LeaseHome;
  readonly #holder: LeaseHolder;
  #state: LeaseState = { kind: 'lent' };
  /** Blocking requests (BLPOP…) in flight: exempt from request_timeout while > 0. */
  #blocking = 0;
  readonly #onPush = (bytes: Buffer): void => this.#holder.onPush(bytes);

  constructor(conn: Connection, home: LeaseHome, holder: LeaseHolder) {
    this.#conn = conn;
    this.#home = home;
    this.#holder = holder;
    conn.setPushSink(this.#onPush);
  }

  get state(): LeaseState {
    return this.#state;
  }

  get connection(): Connection {
    return this.#conn;
  }

  get blocking(): boolean {
    return this.#blocking > 0;
  }

  send(bytes: Buffer, target: ResponseTarget, blocking: boolean): void {
    if (this.#state.kind !== 'lent') {
      queueMicrotask(() => target.onFailure('SERVER_ERROR' satisfies FailureReason, 'exclusive connection already returned', false));
      return;
    }
    if (blocking) this.#blocking++;
    this.#conn.send(bytes, target);
  }

  /** A blocking request sent through send(…, true) got its reply or failed. */
  blockingDone(): void {
    if (this.#blocking > 0) this.#blocking--;
  }

  /** From now on every frame from the server goes to the holder (SUBSCRIBE, MONITOR). */
  relay(bytes: Buffer): void {
    if (this.#state.kind !== 'lent') return;
    if (!this.#conn.relaying) this.#conn.startRelay(this.#onPush);
    this.#conn.sendRaw(bytes);
  }

  /**
   * Gives the connection back. `dirty`: the session changed its state (transaction, watch, AUTH,
   * database…), so it is reset first; a connection with requests in flight or relaying cannot be
   * trusted and is discarded. Idempotent: only the first call of a lent lease acts.
   */
  release(dirty: boolean): void {
    if (this.#state.kind !== 'lent') return;
    const conn = this.#conn;
    // A push that arrives while the connection is returned (an invalidation before RESET turned
    // tracking off) is nobody's: dropped, not taken for a broken reply stream.
    conn.setPushSink(DROP_PUSH);
    if (!conn.ready) {
      this.#discard('session_state', 'returned after its connection closed');
      return;
    }
    if (conn.inflight > 0 || conn.relaying) {
      this.#discard('session_state', 'returned with requests in flight or in subscribe mode');
      return;
    }
    const home = this.#home;
    // A protocol that keeps no state on a connection (framed) has nothing to reset: clean as it is.
    const requests = dirty ? home.resetRequests() : [];
    if (requests.length === 0) {
      conn.setPushSink(null);
      this.#state = { kind: 'returned' };
      home.giveBack(conn);
      return;
    }
    let pending = requests.length;
    const timer = home.clock.setTimeout(
      () => this.#discard('reset_failed', `reset unanswered within ${home.resetTimeoutMs}ms`),
      home.resetTimeoutMs,
    );
    this.#state = { kind: 'resetting', timer };
    const target: ResponseTarget = {
      onResponse: (bytes) => {
        if (this.#state.kind !== 'resetting') return;
        if (home.isErrorResponse(bytes)) {
          // RESET renamed away, Redis < 6.2, or AUTH refused after a password rotation: the only
          // other way to a clean connection is a new one.
          this.#discard('reset_failed', bytes.toString('latin1', 0, Math.min(bytes.length, 200)).trim());
          return;
        }
        if (--pending === 0) {
          home.clock.clearTimeout(timer);
          conn.setPushSink(null);
          conn.assumeDb(home.db);
          this.#state = { kind: 'returned' };
          home.giveBack(conn);
        }
      },
      onFailure: (_reason, message) => this.#discard('reset_failed', message),
    };
    for (const request of requests) conn.send(request, target);
  }

  /**
   * Gives back a raw connection a relay session held (protocol: tcp). `clean`: the session proved
   * it clean (its tcp.reset exchange was answered as expected, or nothing was ever relayed on it),
   * so it is lent again; otherwise, or when either side was shut, it is destroyed and the pool
   * warms a fresh one. Idempotent like release().
   */
  releaseRaw(clean: boolean): void {
    if (this.#state.kind !== 'lent') return;
    const conn = this.#conn;
    if (conn.ready) conn.detachStream();
    if (!conn.ready) {
      this.#discard('session_state', 'returned after its connection closed');
      return;
    }
    if (!clean || conn.halfClosed) {
      this.#discard('session_state', clean ? 'a side of the relayed stream was shut' : 'its client left and nothing proved it clean (tcp.reset)');
      return;
    }
    this.#state = { kind: 'returned' };
    this.#home.giveBack(conn);
  }

  /** The pool heard that the connection closed. */
  connectionClosed(reason: CloseReason, message: string): void {
    const state = this.#state;
    if (state.kind === 'lent') {
      this.#state = { kind: 'lost', reason };
      this.#conn.setPushSink(null);
      this.#home.discard(this.#conn, reason, message);
      this.#holder.onLeaseLost(reason, message);
    } else if (state.kind === 'resetting') {
      this.#discard(reason, message);
    }
  }

  #discard(reason: CloseReason, message: string): void {
    const state = this.#state;
    if (state.kind !== 'lent' && state.kind !== 'resetting') return;
    if (state.kind === 'resetting') this.#home.clock.clearTimeout(state.timer);
    this.#state = { kind: 'discarded', reason };
    this.#home.discard(this.#conn, reason, message);
  }
}
