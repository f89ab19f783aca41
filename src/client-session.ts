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
import { ProtocolError } from './codec/codec.js';
import type { CommandSpec } from './codec/redis-commands.js';
import { DISCARD_REQUEST, EXECABORT, RedisTransaction, txRole } from './codec/redis-transaction.js';
import type { DbChange, TxRole } from './codec/redis-transaction.js';
import type { FailureReason } from './errors.js';
import type { CloseReason, Connection, ResponseTarget } from './pool/connection.js';
import { DB_UNKNOWN } from './pool/connection.js';
import type { Lease, LeaseHolder } from './pool/lease.js';
import { describeClient, needsWriteFence, parseClientCommand, rewriteRedirect, unblockRequest, WRITE_FENCE_REQUEST } from './codec/redis-client-commands.js';
import type { ClientCommand } from './codec/redis-client-commands.js';
import { encodeError } from './codec/resp.js';
import type { ClientHandle, Pool, Waiter } from './pool/pool.js';
import { NO_SERVER } from './router/router.js';
import { Fifo } from './util/fifo.js';
import { writeBatch } from './util/write-batch.js';
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
  /** What it means for transaction state, when sent on a pinned connection. */
  role: TxRole = 'other';
  /** Sent as DISCARD for an EXEC that must abort: the client gets this instead of the reply. */
  replaceReply: Buffer | null = null;
  /** Sent on the session's pinned connection (its reply updates the lease's state). */
  pinned = false;
  /** CLIENT REPLY OFF / SKIP: its reply is framed and dropped, never written. */
  silent = false;
  /** For `local` requests: the CLIENT subcommand poolside answers, parsed while the args were valid. */
  local: ClientCommand | null = null;
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

type LeaseState =
  | { kind: 'shared' }
  | { kind: 'acquiring' }
  | {
      kind: 'pinned';
      lease: Lease;
      conn: Connection;
      server: number;
      /** Requests sent on it and not yet answered. */
      outstanding: number;
      /** MULTI / WATCH state, from the server's replies. */
      tx: RedisTransaction;
      /** Connection state that only a RESET undoes (AUTH, HELLO 3, CLIENT SETNAME…), or session mode. */
      session: boolean;
      relay: boolean;
    };

type WaitFor = 'none' | 'idle' | 'lease' | 'connection';

export interface SessionOptions {
  /** poolside-wide unique (CLIENT ID). */
  id: number;
  pool: Pool;
  log: Logger;
  /** Called once when the session is gone. */
  onClose(session: ClientSession): void;
}

export class ClientSession implements RequestSink, Waiter, LeaseHolder, ClientHandle {
  readonly id: number;
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
  #lease: LeaseState = { kind: 'shared' };
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
  readonly #createdAt: number;
  readonly #addr: string;
  readonly #laddr: string;
  /** For CLIENT LIST: the last command, the name set by CLIENT SETNAME, the protocol from HELLO. */
  #lastCommand = 'NULL';
  #name = '';
  #resp = 2;
  /** CLIENT REPLY: ON, OFF (every reply dropped), SKIP (the next request's reply dropped). */
  #replyMode: 'ON' | 'OFF' | 'SKIP' = 'ON';
  /** Closing for an error, not QUIT: destroy once the replies are written, whatever the client sends. */
  #closeHard = false;
  #out: Buffer[] = [];
  /** When the chunk being framed was read: the start time of every request framed from it. */
  #chunkAt = 0;
  #paused = false;
  readonly #flushOut = (): void => this.#writeOut();
  readonly #resumeReads = (): void => {
    this.#paused = false;
    if (!this.#closed) this.#socket.resume();
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
    this.id = options.id;
    this.#socket = socket;
    this.#createdAt = options.pool.now();
    this.#chunkAt = this.#createdAt;
    this.#addr = socket.remoteAddress === undefined ? `${socket.localAddress ?? ''}:0` : `${socket.remoteAddress}:${socket.remotePort ?? 0}`;
    this.#laddr = socket.localAddress === undefined ? '' : `${socket.localAddress}:${socket.localPort ?? 0}`;
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
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {}); // 'close' follows; a client's reset is not poolside's error
    socket.on('close', () => this.#onClose());
  }

  onRequest(bytes: Buffer, args: ArgView): void {
    if (this.#quitting) return;
    const pool = this.#pool;
    pool.counters.requests++;
    const spec = this.#codec.classify(bytes, args);
    this.#lastCommand = spec.name;
    if (this.#auth !== null && (!this.#authenticated || spec.name === 'AUTH' || spec.name === 'HELLO')) {
      if (this.#screen(spec.name, bytes, args)) return;
    }
    if (spec.use === 'local') {
      const slot = new Slot(this, bytes, spec, -1);
      const local = parseClientCommand(bytes, args);
      slot.local = local;
      this.#enqueue(slot);
      if (local.kind === 'reply') {
        // In request order, not dispatch order: it decides which of the following replies are written.
        // OFF and SKIP get no reply themselves (Redis sends none); ON does.
        this.#replyMode = local.mode;
        slot.silent = local.mode !== 'ON';
      }
      if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
      return;
    }
    if (spec.name === 'CLIENT TRACKING') {
      const rewritten = rewriteRedirect(bytes, args, (id) => this.#redirectTarget(id));
      if (rewritten !== null) {
        const refused = 'error' in rewritten ? rewritten.error : null;
        const slot = new Slot(this, refused === null ? (rewritten as Buffer) : bytes, spec, -1);
        this.#enqueue(slot);
        if (refused !== null) this.#answer(slot, encodeError(refused));
        else if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
        return;
      }
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
        this.#enqueue(slot);
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} has no key to route by in ketama pool ${pool.config.name}`);
        return;
      }
    }
    const slot = new Slot(this, bytes, spec, hash);
    slot.startedAt = this.#chunkAt;
    // Nothing after QUIT runs, even when QUIT itself has to wait behind earlier requests.
    if (spec.use === 'quit') this.#quitting = true;
    if (spec.use === 'select') slot.selectDb = this.#codec.selectIndex(bytes, args);
    this.#enqueue(slot);
    if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
  }

  /** Puts a request's slot in reply order, applying CLIENT REPLY OFF / SKIP. */
  #enqueue(slot: Slot): void {
    if (this.#replyMode !== 'ON') {
      slot.silent = true;
      if (this.#replyMode === 'SKIP') this.#replyMode = 'ON';
    }
    this.#replies.push(slot);
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
        this.#replies.push(slot);
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
    const lease = this.#lease;
    if (slot.pinned && lease.kind === 'pinned' && slot.conn === lease.conn) {
      this.#applyDb(slot, lease.tx.onReply(slot.role, slot.selectDb, bytes));
    } else if (slot.spec.use === 'select') {
      if (this.#codec.isErrorResponse(bytes)) {
        // Refused: the server did not move; whoever uses the connection next selects again.
        if (slot.conn !== null && slot.conn.db === slot.selectDb) slot.conn.db = DB_UNKNOWN;
      } else if (slot.selectDb >= 0) {
        this.#db = slot.selectDb;
      }
    }
    if (slot.spec.use === 'pin-session' && !this.#codec.isErrorResponse(bytes)) this.#noteSessionState(slot);
    this.#settle(slot);
    slot.response = slot.replaceReply ?? bytes;
    slot.done = true;
    this.#flush();
    this.#afterSettle();
  }

  /** CLIENT SETNAME and HELLO succeeded: CLIENT LIST shows the name and protocol. */
  #noteSessionState(slot: Slot): void {
    const name = slot.spec.name;
    if (name !== 'CLIENT SETNAME' && name !== 'HELLO') return;
    const words = slot.bytes.toString('latin1', 0, Math.min(slot.bytes.length, 512)).split('\r\n').filter((_, i) => i % 2 === 0 && i > 0);
    if (name === 'CLIENT SETNAME') this.#name = words[2] ?? '';
    else if (words[1] === '3' || words[1] === '2') this.#resp = Number(words[1]);
  }

  /** A reply on the pinned connection said where the connection is now. */
  #applyDb(slot: Slot, change: DbChange): void {
    const conn = slot.conn;
    if (conn === null) return;
    switch (change.kind) {
      case 'none':
        return;
      case 'selected':
        conn.db = change.db;
        this.#db = change.db;
        return;
      case 'unknown':
        conn.db = DB_UNKNOWN;
        return;
    }
  }

  // ── LeaseHolder ─────────────────────────────────────────────────────────────────────────────

  /**
   * The pinned connection died. A session whose state lived on it (transaction, watch, AUTH, HELLO 3,
   * client name, tracking, subscriptions) cannot go on without it: continuing on other connections
   * would run its requests as someone else. Do what Redis does when a connection dies: its requests
   * in flight have failed, the client is closed, and its library reconnects and sets its state again.
   */
  onLeaseLost(reason: CloseReason, message: string): void {
    const lease = this.#lease;
    if (lease.kind !== 'pinned') return;
    const stateful = lease.session || lease.relay || lease.tx.dirty;
    this.#lease = { kind: 'shared' };
    if (this.#closed) return;
    if (stateful) {
      this.#log.warn('client closed: its pinned connection was lost', { pool: this.#pool.config.name, reason: 'pinned_connection_lost', error: `${reason}: ${message}` });
      // What waited behind the lost connection would have run on it: it fails with it.
      this.#pool.waitingRequests -= this.#backlog.length;
      for (let slot = this.#backlog.shift(); slot !== undefined; slot = this.#backlog.shift()) {
        this.#answerError(slot, 'SERVER_ERROR', `pinned connection lost (${reason}: ${message})`);
      }
      this.#closeAfterReplies();
      return;
    }
    this.#afterSettle();
  }

  onPush(bytes: Buffer): void {
    const slot = new Slot(this, EMPTY, RELAYED, -1);
    slot.response = bytes;
    slot.done = true;
    this.#replies.push(slot);
    this.#flush();
  }

  onSlotFailure(slot: Slot, reason: FailureReason, message: string, retryable: boolean): void {
    this.#settle(slot);
    if (!slot.pinned && retryable && slot.spec.idempotent && !slot.retried && !this.#closed) {
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

  // ── ClientHandle: what other clients of the pool may learn or do ────────────────────────────

  get subscribed(): boolean {
    return this.#lease.kind === 'pinned' && this.#lease.relay;
  }

  describe(now: number): string {
    const lease = this.#lease;
    const pinned = lease.kind === 'pinned' ? lease : null;
    let flags = '';
    if (pinned?.relay === true) flags += 'P';
    if (pinned?.tx.holding === true) flags += 'x';
    if (pinned?.lease.blocking === true) flags += 'b';
    return describeClient({
      id: this.id,
      addr: this.#addr,
      laddr: this.#laddr,
      name: this.#name,
      ageS: Math.floor((now - this.#createdAt) / 1000),
      idleS: Math.floor((now - this.#chunkAt) / 1000),
      db: this.#db >= 0 ? this.#db : (this.#pool.servers[0]?.config.db ?? 0),
      flags: flags === '' ? 'N' : flags,
      multi: -1,
      cmd: this.#lastCommand.toLowerCase().replace(' ', '|'),
      resp: this.#resp,
    });
  }

  kill(): void {
    this.#socket.destroy();
  }

  blockedOn(): { server: number; connectionId: number } | null {
    const lease = this.#lease;
    if (lease.kind !== 'pinned' || !lease.lease.blocking || lease.conn.serverId === null) return null;
    return { server: lease.server, connectionId: lease.conn.serverId };
  }

  pinnedOn(): { server: number; connectionId: number } | null {
    const lease = this.#lease;
    if (lease.kind !== 'pinned' || lease.conn.serverId === null) return null;
    return { server: lease.server, connectionId: lease.conn.serverId };
  }

  /** CLIENT TRACKING … REDIRECT <poolside id>: the server-side id of that client's connection. */
  #redirectTarget(id: number): number | null {
    const target = this.#pool.client(id)?.pinnedOn();
    if (target === undefined || target === null) return null;
    const lease = this.#lease;
    // The tracking client will be pinned on the server routing gives it now (or already is).
    const server = lease.kind === 'pinned' ? lease.server : this.#pool.route(-1);
    return target.server === server ? target.connectionId : null;
  }

  /** CLIENT ID, INFO, LIST, KILL, UNBLOCK, REPLY: answered for the poolside client. */
  #answerLocal(slot: Slot): boolean {
    const command = slot.local;
    const pool = this.#pool;
    if (command === null) throw new Error('local request without its parsed command');
    switch (command.kind) {
      case 'error':
        this.#answer(slot, encodeError(command.message));
        return true;
      case 'refuse':
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', command.message);
        return true;
      case 'id':
        this.#answer(slot, Buffer.from(`:${this.id}\r\n`));
        return true;
      case 'info':
        this.#answer(slot, bulk(`${this.describe(pool.now())}\n`));
        return true;
      case 'list': {
        const now = pool.now();
        let text = '';
        for (const client of pool.connectedClients()) {
          if (command.ids !== null && !command.ids.includes(client.id)) continue;
          if (command.type !== null && (command.type === 'pubsub') !== client.subscribed) continue;
          text += `${client.describe(now)}\n`;
        }
        this.#answer(slot, bulk(text));
        return true;
      }
      case 'kill': {
        const target = pool.client(command.id);
        const killed = target !== undefined && !(command.skipMe && target === this);
        if (killed) target.kill();
        this.#answer(slot, Buffer.from(killed ? ':1\r\n' : ':0\r\n'));
        return true;
      }
      case 'unblock': {
        const blocked = pool.client(command.id)?.blockedOn() ?? null;
        const conn = blocked === null ? null : pool.servers[blocked.server].pickConnection();
        if (blocked === null || conn === null) {
          this.#answer(slot, Buffer.from(':0\r\n'));
          return true;
        }
        this.#sendOn(slot, unblockRequest(blocked.connectionId, command.mode), conn, blocked.server);
        return true;
      }
      case 'reply':
        this.#answer(slot, this.#codec.okReply);
        return true;
    }
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
    if (this.#pool.config.lease === 'exclusive' && (spec.use === 'shared' || spec.use === 'select' || spec.use === 'pin-close')) {
      // Session mode: the client's own connection for its whole life, state and all.
      if (this.#lease.kind === 'pinned') return this.#sendPinned(slot);
      return this.#startPin(slot);
    }
    switch (spec.use) {
      case 'quit':
      case 'ok':
        this.#answer(slot, this.#codec.okReply);
        return true;
      case 'unsupported':
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} ${spec.note}`);
        return true;
      case 'local':
        return this.#answerLocal(slot);
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
    const reason = pool.config.lease === 'exclusive' ? 'session_mode' : spec.note;
    this.#lease = { kind: 'acquiring' };
    this.#wait = 'lease';
    pool.servers[server].acquireExclusive(this).then(
      (lease) => this.#onLeased(lease, server, reason),
      (err: Error) => this.#onLeaseFailed(err),
    );
    return false;
  }

  #onLeased(lease: Lease, server: number, reason: string): void {
    if (this.#closed) {
      lease.release(false);
      return;
    }
    this.#pool.countPin(reason);
    const session = this.#pool.config.lease === 'exclusive';
    this.#lease = { kind: 'pinned', lease, conn: lease.connection, server, outstanding: 0, tx: new RedisTransaction(), session, relay: false };
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
      }
      lease.lease.relay(slot.bytes);
      this.#answer(slot, EMPTY);
      return true;
    }
    if (spec.use === 'pin-session') lease.session = true;
    slot.pinned = true;
    slot.role = txRole(spec.name);
    // An EXEC that may commit a SELECT: nothing more on the session's behalf until its reply says
    // which database the connection is in.
    const barrier = lease.tx.execMaySelect(slot.role);
    // Whether a transaction was being queued before this request (MULTI itself is not inside one).
    const queuing = lease.tx.queuing;
    if (lease.tx.onSend(slot.role) === 'abort') {
      // poolside refused a command of this transaction: Redis would answer EXECABORT, and so does
      // poolside, after discarding what the server queued.
      slot.role = 'discard';
      slot.replaceReply = EXECABORT;
      lease.outstanding++;
      this.#sendOn(slot, DISCARD_REQUEST, lease.conn, lease.server);
      return true;
    }
    if (!queuing && needsWriteFence(spec.name)) {
      // WAIT counts replicas that acknowledged this connection's last write; the session's writes
      // ran on shared connections, so a propagated no-op here first makes that offset cover them.
      lease.lease.send(WRITE_FENCE_REQUEST, IGNORED_REPLY, false);
    }
    lease.outstanding++;
    this.#send(slot, lease.conn, lease.server, queuing);
    if (barrier) this.#wait = 'idle';
    return true;
  }

  /** Writes the slot on `conn`, first replaying this session's database if the connection is elsewhere. */
  #send(slot: Slot, conn: Connection, server: number, queuing = false): void {
    const lease = this.#lease;
    // Inside a transaction being queued poolside adds nothing: a SELECT there would be queued too.
    if (!queuing) {
      const db = this.#db >= 0 ? this.#db : this.#pool.servers[server].config.db;
      if (conn.db !== db) {
        if (lease.kind === 'pinned' && lease.conn === conn) lease.lease.send(this.#codec.encodeSelect(db), this.#pool.servers[server].selectTarget, false);
        else conn.send(this.#codec.encodeSelect(db), this.#pool.servers[server].selectTarget);
        conn.db = db;
      }
    }
    if (slot.spec.use === 'select') {
      if (slot.selectDb >= 0 && !queuing) {
        // The connection will be in that database if the server accepts; the session adopts it
        // only then, and sends nothing more until it knows (a barrier: see onSlotResponse).
        conn.db = slot.selectDb;
      } else {
        // Unreadable, or queued in a transaction that EXEC may commit or not: trust nothing after it.
        conn.db = DB_UNKNOWN;
      }
    }
    this.#sendOn(slot, slot.bytes, conn, server);
    if (slot.spec.use === 'select' && !queuing) this.#wait = 'idle';
  }

  #sendOn(slot: Slot, bytes: Buffer, conn: Connection, server: number): void {
    slot.server = server;
    slot.conn = conn;
    this.#outstanding++;
    const lease = this.#lease;
    if (slot.pinned && lease.kind === 'pinned') {
      // A blocking command may legitimately wait longer than request_timeout.
      lease.lease.send(bytes, slot, slot.spec.use === 'pin-once');
    } else {
      conn.send(bytes, slot);
    }
  }

  /**
   * Holds a request behind the one the session waits for. A session's own pipeline never counts
   * against queue.max (that bounds sessions waiting for a connection): refusing the middle of a
   * pipeline would break a transaction or a SELECT sequence that Redis would have run whole.
   */
  #hold(slot: Slot): void {
    this.#backlog.push(slot);
    this.#pool.waitingRequests++;
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
    if (slot.pinned && lease.kind === 'pinned' && slot.conn === lease.conn) {
      lease.outstanding--;
      if (slot.spec.use === 'pin-once') lease.lease.blockingDone();
    } else if (slot.server >= 0 && this.#affConn[slot.server] === slot.conn) {
      this.#affCount[slot.server]--;
    }
  }

  #afterSettle(): void {
    const lease = this.#lease;
    if (lease.kind === 'pinned' && lease.outstanding === 0 && !lease.tx.dirty && !lease.session && !lease.relay) {
      this.#lease = { kind: 'shared' };
      lease.lease.release(lease.conn.db !== this.#pool.servers[lease.server].config.db);
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
    // Refused inside a transaction being queued: its EXEC must abort, as Redis's would.
    const lease = this.#lease;
    if (lease.kind === 'pinned') lease.tx.refusedInside();
    this.#pool.fail(reason, message);
    this.#answer(slot, this.#codec.errorReply(reason, message));
  }

  #flush(): void {
    const replies = this.#replies;
    let now = 0;
    for (let head = replies.peek(); head !== undefined && head.done; head = replies.peek()) {
      replies.shift();
      if (head.startedAt > 0) {
        // A reply ends when the read that completed it happened: one clock read per server read,
        // not per reply. Replies poolside made itself end now.
        const conn = head.conn;
        let end = conn !== null && conn.lastReadAt >= head.startedAt ? conn.lastReadAt : now;
        if (end === 0) end = now = this.#pool.now();
        this.#pool.counters.requestDuration.observe((end - head.startedAt) / 1000);
      }
      if (!this.#closed && !head.silent && head.response.length > 0) this.#write(head.response);
    }
    if (this.#quitting && replies.length === 0 && !this.#closed) {
      this.#writeOut();
      // After QUIT the client hangs up itself; after an error nothing it still sends is read.
      if (this.#closeHard) this.#socket.destroySoon();
      else this.#socket.end();
    }
  }

  /** Queues reply bytes; everything queued in one turn goes out in one write (#flushOut). */
  #write(bytes: Buffer): void {
    this.#out.push(bytes);
    if (this.#out.length === 1) queueMicrotask(this.#flushOut);
  }

  #writeOut(): void {
    const out = this.#out;
    const socket = this.#socket;
    if (out.length === 0 || this.#closed || socket.destroyed) return;
    this.#out = [];
    writeBatch(socket, out);
    const pending = socket.writableLength;
    const { outputSoftBytes, outputHardBytes } = this.#pool.config.clients;
    if (pending >= outputHardBytes) {
      this.#pool.counters.clientsOverflowed++;
      this.#log.warn('client closed: it stopped reading its replies', { pool: this.#pool.config.name, reason: 'output_overflow', pending });
      // A reset, not a FIN: the replies it never read are discarded, and a client that is not
      // reading would not see a FIN until it read everything before it.
      socket.resetAndDestroy();
    } else if (pending >= outputSoftBytes && !this.#paused) {
      // Stop reading its requests until it reads its replies; shared connections never wait for it.
      this.#paused = true;
      socket.pause();
      socket.once('drain', this.#resumeReads);
    }
  }

  // ── client events ───────────────────────────────────────────────────────────────────────────

  #onData(chunk: Buffer): void {
    if (this.#quitting) return;
    // One clock read per read from the client, not per request framed from it.
    this.#chunkAt = this.#pool.now();
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof ProtocolError)) {
        // poolside's own fault, not the client's: loud, counted, and never blamed on the peer.
        this.#pool.counters.internalErrors++;
        this.#log.error('internal error in client session; client closed', { pool: this.#pool.config.name, error: String((err as Error).stack ?? err) });
        this.#socket.destroy();
        return;
      }
      this.#pool.counters.protocolErrors++;
      const slot = new Slot(this, EMPTY, RELAYED, -1);
      this.#replies.push(slot);
      this.#answerError(slot, 'PROTOCOL_ERROR', err.message);
      this.#closeAfterReplies();
    }
  }

  /**
   * Reads nothing more and runs nothing more; replies still owed are written, then the client is
   * closed. (A protocol error, a lost pinned connection.)
   */
  #closeAfterReplies(): void {
    this.#quitting = true;
    this.#closeHard = true;
    this.#socket.pause();
    this.#flush();
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
      const dirty = lease.tx.dirty || lease.session || lease.conn.db !== this.#pool.servers[lease.server].config.db;
      lease.lease.release(dirty);
    }
    this.#onClosed(this);
  }
}

/** A RESP bulk string. */
function bulk(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

/** For requests poolside sends on its own whose reply nobody reads (the WAIT write fence). */
const IGNORED_REPLY: ResponseTarget = { onResponse: () => {}, onFailure: () => {} };

/** The spec of replies that answer no request of their own (relayed frames, a protocol error). */
const RELAYED: CommandSpec = { name: '', use: 'shared', keys: { kind: 'none' }, idempotent: false, note: '' };
