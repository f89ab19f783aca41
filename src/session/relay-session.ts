/**
 * One client of a relay pool (protocol: tcp): no framing, no requests. The client gets an
 * exclusive connection from the server's warm pool for its whole life, and bytes are relayed both
 * ways as they come:
 *
 *   client ──data──▶ conn.write()   false ⇒ pause the client until the connection drains
 *   server ──data──▶ socket.write() false ⇒ pause the connection until the client drains
 *   client FIN ──▶ server FIN (after the bytes); server FIN ──▶ client FIN; the other direction flows on
 *   both FINs, or the client gone ──▶ the connection is destroyed and a fresh one warmed …
 *
 * … unless the pool declares `tcp.reset`. Then a client's FIN (or its leaving) is not relayed:
 * poolside sends the reset exchange behind the client's bytes, relays what the server sends before
 * the reset's reply to the client (a client that half-closed still gets every reply), and when the
 * stream's last bytes are the expected reply, the connection is proven clean and lent again; the
 * client then gets its FIN. A server that shuts its side, a mismatch or no reply within the
 * deadline, and the connection is destroyed instead.
 *
 * A server connection that dies under the client closes the client: with a FIN when the server
 * had sent its own FIN first (nothing was lost), with an RST otherwise (the stream was cut).
 */
import type net from 'node:net';
import { expectLength } from '../config/probe.js';
import type { FailureReason } from '../errors.js';
import type { CloseReason, Connection, StreamSink } from '../pool/connection.js';
import type { Lease, LeaseHolder } from '../pool/lease.js';
import type { ClientInfo, Pool, PoolClient } from '../pool/pool.js';
import { stillMatches } from '../pool/probe.js';
import type { Timer } from '../util/clock.js';
import type { Logger } from '../util/log.js';

export interface RelaySessionOptions {
  /** poolside-wide unique. */
  id: number;
  pool: Pool;
  log: Logger;
  onClose(session: RelaySession, pool: Pool): void;
  /** The listener it came in on, as written in /stats. */
  listener?: string;
}

type RelayState =
  /** Waiting for a connection (the client's reads paused meanwhile). */
  | { kind: 'waiting' }
  | { kind: 'relaying'; lease: Lease; conn: Connection }
  /**
   * tcp.reset sent after the client's FIN or departure: server bytes go to the client (if it is
   * still there) except the last `held` ones, which may be the start of the reset's reply.
   */
  | { kind: 'resetting'; lease: Lease; conn: Connection; held: Buffer; timer: Timer }
  | { kind: 'done' };

export class RelaySession implements LeaseHolder, PoolClient, StreamSink {
  readonly id: number;
  readonly #socket: net.Socket;
  readonly #pool: Pool;
  readonly #log: Logger;
  readonly #onClosed: (session: RelaySession, pool: Pool) => void;
  readonly #listener: string | null;
  readonly #createdAt: number;
  /** Last byte either way: clients.idle_timeout counts from here. */
  #activeAt: number;
  #state: RelayState = { kind: 'waiting' };
  /** The client sent its FIN; the server sent its FIN. */
  #clientEnded = false;
  #serverEnded = false;
  /** The client socket closed (or was closed): the session is gone from the pool. */
  #closed = false;
  #started = false;
  /**
   * #finish is waiting for the bytes still queued to the server to leave (then the connection is
   * destroyed), until this deadline: a server that stopped reading would otherwise keep the
   * connection lent to a client that is gone, forever.
   */
  #finishing: Timer | null = null;

  constructor(socket: net.Socket, options: RelaySessionOptions) {
    this.id = options.id;
    this.#socket = socket;
    this.#pool = options.pool;
    this.#log = options.log;
    this.#onClosed = options.onClose;
    this.#listener = options.listener ?? null;
    this.#createdAt = options.pool.now();
    this.#activeAt = this.#createdAt;
  }

  /** Listens to the client and asks for its connection. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const socket = this.#socket;
    socket.setNoDelay(true);
    // Nothing is read until there is somewhere to put it.
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.#onClientData(chunk));
    socket.on('end', () => this.#onClientEnd());
    socket.on('drain', () => {
      const state = this.#state;
      if (state.kind === 'relaying' || state.kind === 'resetting') state.conn.resumeStream();
    });
    socket.on('error', () => {});
    socket.on('close', () => this.#onClientClose());
    this.#acquire();
  }

  #acquire(): void {
    const pool = this.#pool;
    const server = pool.route(null);
    if (server === null) {
      this.#refuse('NO_HEALTHY_SERVER', `no healthy server in pool ${pool.config.name}`);
      return;
    }
    if (server.stats().exclusive.pending >= pool.config.queue.max) {
      this.#refuse('QUEUE_FULL', `${pool.config.queue.max} clients already wait for a connection`);
      return;
    }
    const since = pool.now();
    server.acquireExclusive(this).then(
      (lease) => {
        const waited = pool.now() - since;
        if (waited > 0) pool.counters.waitDuration.observe(waited / 1000);
        this.#onLeased(lease);
      },
      () => this.#refuse('POOL_TIMEOUT', `no connection to pool ${pool.config.name} within ${pool.config.queue.timeoutMs}ms`),
    );
  }

  /** No connection for the client: counted and logged like a failed request, and the client closed (a raw protocol has no error to send). */
  #refuse(reason: FailureReason, message: string): void {
    if (this.#closed) return;
    this.#pool.fail(reason, message);
    this.#state = { kind: 'done' };
    this.#socket.destroy();
  }

  #onLeased(lease: Lease): void {
    if (this.#closed || this.#state.kind !== 'waiting') {
      // Nothing was relayed on it: as clean as it came.
      lease.releaseRaw(true);
      return;
    }
    const conn = lease.connection;
    this.#state = { kind: 'relaying', lease, conn };
    conn.attachStream(this);
    this.#socket.resume();
  }

  // ── client side ──

  #onClientData(chunk: Buffer): void {
    const state = this.#state;
    if (state.kind !== 'relaying') return;
    this.#activeAt = this.#pool.now();
    if (!state.conn.write(chunk)) this.#socket.pause();
  }

  #onClientEnd(): void {
    this.#clientEnded = true;
    const state = this.#state;
    if (state.kind !== 'relaying') return;
    if (this.#pool.config.tcp.reset !== null && !this.#serverEnded) {
      this.#startReset(state.lease, state.conn);
      return;
    }
    state.conn.endWrite();
    if (this.#serverEnded) this.#finish(false);
  }

  #onClientClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const state = this.#state;
    // Paused for a client that stopped reading, the connection would never read the reset's reply.
    if (state.kind === 'resetting') state.conn.resumeStream();
    if (state.kind === 'relaying') {
      // Gone without a FIN we relayed (a reset, or a close we made): the connection is clean only
      // if its reset exchange proves it.
      if (this.#pool.config.tcp.reset !== null && !this.#serverEnded && state.conn.ready && !state.conn.halfClosed) this.#startReset(state.lease, state.conn);
      else this.#finish(false);
    }
    this.#onClosed(this, this.#pool);
  }

  // ── server side (StreamSink) ──

  onData(chunk: Buffer): void {
    const state = this.#state;
    if (state.kind === 'resetting') {
      this.#onResetData(state, chunk);
      return;
    }
    if (state.kind !== 'relaying') return;
    this.#activeAt = this.#pool.now();
    if (this.#closed) return;
    if (!this.#socket.write(chunk)) state.conn.pauseStream();
  }

  onEnd(): void {
    this.#serverEnded = true;
    const state = this.#state;
    if (state.kind === 'resetting') {
      this.#endReset(state, 'server_ended', 'the server shut its side during the reset exchange');
      return;
    }
    if (state.kind !== 'relaying') return;
    this.#endClient();
    if (this.#clientEnded || this.#closed) this.#finish(false);
  }

  onDrain(): void {
    if (this.#state.kind === 'relaying' && !this.#clientEnded && this.#finishing === null) this.#socket.resume();
  }

  /** The connection closed; the lease tells the session through onLeaseLost as well. */
  onClose(): void {}

  // ── LeaseHolder ──

  onLeaseLost(_reason: CloseReason, _message: string): void {
    const state = this.#state;
    if (state.kind === 'resetting') {
      this.#clearReset(state);
      this.#state = { kind: 'done' };
      // The client's replies may have been cut with it.
      if (this.#serverEnded) this.#endClient();
      else if (!this.#closed) this.#resetClient();
      return;
    }
    if (state.kind !== 'relaying') return;
    this.#clearFinishing();
    this.#state = { kind: 'done' };
    if (this.#closed) return;
    // The server sent its FIN first: the client has all of it and its FIN. Otherwise the stream was
    // cut: the client must not take it for a complete one.
    if (this.#serverEnded) this.#socket.destroySoon();
    else this.#resetClient();
  }

  onPush(): void {}

  // ── the reset exchange (tcp.reset) ──

  #startReset(lease: Lease, conn: Connection): void {
    const reset = this.#pool.config.tcp.reset;
    if (reset === null) return;
    this.#socket.pause();
    const deadlineMs = this.#deadlineMs();
    const timer = this.#pool.clock.setTimeout(() => {
      const state = this.#state;
      if (state.kind === 'resetting') this.#endReset(state, 'timeout', `reset unanswered within ${deadlineMs}ms`);
    }, deadlineMs);
    this.#state = { kind: 'resetting', lease, conn, held: Buffer.alloc(0), timer };
    conn.resumeStream();
    conn.write(reset.send);
  }

  #onResetData(state: Extract<RelayState, { kind: 'resetting' }>, chunk: Buffer): void {
    const reset = this.#pool.config.tcp.reset;
    if (reset === null) return;
    const need = expectLength(reset.expect);
    const all = state.held.length === 0 ? chunk : Buffer.concat([state.held, chunk]);
    if (all.length >= need && stillMatches(reset.expect, all.subarray(all.length - need))) {
      this.#toClient(all.subarray(0, all.length - need), state.conn);
      state.held = Buffer.alloc(0);
      this.#endReset(state, 'clean', '');
      return;
    }
    // Hold back what could still be the start of the reply; the rest is the client's.
    const keep = Math.min(all.length, need - 1);
    this.#toClient(all.subarray(0, all.length - keep), state.conn);
    state.held = Buffer.from(all.subarray(all.length - keep));
  }

  #toClient(bytes: Buffer, conn: Connection): void {
    if (bytes.length === 0 || this.#closed) return;
    if (!this.#socket.write(bytes)) conn.pauseStream();
  }

  /**
   * The reset exchange is over. `clean`: its reply ended the stream, the client has everything
   * before it and gets its FIN. `server_ended`: the server's FIN came first, so the client has all
   * the server sent (held bytes included) and gets its FIN. `timeout`: the client's last replies may
   * still be on their way (a reply slower than the deadline) and the held bytes may be the start of
   * the reset's reply: it gets neither, but an RST, so a cut stream never looks like a complete one.
   */
  #endReset(state: Extract<RelayState, { kind: 'resetting' }>, outcome: 'clean' | 'server_ended' | 'timeout', why: string): void {
    this.#clearReset(state);
    if (outcome === 'server_ended') this.#toClient(state.held, state.conn);
    this.#state = { kind: 'done' };
    if (outcome !== 'clean') this.#log.debug('tcp connection not reused', { pool: this.#pool.config.name, reason: 'reset_failed', error: why });
    state.lease.releaseRaw(outcome === 'clean');
    if (outcome === 'timeout') {
      if (!this.#closed) this.#resetClient();
    } else {
      this.#endClient();
    }
  }

  /** How long a relay's last exchange may take: the reset's reply, or the client's last bytes leaving. */
  #deadlineMs(): number {
    const { requestTimeoutMs, connect } = this.#pool.config;
    return Math.max(requestTimeoutMs, connect.timeoutMs);
  }

  #clearReset(state: Extract<RelayState, { kind: 'resetting' }>): void {
    this.#pool.clock.clearTimeout(state.timer);
  }

  // ── ending ──

  /**
   * Both directions are over (or the client is gone): the connection goes back only if proven
   * clean. Bytes still queued to the server are let out first (destroying now would drop them).
   */
  #finish(clean: boolean, flushed = false): void {
    const state = this.#state;
    if (state.kind !== 'relaying') return;
    if (!flushed && state.conn.ready && state.conn.writeBuffered > 0) {
      if (this.#finishing !== null) return;
      // A server that stopped reading never takes them: after the deadline they are dropped.
      this.#finishing = this.#pool.clock.setTimeout(() => this.#finish(false, true), this.#deadlineMs());
      state.conn.endWriteThen(() => this.#finish(false, true));
      return;
    }
    this.#clearFinishing();
    this.#state = { kind: 'done' };
    state.lease.releaseRaw(clean);
    if (!this.#closed && this.#clientEnded && this.#serverEnded) this.#socket.destroySoon();
  }

  #clearFinishing(): void {
    if (this.#finishing === null) return;
    this.#pool.clock.clearTimeout(this.#finishing);
    this.#finishing = null;
  }

  /** The client's FIN, after what was written to it. */
  #endClient(): void {
    if (!this.#closed) this.#socket.end();
  }

  #resetClient(): void {
    try {
      this.#socket.resetAndDestroy();
    } catch {
      // RST is TCP's: on a unix socket Node throws ERR_INVALID_HANDLE_TYPE; a close is all there is.
      this.#socket.destroy();
    }
  }

  /** Closes the client now (FIN after what was written); its connection is not reused. */
  close(): void {
    this.#socket.destroy();
  }

  // ── PoolClient ──

  /**
   * Shutdown: a client still waiting for a connection is closed now. A relay cannot tell an idle
   * client from one mid-exchange, so a relaying one keeps going until it leaves or the deadline
   * cuts it.
   */
  drain(): void {
    if (this.#state.kind === 'waiting') this.close();
  }

  /** A reload replaced its pool: it stays on its connection until it leaves (or the reload's deadline). */
  retire(): void {
    this.drain();
  }

  cut(): boolean {
    if (this.#closed) return false;
    this.#endClient();
    this.#socket.destroySoon();
    const state = this.#state;
    if (state.kind === 'relaying') this.#finish(false);
    return true;
  }

  retireDeadline(): boolean {
    return this.cut();
  }

  closeIfIdle(now: number, idleMs: number): boolean {
    if (this.#closed || this.#state.kind === 'resetting' || now - this.#activeAt < idleMs) return false;
    this.#endClient();
    this.#socket.destroySoon();
    if (this.#state.kind === 'relaying') this.#finish(false);
    return true;
  }

  info(now: number): ClientInfo {
    const socket = this.#socket;
    const unix = this.#listener !== null && this.#listener.startsWith('unix:');
    return {
      id: this.id,
      peer: unix || socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort ?? 0}`,
      listener: this.#listener ?? '',
      ageMs: now - this.#createdAt,
      idleMs: now - this.#activeAt,
      lastCommand: '',
      inflight: 0,
      holds: this.#state.kind === 'relaying' ? 'connection' : null,
    };
  }

  describe(now: number): string {
    const info = this.info(now);
    return `id=${info.id} addr=${info.peer} age=${Math.floor(info.ageMs / 1000)} idle=${Math.floor(info.idleMs / 1000)}`;
  }

  get subscribed(): boolean {
    return false;
  }

  kill(): void {
    this.close();
  }

  blockedOn(): null {
    return null;
  }

  pinnedOn(): null {
    return null;
  }
}
