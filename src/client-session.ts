/**
 * One client of a pool: frames its requests, routes each to a connection, and writes the replies
 * back in request order.
 *
 *   client bytes ─▶ request decoder ─▶ onRequest ─▶ Slot ─┬─▶ #replies (reply order, written from the head)
 *                                                        └─▶ #backlog (only while waiting) ─▶ #dispatch
 *   #dispatch ─▶ shared connection (least in flight; the same one while this session has
 *                requests on it, so a session's requests to one server run in the order sent)
 *            └─▶ pinned exclusive connection (MULTI…EXEC, WATCH, BLPOP, AUTH…, SUBSCRIBE)
 *   connection ─▶ Slot.onResponse ─▶ #flush: write every finished slot at the head
 *
 * A session waits (and holds later requests in #backlog, in order) for one of three things: its
 * requests in flight to finish before it changes lease (`idle`), an exclusive connection
 * (`lease`), or a ready connection in the pool (`connection`, bounded by queue.max and
 * queue.timeout).
 */
import type net from 'node:net';
import { screen, WRONGPASS } from './client-auth.js';
import type { ClientAuth } from './client-auth.js';
import type { ArgView, RequestDecoder, RequestSink } from './codec/codec.js';
import type { Codec } from './codec/registry.js';
import type { CommandSpec } from './codec/redis-commands.js';
import type { FailureReason } from './errors.js';
import type { Connection, ResponseTarget } from './pool/connection.js';
import { DB_UNKNOWN } from './pool/connection.js';
import type { Pool, Waiter } from './pool/pool.js';
import { NO_SERVER } from './router/router.js';
import { InputBudget } from './session/input-budget.js';
import { ClientOutput } from './session/output.js';
import { Fifo } from './util/fifo.js';
import type { Logger } from './util/log.js';

const EMPTY = Buffer.alloc(0);
/** The request's keys map to more than one server (ketama). */
const CROSS_SERVER = -2;
/** Commands without keys that any server of a ketama pool can answer. */
const KEYLESS_ANYWHERE = new Set(['PING', 'ECHO', 'TIME', 'COMMAND', 'LOLWUT', 'HELLO', 'QUIT']);

/** One request, from the moment it is framed until its reply is written. */
class Slot implements ResponseTarget {
  response: Buffer = EMPTY;
  done = false;
  /** Server index and connection it was sent on (-1 / null before that). */
  server = -1;
  conn: Connection | null = null;
  retried = false;
  /** For SELECT: the database it selects (-1 if the server must judge it). */
  selectDb = -1;
  /** Clock time when the request was framed; 0 for replies that answer no request. */
  startedAt = 0;

  constructor(
    readonly session: ClientSession,
    readonly bytes: Buffer,
    readonly spec: CommandSpec,
    readonly hash: number,
  ) {}

  onResponse(bytes: Buffer): void {
    this.session.onSlotResponse(this, bytes);
  }

  onFailure(reason: FailureReason, message: string, retryable: boolean): void {
    this.session.onSlotFailure(this, reason, message, retryable);
  }
}

type Lease =
  | { kind: 'shared' }
  | { kind: 'acquiring' }
  | {
      kind: 'pinned';
      conn: Connection;
      server: number;
      outstanding: number;
      multi: boolean;
      watch: boolean;
      /** Connection state that only a RESET undoes (AUTH, HELLO 3, CLIENT SETNAME…). */
      session: boolean;
      relay: boolean;
    };

type WaitFor = 'none' | 'idle' | 'lease' | 'connection';

export interface SessionOptions {
  pool: Pool;
  log: Logger;
  /** Called once when the session is gone. */
  onClose(session: ClientSession): void;
}

export class ClientSession implements RequestSink, Waiter {
  readonly #socket: net.Socket;
  readonly #pool: Pool;
  readonly #codec: Codec;
  readonly #log: Logger;
  readonly #decoder: RequestDecoder;
  readonly #onClosed: (session: ClientSession) => void;
  readonly #replies = new Fifo<Slot>();
  readonly #backlog = new Fifo<Slot>();
  #wait: WaitFor = 'none';
  /** When the request at the head of the backlog began waiting for a connection; -1 = not waiting. */
  #waitSince = -1;
  #outstanding = 0;
  #lease: Lease = { kind: 'shared' };
  /** Database chosen by SELECT; -1 = the server's configured one. */
  #db = -1;
  /** Per server: the shared connection this session's in-flight requests are on, and how many. */
  readonly #affConn: (Connection | null)[];
  readonly #affCount: Int32Array;
  /** client_auth, when the pool has it; null: clients need not authenticate to poolside. */
  readonly #auth: ClientAuth | null;
  #authenticated: boolean;
  /** A transaction whose MULTI could not be served: its commands fail until EXEC/DISCARD. */
  #txAborted: { reason: FailureReason; message: string } | null = null;
  #closed = false;
  #quitting = false;
  readonly #output: ClientOutput;
  readonly #input: InputBudget;
  /** When the chunk being framed was read: the start time of every request framed from it. */
  #chunkAt = 0;
  readonly #onRelayed = (bytes: Buffer): void => {
    const slot = new Slot(this, EMPTY, RELAYED, -1);
    slot.response = bytes;
    slot.done = true;
    this.#queueReply(slot);
    this.#flush();
  };
  // Key routing scratch, reused for every request of a ketama pool.
  #keyBytes: Buffer = EMPTY;
  #keyHash = -1;
  #keyServer = -1;
  readonly #visitKey = (start: number, end: number): void => {
    const hash = this.#pool.hashKey(this.#keyBytes, start, end);
    const server = this.#pool.route(hash);
    if (this.#keyServer === -1) {
      this.#keyHash = hash;
      this.#keyServer = server;
    } else if (server !== this.#keyServer) {
      this.#keyHash = CROSS_SERVER;
    }
  };

  constructor(socket: net.Socket, options: SessionOptions) {
    this.#socket = socket;
    this.#pool = options.pool;
    this.#codec = options.pool.codec;
    this.#log = options.log;
    this.#onClosed = options.onClose;
    this.#decoder = this.#codec.requestDecoder(this, options.pool.config.maxRequestBytes);
    this.#auth = options.pool.clientAuth;
    this.#authenticated = this.#auth === null;
    const servers = options.pool.servers.length;
    this.#affConn = new Array<Connection | null>(servers).fill(null);
    this.#affCount = new Int32Array(servers);
    socket.setNoDelay(true);
    this.#output = new ClientOutput(socket, options.pool.clientLimits);
    this.#input = new InputBudget(options.pool.clientLimits, this.#output);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => {}); // 'close' follows; a client's reset is not poolside's error
    socket.on('close', () => this.#onClose());
  }

  onRequest(bytes: Buffer, args: ArgView): void {
    if (this.#quitting) return;
    const pool = this.#pool;
    pool.counters.requests++;
    const spec = this.#codec.classify(bytes, args);
    if (this.#auth !== null && (!this.#authenticated || spec.name === 'AUTH' || spec.name === 'HELLO')) {
      if (this.#screen(spec.name, bytes, args)) return;
    }
    let hash = -1;
    if (pool.router.keyed) {
      this.#keyBytes = bytes;
      this.#keyHash = -1;
      this.#keyServer = -1;
      const keys = this.#codec.forEachKey(spec, bytes, args, this.#visitKey);
      hash = this.#keyHash;
      if (keys === 0 && spec.use === 'shared' && !KEYLESS_ANYWHERE.has(spec.name)) {
        const slot = new Slot(this, bytes, spec, hash);
        this.#queueReply(slot);
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} has no key to route by in ketama pool ${pool.config.name}`);
        return;
      }
    }
    const slot = new Slot(this, bytes, spec, hash);
    slot.startedAt = this.#chunkAt;
    // Nothing after QUIT runs, even when QUIT itself has to wait behind earlier requests.
    if (spec.use === 'quit') this.#quitting = true;
    if (spec.use === 'select') slot.selectDb = this.#codec.selectIndex(bytes, args);
    this.#queueReply(slot);
    if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
  }

  /** Applies client_auth to a request; true when it was answered or replaced here. */
  #screen(name: string, bytes: Buffer, args: ArgView): boolean {
    const screened = screen(this.#auth as ClientAuth, name, bytes, args, this.#authenticated);
    switch (screened.kind) {
      case 'pass':
        return false;
      case 'answer': {
        if (screened.reply === WRONGPASS) {
          this.#pool.counters.authFailures++;
          this.#log.warn('client sent wrong credentials', { pool: this.#pool.config.name, reason: 'auth_failed' });
        }
        this.#authenticated = screened.authenticated;
        const slot = new Slot(this, EMPTY, RELAYED, -1);
        this.#queueReply(slot);
        this.#answer(slot, screened.reply);
        return true;
      }
      case 'replace':
        this.#authenticated = true;
        this.#pool.counters.requests--;
        this.#codec.requestDecoder(this, this.#pool.config.maxRequestBytes).push(screened.request);
        return true;
    }
  }

  /** Pool: a connection became ready, or routing changed. */
  resume(): void {
    if (this.#wait !== 'connection') return;
    this.#wait = 'none';
    const since = this.#waitSince;
    this.#drainBacklog();
    if ((this.#wait as WaitFor) !== 'connection') {
      this.#pool.counters.waitDuration.observe((this.#pool.now() - since) / 1000);
      this.#waitSince = -1;
    }
  }

  /** Pool: queue.timeout passed or nothing is left to wait for; every held request fails. */
  abandon(reason: FailureReason, message: string): void {
    if (this.#wait !== 'connection') return;
    this.#wait = 'none';
    this.#waitSince = -1;
    this.#failBacklog(reason, message);
  }

  onSlotResponse(slot: Slot, bytes: Buffer): void {
    this.#settle(slot);
    if (slot.spec.use === 'select') {
      if (this.#codec.isErrorResponse(bytes)) {
        // Refused: the server did not move; whoever uses the connection next selects again.
        if (slot.conn !== null && slot.conn.db === slot.selectDb) slot.conn.db = DB_UNKNOWN;
      } else if (slot.selectDb >= 0) {
        this.#db = slot.selectDb;
      }
    }
    slot.response = bytes;
    slot.done = true;
    this.#flush();
    this.#afterSettle();
  }

  onSlotFailure(slot: Slot, reason: FailureReason, message: string, retryable: boolean): void {
    const lease = this.#lease;
    const onPinned = lease.kind === 'pinned' && slot.conn === lease.conn;
    this.#settle(slot);
    if (onPinned) {
      if (lease.multi) this.#txAborted = { reason, message };
      this.#lease = { kind: 'shared' };
      this.#pool.servers[lease.server].releaseExclusive(lease.conn, true);
    } else if (retryable && slot.spec.idempotent && !slot.retried && !this.#closed) {
      slot.retried = true;
      this.#pool.counters.retries++;
      if (this.#sendShared(slot, false)) return;
    }
    slot.conn = null; // answered by poolside, not by a read from that connection
    this.#answerError(slot, reason, message);
    this.#afterSettle();
  }

  /** Closes the client; replies still owed are dropped as they arrive. */
  close(): void {
    this.#socket.destroy();
  }

  // ── dispatch ────────────────────────────────────────────────────────────────────────────────

  /** Sends or answers the slot; false when it must wait (this.#wait says for what). */
  #dispatch(slot: Slot): boolean {
    const spec = slot.spec;
    if (this.#txAborted !== null) {
      const { reason, message } = this.#txAborted;
      if (spec.use === 'pin-close') this.#txAborted = null;
      this.#answerError(slot, reason, `transaction aborted: ${message}`);
      return true;
    }
    switch (spec.use) {
      case 'quit':
      case 'ok':
        this.#answer(slot, this.#codec.okReply);
        return true;
      case 'unsupported':
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} ${spec.note}`);
        return true;
      case 'pin-open':
      case 'pin-once':
      case 'pin-session':
      case 'relay':
        if (this.#lease.kind === 'pinned') return this.#sendPinned(slot);
        return this.#startPin(slot);
      default:
        if (this.#lease.kind === 'pinned') return this.#sendPinned(slot);
        return this.#sendShared(slot, true);
    }
  }

  #sendShared(slot: Slot, mayWait: boolean): boolean {
    const pool = this.#pool;
    const server = slot.hash === CROSS_SERVER ? CROSS_SERVER : pool.route(slot.hash);
    if (server === CROSS_SERVER) {
      this.#answerError(slot, 'CROSS_SERVER', `keys of ${slot.spec.name} map to different servers of pool ${pool.config.name}`);
      return true;
    }
    if (server === NO_SERVER) {
      this.#answerError(slot, 'NO_HEALTHY_SERVER', `no healthy server in pool ${pool.config.name}`);
      return true;
    }
    let conn = this.#affConn[server];
    if (conn === null || this.#affCount[server] === 0 || !conn.ready) {
      conn = pool.servers[server].pickConnection();
      if (conn === null) {
        if (!mayWait) return false;
        // Kept across resumes that found nothing ready: queue.timeout counts from the first wait.
        if (this.#waitSince < 0) this.#waitSince = pool.now();
        if (!pool.wait(this, this.#waitSince)) {
          this.#answerError(slot, 'QUEUE_FULL', `pool ${pool.config.name} has ${pool.config.queue.max} requests waiting`);
          return true;
        }
        this.#wait = 'connection';
        return false;
      }
      this.#affConn[server] = conn;
      this.#affCount[server] = 0;
    }
    this.#affCount[server]++;
    this.#send(slot, conn, server);
    return true;
  }

  #startPin(slot: Slot): boolean {
    const pool = this.#pool;
    const spec = slot.spec;
    if (pool.router.keyed && (spec.use !== 'pin-once' || slot.hash < 0)) {
      const message = `${spec.name} needs a connection of its own, which ketama pool ${pool.config.name} cannot give`;
      if (spec.use === 'pin-open') this.#txAborted = { reason: 'UNSUPPORTED_COMMAND', message };
      this.#answerError(slot, 'UNSUPPORTED_COMMAND', message);
      return true;
    }
    // Requests already in flight on shared connections must run before anything on the new one.
    if (this.#outstanding > 0) {
      this.#wait = 'idle';
      return false;
    }
    const server = pool.route(slot.hash);
    if (server === NO_SERVER) {
      const message = `no healthy server in pool ${pool.config.name}`;
      if (spec.use === 'pin-open') this.#txAborted = { reason: 'NO_HEALTHY_SERVER', message };
      this.#answerError(slot, 'NO_HEALTHY_SERVER', message);
      return true;
    }
    pool.countPin(spec.note);
    this.#lease = { kind: 'acquiring' };
    this.#wait = 'lease';
    pool.servers[server].acquireExclusive().then(
      (conn) => this.#onLeased(conn, server),
      (err: Error) => this.#onLeaseFailed(err),
    );
    return false;
  }

  #onLeased(conn: Connection, server: number): void {
    if (this.#closed) {
      this.#pool.servers[server].releaseExclusive(conn, false);
      return;
    }
    this.#lease = { kind: 'pinned', conn, server, outstanding: 0, multi: false, watch: false, session: false, relay: false };
    conn.setPushSink(this.#onRelayed);
    this.#wait = 'none';
    this.#drainBacklog();
    // Nothing was sent on it (the request it was for is gone): give it back at once.
    this.#afterSettle();
  }

  #onLeaseFailed(err: Error): void {
    this.#lease = { kind: 'shared' };
    this.#wait = 'none';
    if (this.#closed) return;
    const slot = this.#backlog.shift();
    if (slot !== undefined) {
      this.#pool.waitingRequests--;
      const message = `no exclusive connection for ${slot.spec.name} in pool ${this.#pool.config.name}: ${err.message}`;
      if (slot.spec.use === 'pin-open') this.#txAborted = { reason: 'POOL_TIMEOUT', message };
      this.#answerError(slot, 'POOL_TIMEOUT', message);
    }
    this.#drainBacklog();
  }

  #sendPinned(slot: Slot): boolean {
    const lease = this.#lease;
    if (lease.kind !== 'pinned') throw new Error('sendPinned without a pinned lease');
    const spec = slot.spec;
    if (lease.relay || spec.use === 'relay') {
      // Relay: the connection pushes frames no request asked for; every one goes to the client.
      if (!lease.relay) {
        if (lease.outstanding > 0) {
          this.#wait = 'idle';
          return false;
        }
        lease.relay = true;
        lease.conn.startRelay(this.#onRelayed);
      }
      lease.conn.sendRaw(slot.bytes);
      this.#answer(slot, EMPTY);
      return true;
    }
    switch (spec.name) {
      case 'MULTI':
        lease.multi = true;
        break;
      case 'WATCH':
        lease.watch = true;
        break;
      case 'EXEC':
      case 'DISCARD':
        lease.multi = false;
        lease.watch = false;
        break;
      case 'UNWATCH':
        lease.watch = false;
        break;
      default:
        if (spec.use === 'pin-session') lease.session = true;
    }
    lease.outstanding++;
    // A blocking command may legitimately wait longer than request_timeout.
    if (spec.use === 'pin-once') lease.conn.blocking++;
    this.#send(slot, lease.conn, lease.server);
    return true;
  }

  /** Writes the slot on `conn`, first replaying this session's database if the connection is elsewhere. */
  #send(slot: Slot, conn: Connection, server: number): void {
    const db = this.#db >= 0 ? this.#db : this.#pool.servers[server].config.db;
    if (conn.db !== db) {
      conn.send(this.#codec.encodeSelect(db), this.#pool.servers[server].selectTarget);
      conn.db = db;
    }
    const lease = this.#lease;
    if (slot.selectDb >= 0 && !(lease.kind === 'pinned' && lease.multi)) {
      // The connection will be in that database if the server accepts; the session adopts it
      // only then, and sends nothing more until it knows (a barrier: see onSlotResponse).
      conn.db = slot.selectDb;
    } else if (slot.spec.use === 'select') {
      // Unreadable, or queued in a MULTI that may be discarded: trust nothing after it.
      conn.db = DB_UNKNOWN;
    }
    slot.server = server;
    slot.conn = conn;
    this.#outstanding++;
    conn.send(slot.bytes, slot);
    if (slot.spec.use === 'select') this.#wait = 'idle';
  }

  #hold(slot: Slot): void {
    const pool = this.#pool;
    // The first held request is the one the session now waits for (a lease may be on its way for
    // it): it always stays. Those behind it count against queue.max.
    if (this.#backlog.length > 0 && pool.waitingRequests >= pool.config.queue.max) {
      this.#answerError(slot, 'QUEUE_FULL', `pool ${pool.config.name} has ${pool.config.queue.max} requests waiting`);
      return;
    }
    this.#backlog.push(slot);
    pool.waitingRequests++;
  }

  #drainBacklog(): void {
    for (let slot = this.#backlog.peek(); slot !== undefined && this.#wait === 'none'; slot = this.#backlog.peek()) {
      if (this.#closed) return;
      if (!this.#dispatch(slot)) return;
      this.#backlog.shift();
      this.#pool.waitingRequests--;
    }
  }

  #failBacklog(reason: FailureReason, message: string): void {
    for (let slot = this.#backlog.shift(); slot !== undefined; slot = this.#backlog.shift()) {
      this.#pool.waitingRequests--;
      this.#answerError(slot, reason, message);
    }
  }

  // ── replies ─────────────────────────────────────────────────────────────────────────────────

  /** Bookkeeping for a slot that got its response or failed. */
  #settle(slot: Slot): void {
    this.#outstanding--;
    const lease = this.#lease;
    if (lease.kind === 'pinned' && slot.conn === lease.conn) {
      lease.outstanding--;
      if (slot.spec.use === 'pin-once') lease.conn.blocking--;
    } else if (slot.server >= 0 && this.#affConn[slot.server] === slot.conn) {
      this.#affCount[slot.server]--;
    }
  }

  #afterSettle(): void {
    const lease = this.#lease;
    if (lease.kind === 'pinned' && lease.outstanding === 0 && !lease.multi && !lease.watch && !lease.session && !lease.relay) {
      this.#lease = { kind: 'shared' };
      const server = this.#pool.servers[lease.server];
      server.releaseExclusive(lease.conn, lease.conn.db !== server.config.db);
    }
    if (this.#wait === 'idle' && this.#outstanding === 0) {
      this.#wait = 'none';
      this.#drainBacklog();
    }
  }

  #answer(slot: Slot, response: Buffer): void {
    slot.response = response;
    slot.done = true;
    this.#flush();
  }

  #answerError(slot: Slot, reason: FailureReason, message: string): void {
    this.#pool.fail(reason, message);
    this.#answer(slot, this.#codec.errorReply(reason, message));
  }

  /** Every slot enters #replies here and leaves it in #flush: the input budget counts it in between. */
  #queueReply(slot: Slot): void {
    this.#replies.push(slot);
    this.#input.add(slot.bytes.length);
  }

  #flush(): void {
    const replies = this.#replies;
    let now = 0;
    for (let head = replies.peek(); head !== undefined && head.done; head = replies.peek()) {
      replies.shift();
      this.#input.release(head.bytes.length);
      if (head.startedAt > 0) {
        // A reply ends when the read that completed it happened: one clock read per server read,
        // not per reply. Replies poolside made itself end now.
        const conn = head.conn;
        let end = conn !== null && conn.lastReadAt >= head.startedAt ? conn.lastReadAt : now;
        if (end === 0) end = now = this.#pool.now();
        this.#pool.counters.requestDuration.observe((end - head.startedAt) / 1000);
      }
      if (!this.#closed) this.#output.write(head.response);
    }
    // QUIT, a protocol error, or the client shut down its write side: end after the last reply.
    if (this.#quitting && replies.length === 0 && !this.#closed) this.#output.end();
  }

  // ── client events ───────────────────────────────────────────────────────────────────────────

  #onData(chunk: Buffer): void {
    if (this.#quitting) return;
    // One clock read per read from the client, not per request framed from it.
    this.#chunkAt = this.#pool.now();
    try {
      this.#decoder.push(chunk);
      this.#input.check(this.#decoder.buffered);
    } catch (err) {
      const message = (err as Error).message;
      this.#pool.counters.protocolErrors++;
      const slot = new Slot(this, EMPTY, RELAYED, -1);
      this.#queueReply(slot);
      this.#quitting = true;
      this.#answerError(slot, 'PROTOCOL_ERROR', message);
    }
  }

  /** The client shut down its write side (half-close): nothing more comes; its requests are still answered. */
  #onEnd(): void {
    this.#quitting = true;
    // A FIN may as well be a client that is gone: a blocking command it waits on may never
    // return, so, like Redis at EOF, drop it rather than hold its exclusive connection.
    const lease = this.#lease;
    if (lease.kind === 'pinned' && lease.conn.blocking > 0) this.close();
    else if (this.#replies.length === 0 && !this.#closed) this.#output.end();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.waitingRequests -= this.#backlog.length;
    this.#backlog.drain();
    const lease = this.#lease;
    if (lease.kind === 'pinned') {
      this.#lease = { kind: 'shared' };
      // In flight, mid-transaction or subscribed: the connection cannot be lent as it is.
      const dirty = lease.multi || lease.watch || lease.session || lease.conn.db !== this.#pool.servers[lease.server].config.db;
      this.#pool.servers[lease.server].releaseExclusive(lease.conn, dirty);
    }
    this.#onClosed(this);
  }
}

/** The spec of replies that answer no request of their own (relayed frames, a protocol error). */
const RELAYED: CommandSpec = { name: '', use: 'shared', keys: { kind: 'none' }, idempotent: false, note: '' };
