/**
 * One client of a pool: frames its requests, routes each to a connection, and writes the replies
 * back in request order.
 *
 *   client bytes ─▶ request decoder ─▶ onRequest ─▶ Slot ─┬─▶ #replies (reply order, written from the head)
 *                                                        └─▶ #backlog (only while waiting) ─▶ #dispatch
 *   #dispatch ─▶ shared connection (packed: ServerPool.pickConnection; the same one while this session has
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
import type { ArgView, CommandSpec, RequestDecoder, RequestSink } from '../codec/codec.js';
import { ProtocolError } from '../codec/codec.js';
import type { Codec } from '../codec/registry.js';
import type { Admission, ClientHandle, ClusterRules, DbChange, PinnedState, SessionRules, SessionView } from '../codec/session-rules.js';
import type { FailureReason } from '../errors.js';
import type { CloseReason, Connection } from '../pool/connection.js';
import type { Lease, LeaseHolder } from '../pool/lease.js';
import type { ClientInfo, Pool, PoolClient, Waiter } from '../pool/pool.js';
import type { ServerPool } from '../pool/server-pool.js';
import { Fifo } from '../util/fifo.js';
import { sendQueuedWrites } from '../util/turn-writes.js';
import type { Logger } from '../util/log.js';
import { Affinities } from './affinity.js';
import { InputBudget } from './input-budget.js';
import { KeyRouting } from './key-routing.js';
import { ClientOutput } from './output.js';
import { ReplyQueue } from './reply-queue.js';
import { Fanout } from './fanout.js';
import { EMPTY, Slot, UNASKED } from './slot.js';
import { ASKING_REQUEST, CROSSSLOT_REPLY, readRedirection } from '../cluster/redirect.js';
import type { ResponseTarget } from '../pool/connection.js';


type LeaseState =
  | { kind: 'shared' }
  | { kind: 'acquiring' }
  | {
      kind: 'pinned';
      lease: Lease;
      conn: Connection;
      server: ServerPool;
      /** Requests sent on it and not yet answered. */
      outstanding: number;
      /** Protocol state living on the connection (a transaction, watched keys), from its replies. */
      state: PinnedState;
      /** Connection state that only a RESET undoes (AUTH, HELLO 3, CLIENT SETNAME…), or session mode. */
      session: boolean;
      relay: boolean;
    };

type WaitFor = 'none' | 'idle' | 'lease' | 'connection';

/** The states without data, one object each for every session (they are replaced, never changed). */
const SHARED: LeaseState = Object.freeze({ kind: 'shared' });
const NOT_LEAVING: { state: 'no' } = Object.freeze({ state: 'no' });

/**
 * While draining, a client that holds nothing and sent nothing for this long is closed (see
 * #closeIfDrained). Well above a busy client's gap between a reply and its next request, even
 * with the event loop late, so that request is not lost in the FIN; far below any shutdown.timeout.
 */
export const DRAIN_QUIET_MS = 250;

/**
 * After the FIN poolside sends when it closes an idle client (drain, a retired pool,
 * idle_timeout), how long it keeps reading, and dropping, what the client still sends before it
 * closes the socket: until the client's own FIN, at most this long.
 */
export const CLOSE_LINGER_MS = 1000;

/** What a request gets once poolside decided to close its client (it is not run). */
const GOODBYE = {
  shutdown: 'poolside is shutting down; reconnect',
  reload: 'poolside reloaded its config and replaced this pool; reconnect',
  idle: 'client closed by clients.idle_timeout; reconnect',
} as const;

/** ASKING's +OK (sent before a command that got ASK): never the client's. */
const ASKING_TARGET: ResponseTarget = { onResponse() {}, onFailure() {} };

/** routing: cluster: a request redirected to a node with no ready connection yet tries again this often. */
const REDIRECT_RETRY_MS = 5;
/** routing: cluster: TRYAGAIN / CLUSTERDOWN are retried after this, doubling per hop, at most REDIRECT_BACKOFF_MAX_MS. */
const REDIRECT_BACKOFF_MS = 10;
const REDIRECT_BACKOFF_MAX_MS = 200;

/** A client socket's 'error' listener, one for all of them: 'close' follows, and handles it. */
function ignoreError(): void {}

export interface SessionOptions {
  /** poolside-wide unique (CLIENT ID). */
  id: number;
  pool: Pool;
  log: Logger;
  /** Called once when the session is gone, with the pool it belonged to. */
  onClose(session: ClientSession, pool: Pool): void;
  /** The listener it came in on, as written in /stats (`127.0.0.1:6380`, `unix:/run/…`). */
  listener?: string;
}

export class ClientSession implements RequestSink, Waiter, LeaseHolder, SessionView, PoolClient {
  readonly id: number;
  readonly #socket: net.Socket;
  readonly #pool: Pool;
  readonly #codec: Codec;
  readonly #log: Logger;
  readonly #decoder: RequestDecoder;
  readonly #onClosed: (session: ClientSession, pool: Pool) => void;
  readonly #rules: SessionRules;
  readonly #replies: ReplyQueue;
  readonly #output: ClientOutput;
  readonly #input: InputBudget;
  /** The client shut down its write side: its replies are still written, then the FIN. */
  #halfClosed = false;
  /** #endAtBlockingSoon's end-of-turn check is scheduled. */
  #blockingEndDue = false;
  /** QUIT went to a relaying connection: the client ends when the server closes it, after the last relayed frame. */
  #quitRelayed = false;
  readonly #backlog = new Fifo<Slot>();
  #wait: WaitFor = 'none';
  /** When the request at the head of the backlog began waiting for a connection; null: not waiting. */
  #waitSince: number | null = null;
  #outstanding = 0;
  #lease: LeaseState = SHARED;
  /** Database chosen by SELECT; null: the server's configured one. */
  #db: number | null = null;
  /** Per server: the shared connection this session's in-flight requests are on (affinity.ts). */
  readonly #affinity = new Affinities();
  /** client_auth, when the pool has it; null: clients need not authenticate to poolside. */
  #closed = false;
  /** After QUIT, a protocol error, a lost pinned connection or too many wrong passwords: nothing more is read or run. */
  #quitting = false;
  readonly #createdAt: number;
  /** For CLIENT LIST, read from the socket when first asked: getpeername/getsockname are syscalls most clients never need. */
  #addrs: { addr: string; laddr: string } | null = null;
  /** The listener it came in on, for /stats (null: its local address, read when first asked). */
  readonly #listener: string | null;
  /** For describing the session (CLIENT LIST). */
  #lastCommand = 'NULL';
  /** When the chunk being framed was read: the start time of every request framed from it. */
  #chunkAt = 0;
  /** When the idle_timeout sweep last found it busy (a request in flight, blocked, subscribed). */
  #busyAt = 0;
  /** Part of a request was read when the drain began: that request is still run (#admitBegun). */
  #begunBeforeDrain = false;
  /** routing: cluster: redirected slots waiting to be sent again, in the order their redirections came back (#resend). */
  readonly #redirectQueue: { slot: Slot; notBefore: number; backoff: boolean }[] = [];
  /** A timer for #pumpRedirects is set. */
  #redirectTimer = false;
  /**
   * A slot sent again after TRYAGAIN/CLUSTERDOWN's backoff, not answered yet: nothing else waiting
   * in #redirectQueue goes until it is (it may be refused again and must stay first).
   */
  #backoffInFlight: Slot | null = null;
  /** Requests the client sent so far (Slot.order), and the latest of them that went to a server. */
  #orderSeq = 0;
  #latestSent = 0;
  /** routing: cluster: the slot map's version its requests in flight were routed by (ClusterTopology.version). */
  #mapVersion = 0;
  /** Key routing of a sharded pool, made at its first request and reused for every one after (key-routing.ts). */
  #keys: KeyRouting | null = null;
  /**
   * Cluster pools: a keyless pin-open request (MULTI) answered at once and not sent yet; it goes
   * out on the node of the first request after it (#onLeased). `aborted`: poolside refused a
   * request inside it, so its EXEC aborts.
   */
  #deferred: { bytes: Buffer; spec: CommandSpec; aborted: boolean } | null = null;
  /**
   * 'retiring' once a reload replaced its pool (closed as soon as it holds nothing, so it
   * reconnects to the new one); 'retired' from the retired pool's deadline (new requests answered
   * DRAINING, closed once nothing is owed, as when draining); 'draining' once poolside stopped accepting (new requests answered DRAINING, closed
   * once nothing is owed); 'cut' when closed at the deadline (its lost lease is expected, not logged).
   */
  #shutdown: 'no' | 'retiring' | 'retired' | 'draining' | 'cut' = 'no';
  /**
   * Closing between requests (#leave): 'deciding' while bytes the client sent before the decision
   * are still read (each request answered DRAINING, not run); 'due' once the FIN may follow the
   * last reply owed.
   */
  #leaving: { state: 'no' } | { state: 'deciding' | 'due'; message: string } = NOT_LEAVING;

  constructor(socket: net.Socket, options: SessionOptions) {
    this.id = options.id;
    this.#socket = socket;
    this.#createdAt = options.pool.now();
    this.#chunkAt = this.#createdAt;
    this.#listener = options.listener ?? null;
    this.#pool = options.pool;
    this.#codec = options.pool.codec;
    this.#log = options.log;
    this.#onClosed = options.onClose;
    this.#decoder = this.#codec.requestDecoder(this, options.pool.config.maxRequestBytes);
    this.#rules = this.#codec.sessionRules();
    const pool = options.pool;
    this.#output = new ClientOutput(socket, pool.clientLimits);
    this.#input = new InputBudget(pool.clientLimits, this.#output);
    this.#replies = new ReplyQueue(pool.counters.requestDuration, pool, this.#output, this.#input);
    this.#decoder.setLimits(this.#rules.requestLimits());
    socket.setNoDelay(true);
    // One set of listeners for every session, finding theirs by the socket (the emitter is
    // `this`): no closures and context per client.
    ClientSession.#bySocket.set(socket, this);
    socket.on('data', ClientSession.#socketData);
    socket.on('end', ClientSession.#socketEnd);
    socket.on('error', ignoreError); // 'close' follows; a client's reset is not poolside's error
    socket.on('close', ClientSession.#socketClose);
  }

  /** The session listening on each client socket, until its 'close'. */
  static readonly #bySocket = new WeakMap<net.Socket, ClientSession>();

  static #socketData(this: net.Socket, chunk: Buffer): void {
    const session = ClientSession.#bySocket.get(this);
    if (session !== undefined) session.#onData(chunk);
  }

  static #socketEnd(this: net.Socket): void {
    sendQueuedWrites(); // a client leaving costs tens of µs: requests read before it go out first
    const session = ClientSession.#bySocket.get(this);
    if (session !== undefined) session.#onEnd();
  }

  static #socketClose(this: net.Socket): void {
    sendQueuedWrites();
    const session = ClientSession.#bySocket.get(this);
    if (session === undefined) return;
    ClientSession.#bySocket.delete(this);
    session.#onClose();
  }

  onRequest(bytes: Buffer, args: ArgView): void {
    if (this.#quitting) return;
    const pool = this.#pool;
    pool.counters.requests++;
    const leaving = this.#leaving;
    const shutdown = this.#shutdown;
    if ((leaving.state !== 'no' || shutdown === 'draining' || shutdown === 'retired' || shutdown === 'cut') && !this.#admitBegun(leaving.state, shutdown)) {
      // Through the codec: the client reads an error in its own protocol, then the connection
      // closes once the replies it is owed are written. The request is not run.
      const message = leaving.state !== 'no' ? leaving.message : shutdown === 'retired' ? GOODBYE.reload : GOODBYE.shutdown;
      const slot = new Slot(this, EMPTY, UNASKED, null);
      // In the client's own protocol: a binary memcached client gets a binary error, a noreply request nothing.
      slot.mapReply = this.#rules.refusalReply(this.#codec.classify(bytes, args), bytes, args);
      this.#enqueue(slot);
      this.#answerError(slot, 'DRAINING', message);
      this.#leave(message);
      return;
    }
    const spec = this.#codec.classify(bytes, args);
    this.#lastCommand = spec.name;
    const admission = this.#rules.admit(spec, bytes, args);
    if (admission.kind !== 'pass') {
      this.#admit(admission);
      return;
    }
    const intake = this.#rules.intake(spec, bytes, args, this);
    if (intake.kind === 'answer' || intake.kind === 'local') {
      const slot = new Slot(this, bytes, spec, null);
      slot.startedAt = this.#chunkAt;
      this.#enqueue(slot);
      if (intake.kind === 'answer') slot.answerWith = intake.reply;
      else slot.local = intake.local;
      if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
      return;
    }
    let hash: number | null = null;
    let cross = false;
    let spread: { kind: 'broadcast' } | { kind: 'split'; requests: Buffer[]; hashes: number[]; keys: number[][] } | null = null;
    const slotBytes = intake.kind === 'rewrite' ? intake.bytes : bytes;
    if (intake.kind === 'rewrite' && intake.hash !== undefined) {
      hash = intake.hash;
    } else if (pool.router.keyed) {
      const keys = (this.#keys ??= new KeyRouting(pool, this.#codec));
      keys.route(spec, bytes, args);
      hash = keys.hash;
      cross = keys.cross;
      if (spec.spread === 'all' && keys.keys === 0) {
        spread = { kind: 'broadcast' };
      } else if (cross && spec.spread === 'keys' && intake.kind === 'route') {
        // Split from the request as the client sent it (a rewritten one has no ArgView: it stays whole, refused).
        const groups = keys.groups(spec, bytes, args);
        spread = { kind: 'split', requests: this.#codec.splitRequest(spec, bytes, args, groups.keys), ...groups };
      } else if (keys.keys === 0 && spec.use === 'shared' && !pool.router.keylessAnywhere && !this.#rules.anyServer(spec)) {
        const slot = new Slot(this, bytes, spec, null);
        this.#enqueue(slot);
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} has no key to route by in ketama pool ${pool.config.name}`);
        return;
      }
    }
    const slot = new Slot(this, slotBytes, spec, hash);
    if (intake.kind === 'rewrite' && intake.reply !== undefined) slot.mapReply = intake.reply;
    if (spread !== null) {
      slot.fanout =
        spread.kind === 'broadcast'
          ? Fanout.broadcast(slot, pool.broadcastTargets(), pool.clientLimits.outputHardBytes)
          : Fanout.split(slot, this.#keys?.keys ?? 0, spread.requests, spread.hashes, spread.keys, pool.clientLimits.outputHardBytes);
    }
    slot.crossServer = cross && spread === null;
    slot.startedAt = this.#chunkAt;
    // Nothing after QUIT runs, even when QUIT itself has to wait behind earlier requests.
    if (spec.use === 'quit') this.#stopReading();
    if (spec.use === 'select') slot.selectDb = this.#codec.selectIndex(bytes, args);
    this.#enqueue(slot);
    if (this.#backlog.length > 0 || this.#wait !== 'none' || !this.#dispatch(slot)) this.#hold(slot);
  }

  /** Puts a request's slot in reply order; its reply is dropped if the client asked not to get it. */
  #enqueue(slot: Slot): void {
    slot.order = ++this.#orderSeq;
    slot.silent = this.#rules.silentReply();
    this.#replies.push(slot);
  }

  /** A request the rules answered or replaced before anything else (client_auth). */
  #admit(admission: Exclude<Admission, { kind: 'pass' }>): void {
    if (admission.kind === 'replace') {
      this.#decoder.setLimits(this.#rules.requestLimits());
      this.#pool.counters.requests--;
      this.#codec.requestDecoder(this, this.#pool.config.maxRequestBytes).push(admission.request);
      return;
    }
    const slot = new Slot(this, EMPTY, UNASKED, null);
    this.#enqueue(slot); // an AUTH reply obeys CLIENT REPLY like any other
    if (admission.wrongPassword) this.#pool.counters.authFailures++;
    if (admission.close) this.#stopReading();
    this.#decoder.setLimits(this.#rules.requestLimits());
    this.#answer(slot, admission.reply);
  }

  /** Pool: a connection became ready, or routing changed. */
  resume(): void {
    if (this.#wait !== 'connection') return;
    this.#wait = 'none';
    const since = this.#waitSince;
    this.#drainBacklog();
    if ((this.#wait as WaitFor) !== 'connection') {
      if (since !== null) this.#pool.counters.waitDuration.observe((this.#pool.now() - since) / 1000);
      this.#waitSince = null;
    }
  }

  /** Pool: queue.timeout passed or nothing is left to wait for; every held request fails. */
  abandon(reason: FailureReason, message: string): void {
    if (this.#wait !== 'connection') return;
    this.#wait = 'none';
    this.#waitSince = null;
    this.#failBacklog(reason, message);
  }

  onSlotResponse(slot: Slot, bytes: Buffer): void {
    // A part's reply is held until the merge, within its fanout's budget (past it: dropped, failed).
    if (slot.part !== null && !slot.part.fanout.hold(bytes.length)) bytes = EMPTY;
    this.#completeSlot(slot, bytes, bytes);
  }

  /**
   * A large reply arriving in pieces. At the head of the reply order it goes straight to the
   * client as it comes (poolside holds about one read of it); behind earlier replies it is
   * gathered and written whole in its turn, as any reply.
   */
  onSlotResponsePart(slot: Slot, bytes: Buffer, end: boolean): void {
    if (slot.firstPart === null) {
      slot.firstPart = bytes;
      // Decided once, at the first piece: a reply that began behind another is gathered to its
      // end even if it reaches the head meanwhile (its first pieces, header included, are held).
      slot.streaming = !this.#closed && !slot.silent && slot.replaceReply === null && slot.mapReply === null && this.#replies.isHead(slot);
    }
    if (slot.streaming) {
      this.#output.writePart(bytes, end, slot.conn);
    } else if (!this.#closed && !slot.silent && slot.replaceReply === null && (slot.part === null || slot.part.fanout.hold(bytes.length))) {
      (slot.parts ??= []).push(bytes);
      slot.partBytes += bytes.length;
    } else if (slot.part !== null && slot.parts !== null) {
      // Past its fanout's budget: what this part gathered is let go too.
      slot.parts = null;
      slot.partBytes = 0;
    }
    if (!end) return;
    const parts = slot.parts;
    const whole = parts === null ? EMPTY : Buffer.concat(parts, slot.partBytes);
    slot.parts = null;
    // The bookkeeping that reads replies needs only their start: a bulk string changes no state.
    this.#completeSlot(slot, slot.firstPart, whole);
  }

  /** `bytes`: what the state bookkeeping reads; `reply`: what is left to write (EMPTY once streamed). */
  #completeSlot(slot: Slot, bytes: Buffer, reply: Buffer): void {
    if (this.#pool.cluster !== null && bytes.length > 0 && this.#redirected(slot, bytes)) return;
    const part = slot.part;
    if (part !== null) {
      this.#settle(slot);
      if (part.fanout.replied(part.index, reply)) this.#finishFanout(part.fanout);
      this.#afterSettle();
      return;
    }
    const lease = this.#lease;
    if (slot.pinned && lease.kind === 'pinned' && slot.conn === lease.conn) {
      this.#applyDb(slot, lease.state.reply(slot.token, slot.selectDb, bytes));
    } else if (slot.spec.use === 'select') {
      if (this.#codec.isErrorResponse(bytes)) {
        // Refused: the server did not move; whoever uses the connection next selects again.
        if (slot.conn !== null && slot.conn.db === slot.selectDb) slot.conn.assumeDb(null);
      } else if (slot.selectDb !== null) {
        this.#db = slot.selectDb;
      }
    }
    if (slot.spec.use === 'pin-session') this.#rules.noteReply(slot.spec, slot.bytes, bytes);
    this.#settle(slot);
    this.#setResponse(slot, slot.streaming ? EMPTY : (slot.replaceReply ?? reply));
    slot.done = true;
    this.#flush();
    this.#afterSettle();
  }

  // ── cluster redirections ────────────────────────────────────────────────────────────────────

  /**
   * routing: cluster: the reply says the command did not run on that node (MOVED, ASK, TRYAGAIN,
   * CLUSTERDOWN). Followed (true): the slot is sent again where the cluster says, or after a
   * backoff, while it has hops left (MOVED/ASK: cluster.max_redirects) and time (its request deadline). Not
   * followed (false): the error is the client's reply. A pinned request's MOVED only updates the
   * map (what was pinned is the stateful rules' to redo).
   */
  #redirected(slot: Slot, bytes: Buffer): boolean {
    const cluster = this.#pool.cluster;
    const redirection = cluster === null ? null : readRedirection(bytes);
    if (cluster === null || redirection === null) return false;
    // MOVED/ASK hops are bounded by max_redirects (a loop between nodes must end); TRYAGAIN and
    // CLUSTERDOWN only by the request's deadline: a migration or a failover takes the time it takes.
    const retry = redirection.kind === 'tryagain' || redirection.kind === 'clusterdown';
    const follow = !slot.pinned && (retry || slot.redirects < this.#pool.config.cluster.maxRedirects);
    let target: { server: ServerPool; asking: boolean } | null = null;
    let delay = 0;
    switch (redirection.kind) {
      case 'moved':
      case 'ask': {
        // `MOVED 3999 :6380`: a node that does not know its own IP means the address we used.
        const host = redirection.host !== '' ? redirection.host : (slot.server?.config.address.host ?? '127.0.0.1');
        // The map learns a MOVED whether or not this request follows it.
        let server: ServerPool | null = null;
        if (redirection.kind === 'moved') {
          server = cluster.moved(redirection.slot, host, redirection.port);
        } else {
          cluster.count('ask');
          if (follow) server = cluster.nodeAt(host, redirection.port);
        }
        // No node for the target (too many unmapped ones open): the redirection is the client's.
        if (server === null) return false;
        target = { server, asking: redirection.kind === 'ask' };
        break;
      }
      case 'tryagain':
      case 'clusterdown':
        cluster.count(redirection.kind);
        delay = Math.min(REDIRECT_BACKOFF_MAX_MS, REDIRECT_BACKOFF_MS * 2 ** Math.min(slot.retries, 16));
        if (this.#pool.now() + delay > this.#redirectDeadline(slot)) return false;
        break;
    }
    if (!follow) return false;
    // A TRYAGAIN/CLUSTERDOWN retry runs later than the node's answer: if a request the client sent
    // after this one already went to a server, it may have run (MGET {t}a {t}b refused with
    // TRYAGAIN, then a pipelined SET {t}a the source node runs at once), and the retry would read
    // or write across it. Then the client gets the node's error, as from the node itself. Earlier
    // requests sent again (after MOVED, or a sibling part of the same split) do not count: the
    // retry still runs after them, in the client's order. (MOVED and ASK are always safe: the node
    // ran nothing of that slot's keys it no longer holds, and the redirected requests go again in order.)
    if (retry && this.#latestSent > this.#orderOf(slot)) return false;
    if (retry) slot.retries++;
    else slot.redirects++;
    slot.redirectTo = target;
    // Refused again after its backoff: still the first of the session's retries.
    const first = slot === this.#backoffInFlight;
    this.#settle(slot);
    this.#resend(slot, delay, first);
    return true;
  }

  /** Where a request stands in the client's order: a fan-out's part stands where its parent does. */
  #orderOf(slot: Slot): number {
    return slot.part !== null ? slot.part.fanout.parent.order : slot.order;
  }

  /** When a redirected request stops being retried: its request_timeout (else queue.timeout) from when it was read. */
  #redirectDeadline(slot: Slot): number {
    const startedAt = slot.part !== null ? slot.part.fanout.parent.startedAt : slot.startedAt;
    const config = this.#pool.config;
    return startedAt + (config.requestTimeoutMs > 0 ? config.requestTimeoutMs : config.queue.timeoutMs);
  }

  /**
   * Sends a redirected slot again, now or after `delay`, behind any redirected slot of this session
   * still waiting: they go out in the order their redirections came back, so a write retried after
   * TRYAGAIN/CLUSTERDOWN's backoff is not overtaken by a later write of the same client whose own
   * retry came due sooner (SET k 1; SET k 2 must leave 2). While a slot waits it counts as in
   * flight (the session changes no lease under it, and later requests wait); a target with no
   * ready connection yet (a node just learnt of) is tried again shortly, until the slot's deadline.
   */
  #resend(slot: Slot, delay: number, first: boolean): void {
    if (this.#closed) return;
    this.#outstanding++;
    // Later requests wait for it: one sent meanwhile to the slot's new node must not overtake it.
    if (this.#wait === 'none') this.#wait = 'idle';
    const entry = { slot, notBefore: this.#pool.now() + delay, backoff: delay > 0 };
    if (first) this.#redirectQueue.unshift(entry);
    else this.#redirectQueue.push(entry);
    this.#pumpRedirects();
  }

  /**
   * Sends the waiting redirected slots that can go, in order. One due later (a backoff) holds all
   * behind it; one whose node has no ready connection holds only those bound for the same node
   * (a dead redirect target must not stall the session's requests to the others).
   */
  #pumpRedirects(): void {
    const queue = this.#redirectQueue;
    const blocked = new Set<ServerPool | null>();
    for (let i = 0; i < queue.length && !this.#closed && this.#backoffInFlight === null; ) {
      const entry = queue[i];
      const now = this.#pool.now();
      if (now < entry.notBefore) {
        this.#armRedirectTimer(entry.notBefore - now);
        break;
      }
      const server = this.#redirectServer(entry.slot);
      if (blocked.has(server)) {
        i++;
        continue;
      }
      this.#outstanding--;
      if (this.#sendRedirected(entry.slot, server)) {
        queue.splice(i, 1);
        if (entry.backoff) this.#backoffInFlight = entry.slot;
        continue;
      }
      if (now >= this.#redirectDeadline(entry.slot)) {
        queue.splice(i, 1);
        entry.slot.conn = null;
        this.#answerError(entry.slot, 'NO_HEALTHY_SERVER', `no ready connection to the cluster node for ${entry.slot.spec.name} in pool ${this.#pool.config.name}`);
        this.#afterSettle();
        continue;
      }
      this.#outstanding++;
      blocked.add(server);
      i++;
    }
    if (blocked.size > 0) this.#armRedirectTimer(REDIRECT_RETRY_MS);
  }

  #armRedirectTimer(ms: number): void {
    if (this.#redirectTimer) return;
    this.#redirectTimer = true;
    this.#pool.clock.setTimeout(() => {
      this.#redirectTimer = false;
      if (!this.#closed) this.#pumpRedirects();
    }, ms);
  }

  /** Where a redirected slot goes next: its redirect target, or where its key routes now. */
  #redirectServer(slot: Slot): ServerPool | null {
    const target = slot.redirectTo;
    return target !== null ? target.server : slot.part !== null ? this.#partServer(slot) : this.#pool.route(slot.hash, slot.spec.readOnly);
  }

  /** The send itself, to `server` (ASKING first for an ASK); false without a ready connection. */
  #sendRedirected(slot: Slot, server: ServerPool | null): boolean {
    const target = slot.redirectTo;
    if (server === null) return false;
    const conn = this.#affinity.pick(server);
    if (conn === null) return false;
    this.#affinity.sent(server, conn);
    slot.redirectTo = null;
    // Back to back on one connection: nothing can come between them (one event-loop turn, one FIFO).
    if (target !== null && target.asking) conn.send(ASKING_REQUEST, ASKING_TARGET);
    this.#send(slot, conn, server);
    return true;
  }

  /** A reply on the pinned connection said where the connection is now. */
  #applyDb(slot: Slot, change: DbChange): void {
    const conn = slot.conn;
    if (conn === null) return;
    switch (change.kind) {
      case 'none':
        return;
      case 'selected':
        conn.assumeDb(change.db);
        this.#db = change.db;
        return;
      case 'unknown':
        conn.assumeDb(null);
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
    const stateful = lease.session || lease.relay || lease.state.dirty;
    const quit = this.#quitRelayed; // the server closed it because the client said QUIT
    this.#lease = SHARED;
    this.#quitRelayed = false;
    if (this.#closed) return;
    if (stateful) {
      if (!quit && this.#shutdown !== 'cut') this.#log.warn('client closed: its pinned connection was lost', { pool: this.#pool.config.name, reason: 'pinned_connection_lost', error: `${reason}: ${message}` });
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
    const slot = new Slot(this, EMPTY, UNASKED, null);
    slot.response = bytes;
    slot.done = true;
    this.#replies.push(slot);
    this.#flush();
  }

  onSlotFailure(slot: Slot, reason: FailureReason, message: string, retryable: boolean): void {
    slot.parts = null;
    if (slot.streaming) {
      this.#settle(slot);
      this.#tearReply(reason, message);
      this.#afterSettle();
      return;
    }
    this.#settle(slot);
    if (this.#closed) return; // the client is gone: nobody to answer, nothing to count against the pool
    if (!slot.pinned && retryable && slot.spec.idempotent && !slot.retried && !this.#closed) {
      slot.retried = true;
      this.#pool.counters.retries++;
      if (slot.part !== null ? this.#sendPart(slot) : this.#sendShared(slot, false)) return;
    }
    slot.conn = null; // answered by poolside, not by a read from that connection
    this.#answerError(slot, reason, message);
    this.#afterSettle();
  }

  /**
   * poolside's own code threw handling a reply (a bug): the session's state can no longer be
   * trusted, so its client is closed, and the fault is counted and logged at error, never blamed
   * on the client or the server. The connection it came on carries on.
   */
  onSlotError(_slot: Slot, error: unknown): void {
    this.#internalError(error);
  }

  #internalError(error: unknown): void {
    this.#pool.counters.internalErrors++;
    this.#log.error('internal error in client session; client closed', { pool: this.#pool.config.name, error: String((error as Error).stack ?? error) });
    this.#socket.destroy();
  }

  /**
   * The connection died while a reply was being streamed to the client: part of it is written and
   * the rest will never come. Nothing can follow half a reply (an error text would be read as
   * its payload), so the client is reset, as if the server had dropped it, and counted.
   */
  #tearReply(reason: FailureReason, message: string): void {
    if (this.#closed) return;
    this.#pool.counters.repliesTorn++;
    this.#log.warn('client reset: its connection was lost while a reply streamed to it', { pool: this.#pool.config.name, reason: 'reply_torn', error: `${reason}: ${message}` });
    this.#output.reset();
  }

  /** Nothing to start: the constructor listens to the socket already (relay sessions start apart). */
  start(): void {}

  /** Closes the client; replies still owed are dropped as they arrive. */
  close(): void {
    this.#socket.destroy();
  }

  // ── SessionView: what this session's rules and the pool's other clients may learn or do ────

  get subscribed(): boolean {
    return this.#lease.kind === 'pinned' && this.#lease.relay;
  }

  describe(now: number): string {
    const lease = this.#lease;
    const pinned = lease.kind === 'pinned' ? lease : null;
    const facts = {
      id: this.id,
      ...this.#addresses(),
      ageMs: now - this.#createdAt,
      idleMs: now - this.#chunkAt,
      db: this.#db ?? (this.#pool.servers[0]?.config.db ?? 0),
      subscribed: pinned?.relay === true,
      holding: pinned?.state.holding === true || this.#deferred !== null,
      blocked: pinned?.lease.blocking === true,
    };
    return this.#rules.describe(facts, this.#lastCommand);
  }

  #addresses(): { addr: string; laddr: string } {
    if (this.#addrs !== null) return this.#addrs;
    const unixPath = this.#unixPath();
    if (unixPath !== null) {
      // As Redis writes a unix-socket client: the socket's path, port 0, both ways.
      this.#addrs = { addr: `${unixPath}:0`, laddr: `${unixPath}:0` };
      return this.#addrs;
    }
    const socket = this.#socket;
    const remote = socket.remoteAddress;
    const addrs = {
      addr: remote === undefined ? `${socket.localAddress ?? ''}:0` : `${remote}:${socket.remotePort ?? 0}`,
      laddr: socket.localAddress === undefined ? '' : `${socket.localAddress}:${socket.localPort ?? 0}`,
    };
    // Read lazily, it fails once the peer has reset (getpeername: ENOTCONN): not kept, so a later
    // ask is not stuck with the stand-in.
    if (remote !== undefined) this.#addrs = addrs;
    return addrs;
  }

  /** The path of the unix socket it came in on; null for TCP (or when the listener is not known). */
  #unixPath(): string | null {
    const listener = this.#listener;
    return listener !== null && listener.startsWith('unix:') ? listener.slice('unix:'.length) : null;
  }

  kill(): void {
    this.#socket.destroy();
  }

  closeAfterReplies(): void {
    this.#closeAfterReplies();
  }

  blockedOn(): { server: string; connectionId: number } | null {
    const lease = this.#lease;
    if (lease.kind !== 'pinned' || !lease.lease.blocking || lease.conn.serverId === null) return null;
    return { server: lease.server.name, connectionId: lease.conn.serverId };
  }

  pinnedOn(): { server: string; connectionId: number } | null {
    const lease = this.#lease;
    if (lease.kind !== 'pinned' || lease.conn.serverId === null) return null;
    return { server: lease.server.name, connectionId: lease.conn.serverId };
  }

  homeServer(): string | null {
    const lease = this.#lease;
    return lease.kind === 'pinned' ? lease.server.name : (this.#pool.route(null)?.name ?? null);
  }

  client(id: number): ClientHandle | undefined {
    return this.#pool.client(id);
  }

  clients(): Iterable<ClientHandle> {
    return this.#pool.connectedClients();
  }

  now(): number {
    return this.#pool.now();
  }

  /** A request the rules answer when its turn comes (Redis: CLIENT ID, LIST, KILL, UNBLOCK…). */
  #answerLocal(slot: Slot): boolean {
    const answer = this.#rules.answerLocal(slot.local, this);
    switch (answer.kind) {
      case 'reply':
        this.#answer(slot, answer.bytes);
        return true;
      case 'refuse':
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', answer.message);
        return true;
      case 'send': {
        const server = this.#pool.server(answer.server);
        const conn = server === undefined ? null : this.#affinity.pick(server);
        if (server === undefined || conn === null) {
          this.#answerError(slot, 'NO_HEALTHY_SERVER', `no ready connection to the server of pool ${this.#pool.config.name} that request is for`);
          return true;
        }
        // Like any shared request: in order with the session's others to that server.
        this.#affinity.sent(server, conn);
        this.#sendOn(slot, answer.bytes, conn, server);
        return true;
      }
    }
  }

  // ── dispatch ────────────────────────────────────────────────────────────────────────────────

  /** Sends or answers the slot; false when it must wait (this.#wait says for what). */
  #dispatch(slot: Slot): boolean {
    const spec = slot.spec;
    const aborted = this.#rules.aborted(spec);
    if (aborted !== null) {
      this.#answerError(slot, aborted.reason, `transaction aborted: ${aborted.message}`);
      return true;
    }
    if (slot.answerWith !== null) {
      // An error poolside gives for the server (TRACKING REDIRECT to nobody): inside MULTI the
      // transaction must then abort, as a command that failed to queue makes Redis's.
      const lease = this.#lease;
      if (lease.kind === 'pinned') lease.state.refusedInside();
      else if (this.#deferred !== null) this.#deferred.aborted = true;
      this.#answer(slot, slot.answerWith);
      return true;
    }
    const cluster = this.#pool.cluster !== null ? this.#rules.cluster : undefined;
    if (cluster !== undefined) {
      const served = this.#dispatchCluster(slot, cluster);
      if (served !== null) return served;
    }
    if (this.#pool.config.lease === 'exclusive' && (spec.use === 'shared' || spec.use === 'select' || spec.use === 'pin-close')) {
      // Session mode: the client's own connection for its whole life, state and all.
      if (this.#lease.kind === 'pinned') return this.#sendPinned(slot);
      return this.#startPin(slot);
    }
    switch (spec.use) {
      case 'quit': {
        const lease = this.#lease;
        if (lease.kind === 'pinned' && lease.relay) {
          // Subscribed: the server answers it after the confirmations still on their way, then
          // closes the connection, and the client is closed after everything it relayed.
          this.#quitRelayed = true;
          return this.#sendPinned(slot);
        }
        this.#answer(slot, this.#codec.okReply);
        return true;
      }
      case 'ok':
        this.#answer(slot, this.#codec.okReply);
        return true;
      case 'unsupported':
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} ${spec.note}`);
        return true;
      case 'local': {
        const lease = this.#lease;
        // Subscribed, the server answers in order with the relayed frames (or refuses, as Redis does).
        if (lease.kind === 'pinned' && lease.relay) return this.#sendPinned(slot);
        if (this.#inTransaction()) {
          // Inside MULTI Redis would queue it and answer in EXEC's result; poolside cannot run it
          // there, so it refuses, and the transaction aborts rather than run in part.
          this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} inside MULTI is not supported through poolside`);
          return true;
        }
        return this.#answerLocal(slot);
      }
      case 'denied':
        this.#answerError(slot, 'DENIED_COMMAND', `${spec.name} ${spec.note}`);
        return true;
      case 'pin-once':
        // The client already sent its FIN: like Redis at EOF, a blocking command is not started
        // for a client that may be gone (it could hold an exclusive connection forever). It stays
        // held, and what is behind it with it: once the replies before it are written, #flush
        // ends the client at it.
        // Inside MULTI it is only queued (EXEC runs it without blocking): it goes like any other.
        if (this.#halfClosed && !this.#inTransaction()) {
          slot.blocking = true;
          this.#flush();
          return false;
        }
        if (this.#lease.kind === 'pinned') return this.#sendPinnedOrWait(slot);
        return this.#startPin(slot);
      case 'pin-open':
      case 'pin-session':
      case 'relay':
        if (this.#lease.kind === 'pinned') return this.#sendPinned(slot);
        return this.#startPin(slot);
      default:
        if (this.#lease.kind === 'pinned') return this.#sendPinnedOrWait(slot);
        if (this.#mapChanged()) return false;
        if (slot.fanout !== null) return this.#sendFanout(slot, slot.fanout);
        return this.#sendShared(slot, true);
    }
  }

  /**
   * routing: cluster: the slot map changed since the requests this session has in flight were
   * routed: it waits for them (true) before routing more by the new map, so none of its requests
   * overtakes an earlier one that will come back MOVED to the same node.
   */
  #mapChanged(): boolean {
    const cluster = this.#pool.cluster;
    if (cluster === null || cluster.version === this.#mapVersion) return false;
    if (this.#outstanding > 0) {
      this.#wait = 'idle';
      return true;
    }
    this.#mapVersion = cluster.version;
    return false;
  }

  #sendShared(slot: Slot, mayWait: boolean): boolean {
    const pool = this.#pool;
    if (slot.crossServer) {
      if (pool.cluster !== null) {
        // Redis's own refusal, as a cluster node gives it.
        pool.fail('CROSS_SERVER', `keys of ${slot.spec.name} are in different hash slots`);
        this.#answer(slot, CROSSSLOT_REPLY);
        return true;
      }
      this.#answerError(slot, 'CROSS_SERVER', `keys of ${slot.spec.name} map to different servers of pool ${pool.config.name}`);
      return true;
    }
    const server = pool.route(slot.hash, slot.spec.readOnly);
    if (server === null) {
      this.#answerError(slot, 'NO_HEALTHY_SERVER', this.#noServerMessage(slot.hash));
      return true;
    }
    const conn = this.#affinity.pick(server);
    if (conn === null) {
      if (!mayWait) return false;
      return this.#waitForConnection(slot);
    }
    this.#affinity.sent(server, conn);
    this.#send(slot, conn, server);
    return true;
  }

  /** Why nothing can take a request: in a cluster pool, which slot and which node (the other shards may be fine). */
  #noServerMessage(hash: number | null): string {
    const pool = this.#pool;
    if (pool.cluster === null || hash === null) return `no healthy server in pool ${pool.config.name}`;
    const owner = pool.cluster.nodeForSlot(hash);
    return owner === null
      ? `no node serves hash slot ${hash} in pool ${pool.config.name} (the slot map does not cover it)`
      : `no healthy server for hash slot ${hash} in pool ${pool.config.name}: its primary ${owner.name} is out of routing (down, or failing over)`;
  }

  /**
   * No connection is ready for the slot: it waits in the pool's queue (false), or is refused
   * QUEUE_FULL (true: answered). Kept across resumes that found nothing ready: queue.timeout
   * counts from the first wait.
   */
  #waitForConnection(slot: Slot): boolean {
    const pool = this.#pool;
    this.#waitSince ??= pool.now();
    if (!pool.wait(this, this.#waitSince)) {
      this.#answerError(slot, 'QUEUE_FULL', `pool ${pool.config.name} has ${pool.config.queue.max} requests waiting`);
      return true;
    }
    this.#wait = 'connection';
    return false;
  }

  /**
   * A request while the session is pinned. A sharded pool pins only for a blocking command, on its
   * key's server: a request for another server, or for several, must not run there (it would read
   * that server's keys: nil, or a blocking pop on the wrong list). It waits until the pinned
   * requests are answered and the lease is given back, then goes where its keys route (split, if
   * it spreads). Elsewhere the pinned connection serves everything, whole.
   */
  #sendPinnedOrWait(slot: Slot): boolean {
    const lease = this.#lease;
    if (lease.kind === 'pinned' && this.#pool.router.keyed && !lease.relay) {
      const elsewhere = slot.crossServer || slot.fanout !== null || (slot.hash !== null && this.#pool.route(slot.hash) !== lease.server);
      if (elsewhere) {
        this.#wait = 'idle';
        return false;
      }
    }
    return this.#sendPinned(slot);
  }

  /**
   * Sends every part of a request that goes to several servers, in parallel, each on a shared
   * connection of its server like any request (in order with the session's others there). All or
   * nothing while it may wait: as long as one part's server has no ready connection the whole
   * request waits, so no part runs long before the others. A part that cannot go (no healthy
   * server; with `giveUp`, the wait that ran out) fails, and the codec's merge decides, for a read
   * (idempotent: its other parts are sent, memcached answers the rest as misses); a write is then
   * not sent at all, never applied in part when poolside knows beforehand one part cannot run.
   */
  #sendFanout(slot: Slot, fanout: Fanout, giveUp: { reason: FailureReason; message: string } | null = null): boolean {
    const pool = this.#pool;
    const parts = fanout.parts;
    const conns: (Connection | null)[] = [];
    let doomed: { reason: FailureReason; message: string } | null = null;
    for (const part of parts) {
      const server = this.#partServer(part);
      const conn = server === null ? null : this.#affinity.pick(server);
      if (server === null) {
        doomed ??= { reason: 'NO_HEALTHY_SERVER', message: `no healthy server in pool ${pool.config.name} for part of ${slot.spec.name}` };
      } else if (conn === null) {
        if (giveUp !== null) {
          doomed ??= giveUp;
        } else {
          return this.#waitForConnection(slot);
        }
      }
      conns.push(conn);
    }
    if (doomed !== null && !slot.spec.idempotent) {
      this.#answerError(slot, doomed.reason, doomed.message);
      return true;
    }
    if (fanout.kind === 'split') pool.counters.fanouts.split++;
    else pool.counters.fanouts.broadcast++;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const conn = conns[i];
      const server = this.#partServer(part);
      if (server === null || conn === null) {
        const why = server === null ? { reason: 'NO_HEALTHY_SERVER' as const, message: `no healthy server in pool ${pool.config.name} for part of ${slot.spec.name}` } : (giveUp ?? doomed);
        if (why !== null) this.#answerError(part, why.reason, why.message);
        continue;
      }
      this.#affinity.sent(server, conn);
      this.#send(part, conn, server);
    }
    return true;
  }

  /** Sends a part again (a retry), on its server's ready connection; false when there is none. */
  #sendPart(slot: Slot): boolean {
    const server = this.#partServer(slot);
    const conn = server === null ? null : this.#affinity.pick(server);
    if (server === null || conn === null) return false;
    this.#affinity.sent(server, conn);
    this.#send(slot, conn, server);
    return true;
  }

  /** A part's server now: its own (broadcast; null while ejected), or where its keys route. */
  #partServer(slot: Slot): ServerPool | null {
    const fixed = slot.part?.server ?? null;
    if (fixed === null) return this.#pool.route(slot.hash, slot.spec.readOnly);
    return fixed.health.kind === 'ejected' ? null : fixed;
  }

  /** Every part is in: the client gets the codec's merge of them, in the parent's turn. */
  #finishFanout(fanout: Fanout): void {
    const parent = fanout.parent;
    const merged = this.#codec.mergeReplies(fanout.spec, parent.bytes, fanout.keyCount, fanout.results());
    const failure = fanout.firstFailure();
    this.#pool.counters.fanouts.partsFailed += fanout.failedParts();
    // Counted as poolside's failure only when the client gets poolside's error for it.
    if (failure !== null && this.#codec.isErrorResponse(merged)) this.#pool.fail(failure.reason, failure.message);
    if (this.#closed) return;
    this.#answer(parent, merged);
  }

  #startPin(slot: Slot): boolean {
    const pool = this.#pool;
    const spec = slot.spec;
    // A cluster pool pins what #dispatchCluster let through, on its key's node (keyless: any primary).
    if (pool.router.keyed && pool.cluster === null && (spec.use !== 'pin-once' || slot.hash === null)) {
      const message = `${spec.name} needs a connection of its own, which ketama pool ${pool.config.name} cannot give`;
      this.#rules.refusedPin(spec, 'UNSUPPORTED_COMMAND', message);
      this.#answerError(slot, 'UNSUPPORTED_COMMAND', message);
      return true;
    }
    if (pool.cluster !== null && slot.crossServer) {
      // A blocking command's keys in different slots: Redis's own refusal, before pinning anything.
      this.#rules.refusedPin(spec, 'CROSS_SERVER', `keys of ${spec.name} are in different hash slots`);
      pool.fail('CROSS_SERVER', `keys of ${spec.name} are in different hash slots`);
      this.#answer(slot, CROSSSLOT_REPLY);
      return true;
    }
    // Requests already in flight on shared connections must run before anything on the new one.
    if (this.#outstanding > 0) {
      this.#wait = 'idle';
      return false;
    }
    const server = pool.route(slot.hash);
    if (server === null) {
      const message = `no healthy server in pool ${pool.config.name}`;
      this.#refusedPin(spec, 'NO_HEALTHY_SERVER', message);
      this.#answerError(slot, 'NO_HEALTHY_SERVER', message);
      return true;
    }
    const reason = pool.config.lease === 'exclusive' ? 'session_mode' : (this.#deferred?.spec.note ?? spec.note);
    this.#lease = { kind: 'acquiring' };
    this.#wait = 'lease';
    server.acquireExclusive(this).then(
      (lease) => this.#onLeased(lease, server, reason),
      (err: Error) => this.#onLeaseFailed(err),
    );
    return false;
  }

  #onLeased(lease: Lease, server: ServerPool, reason: string): void {
    if (this.#closed) {
      lease.release(false);
      return;
    }
    this.#pool.countPin(reason);
    const session = this.#pool.config.lease === 'exclusive';
    this.#lease = { kind: 'pinned', lease, conn: lease.connection, server, outstanding: 0, state: this.#rules.pinned(), session, relay: false };
    this.#wait = 'none';
    const deferred = this.#deferred;
    if (deferred !== null) {
      this.#deferred = null;
      this.#openDeferred(deferred, server);
    }
    this.#drainBacklog();
    // Nothing was sent on it (the request it was for is gone): give it back at once.
    this.#afterSettle();
  }

  #onLeaseFailed(err: Error): void {
    this.#lease = SHARED;
    this.#wait = 'none';
    if (this.#closed) return;
    const slot = this.#backlog.shift();
    if (slot !== undefined) {
      this.#pool.waitingRequests--;
      const message = `no exclusive connection for ${slot.spec.name} in pool ${this.#pool.config.name}: ${err.message}`;
      this.#refusedPin(slot.spec, 'POOL_TIMEOUT', message);
      this.#answerError(slot, 'POOL_TIMEOUT', message);
    }
    this.#drainBacklog();
  }

  /** A pin poolside could not give: a deferred MULTI it was for fails what follows it, up to its EXEC. */
  #refusedPin(spec: CommandSpec, reason: FailureReason, message: string): void {
    const deferred = this.#deferred;
    this.#deferred = null;
    this.#rules.refusedPin(deferred?.spec ?? spec, reason, message);
  }

  // ── cluster pools: state that lives on one node (docs/redis-cluster.md#stateful-commands) ──

  /**
   * What a cluster pool does differently with a request, given the session's lease; null: the
   * ordinary dispatch serves it. A transaction, a watch, a blocking command and a shard
   * subscription live on the connection of one node: they pin to the node of their key (a
   * keyless MULTI is answered here and sent with the first request after it, on that request's
   * node), and a request whose keys cannot go there is refused as Redis Cluster refuses it.
   * State that would have to follow the client's keys to every node (AUTH forwarded, HELLO 3,
   * CLIENT SETNAME/TRACKING, RESET) cannot, and is refused.
   */
  #dispatchCluster(slot: Slot, cluster: ClusterRules): boolean | null {
    const spec = slot.spec;
    const lease = this.#lease;
    const split = slot.crossServer || (slot.fanout !== null && slot.fanout.kind === 'split');
    if (lease.kind === 'pinned') {
      if (lease.relay) return null; // subscribed: everything goes to the server, which answers as Redis
      if (!lease.state.dirty && !lease.session) {
        // Pinned for a blocking command only: what would pin anew waits for it to end, then goes
        // where its own key says (#sendPinnedOrWait does the same for keyed requests). A pin just
        // made for this very request has nothing in flight: the ordinary dispatch sends it there.
        if (lease.outstanding > 0 && (spec.use === 'pin-open' || spec.use === 'relay' || spec.use === 'pin-session')) {
          this.#wait = 'idle';
          return false;
        }
        return null;
      }
      if (spec.use === 'pin-open' && !lease.state.queuing && lease.outstanding > 0) {
        // A MULTI or WATCH read while an EXEC/DISCARD (or a WATCH) is still in flight: whether the
        // pin outlives those replies decides its node (a pipelined next transaction may be on
        // another one), so it waits for them, then opens anew or joins the watch.
        this.#wait = 'idle';
        return false;
      }
      if (spec.use === 'pin-session') return this.#refuseSessionState(slot);
      if (spec.use === 'relay' && lease.state.queuing) {
        // Queued, it would make this node's connection the session's relay after EXEC/DISCARD,
        // and every later request for another node's key would get this node's MOVED.
        this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} inside MULTI is not supported in cluster pool ${this.#pool.config.name}`);
        return true;
      }
      const owner = slot.hash === null ? null : (this.#pool.cluster?.nodeForSlot(slot.hash) ?? null);
      // Watching only, a keyspace-wide command (DBSIZE, KEYS…) answers for the whole cluster, as
      // outside the watch; inside MULTI it runs on the transaction's node, as MULTI there would.
      const wide = slot.fanout !== null && slot.fanout.kind === 'broadcast' && !lease.state.queuing;
      if (!split && !wide && (owner === null || owner === lease.server)) {
        // A blocking command after the client's FIN, watching: not started (the ordinary dispatch holds it).
        if (spec.use === 'pin-once' && this.#halfClosed && !lease.state.queuing) return null;
        // Its node's: on the pinned connection, whole (a keyless broadcast runs on this node only, as in MULTI on Redis).
        if (spec.use === 'shared' || spec.use === 'select' || spec.use === 'pin-once' || spec.use === 'pin-open' || spec.use === 'pin-close') return this.#sendPinned(slot);
        return null;
      }
      if (!lease.state.queuing && !slot.crossServer && (spec.use === 'shared' || spec.use === 'select')) {
        // Watching only: a request for another node's keys runs there, like any shared request.
        if (this.#mapChanged()) return false;
        return slot.fanout !== null ? this.#sendFanout(slot, slot.fanout) : this.#sendShared(slot, true);
      }
      return this.#refuseCrossSlot(slot);
    }
    const deferred = this.#deferred;
    if (deferred !== null) {
      const close = cluster.closeDeferred(spec, deferred.aborted);
      if (close !== null) {
        this.#deferred = null;
        this.#answer(slot, close);
        return true;
      }
      const refused = cluster.refusedInsideDeferred(spec);
      if (refused !== null) {
        this.#answer(slot, refused);
        return true;
      }
      switch (spec.use) {
        case 'quit':
        case 'ok':
        case 'local':
        case 'unsupported':
        case 'denied':
          return null; // answered (or refused, aborting the transaction) as inside any MULTI
        case 'pin-session':
          return this.#refuseSessionState(slot);
        case 'relay':
          this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} inside MULTI is not supported in cluster pool ${this.#pool.config.name}`);
          return true;
        default:
          // The first request of the transaction: its node is the transaction's (keyless: any primary).
          if (split) return this.#refuseCrossSlot(slot);
          return this.#startPin(slot);
      }
    }
    switch (spec.use) {
      case 'pin-session':
        return this.#refuseSessionState(slot);
      case 'pin-open':
        if (spec.keys.kind === 'none') {
          // MULTI names no node: answered now, sent with the first request of the transaction.
          this.#deferred = { bytes: slot.bytes, spec, aborted: false };
          this.#answer(slot, this.#codec.okReply);
          return true;
        }
        return split ? this.#refuseCrossSlot(slot) : null;
      case 'pin-once':
        if (split) return this.#refuseCrossSlot(slot);
        if (slot.hash === null) {
          this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${spec.name} outside a transaction or WATCH has no node to run on in cluster pool ${this.#pool.config.name}: the client's writes went to several nodes`);
          return true;
        }
        return null;
      case 'relay':
        return split ? this.#refuseCrossSlot(slot) : null;
      default:
        return null;
    }
  }

  /**
   * Keys in several slots, or on another node than the session's pinned state: Redis's own
   * CROSSSLOT (counted as core's cross-slot refusals are), and a transaction being queued aborts.
   */
  #refuseCrossSlot(slot: Slot): boolean {
    const lease = this.#lease;
    if (lease.kind === 'pinned') lease.state.refusedInside();
    else if (this.#deferred !== null) this.#deferred.aborted = true;
    this.#pool.fail('CROSS_SERVER', `keys of ${slot.spec.name} are in different hash slots, or not on the node its transaction, watch or subscription is on`);
    this.#answer(slot, CROSSSLOT_REPLY);
    return true;
  }

  #refuseSessionState(slot: Slot): boolean {
    const name = this.#pool.config.name;
    this.#answerError(slot, 'UNSUPPORTED_COMMAND', `${slot.spec.name} would keep this client's state on one node of cluster pool ${name}, whose keys are on every node; not supported in a cluster pool (client_auth checks AUTH in poolside)`);
    return true;
  }

  /**
   * Sends a deferred MULTI on the connection just pinned for the first request of its
   * transaction. Nothing more goes until its reply: if the server refused it, what follows must
   * not run outside a transaction, and fails instead, up to its EXEC (refusedPin).
   */
  #openDeferred(deferred: { bytes: Buffer; spec: CommandSpec; aborted: boolean }, server: ServerPool): void {
    const lease = this.#lease;
    if (lease.kind !== 'pinned') return;
    const slot = new Slot(this, deferred.bytes, deferred.spec, null);
    slot.mapReply = (reply) => {
      if (this.#codec.isErrorResponse(reply)) {
        const text = reply.toString('latin1', 1, Math.min(reply.length - 2, 200));
        this.#rules.refusedPin(deferred.spec, 'SERVER_ERROR', `${deferred.spec.name} refused by ${server.name}: ${text}`);
      }
      return null; // the client had its answer when it sent it
    };
    this.#sendPinned(slot);
    if (deferred.aborted) lease.state.refusedInside();
    this.#wait = 'idle';
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
        // The relay connection runs in the session's database too (commands after UNSUBSCRIBE,
        // and RESP3 clients that keep sending while subscribed).
        const db = this.#db ?? lease.server.config.db;
        if (lease.conn.db !== db) {
          lease.lease.send(this.#codec.encodeSelect(db), lease.server.selectTarget, false);
          lease.conn.assumeDb(db);
        }
      }
      lease.lease.relay(slot.bytes);
      this.#answer(slot, EMPTY);
      return true;
    }
    if (spec.use === 'pin-session') lease.session = true;
    slot.pinned = true;
    // Whether poolside may add to the stream before this request (MULTI itself is not inside a
    // transaction; everything after it is, until EXEC or DISCARD).
    const queuing = lease.state.queuing;
    const plan = lease.state.send(spec);
    slot.token = plan.token;
    lease.outstanding++;
    if (plan.kind === 'replace') {
      slot.replaceReply = plan.reply;
      this.#sendOn(slot, plan.bytes, lease.conn, lease.server);
      return true;
    }
    if (plan.prelude !== null) {
      // WAIT's write fence: if the server refuses it (an ACL user without PUBLISH), WAIT could
      // count acknowledgements of writes it never covered, so the client gets an error instead.
      const prelude = plan.prelude;
      lease.lease.send(prelude, {
        onResponse: (bytes) => {
          if (this.#codec.isErrorResponse(bytes)) {
            slot.replaceReply = this.#codec.errorReply('UNSUPPORTED_COMMAND', `${spec.name} needs poolside's write fence, which the server refused: ${bytes.toString('latin1', 1, Math.min(bytes.length - 2, 200))}`);
          }
        },
        onFailure: () => {},
      }, false);
    }
    this.#send(slot, lease.conn, lease.server, queuing);
    if (plan.barrier) {
      // It may move the connection to a database poolside learns only from its reply (EXEC of a
      // SELECT, RESET): nothing more on the session's behalf until then.
      lease.conn.assumeDb(null);
      this.#wait = 'idle';
    }
    return true;
  }

  /** Whether requests now are queued in a transaction (MULTI sent, or deferred until a key picks its server). */
  #inTransaction(): boolean {
    const lease = this.#lease;
    return (lease.kind === 'pinned' && lease.state.queuing) || this.#deferred !== null;
  }

  /** Writes the slot on `conn`, first replaying this session's database if the connection is elsewhere. */
  #send(slot: Slot, conn: Connection, server: ServerPool, queuing = false): void {
    const lease = this.#lease;
    // Queued inside MULTI, a blocking command answers QUEUED at once; EXEC runs it without blocking.
    slot.blocking = slot.spec.use === 'pin-once' && !queuing;
    // Inside a transaction being queued poolside adds nothing: a SELECT there would be queued too.
    if (!queuing) {
      const db = this.#db ?? server.config.db;
      if (conn.db !== db) {
        if (lease.kind === 'pinned' && lease.conn === conn) lease.lease.send(this.#codec.encodeSelect(db), server.selectTarget, false);
        else conn.send(this.#codec.encodeSelect(db), server.selectTarget);
        conn.assumeDb(db);
      }
    }
    if (slot.spec.use === 'select') {
      if (slot.selectDb !== null && !queuing) {
        // The connection will be in that database if the server accepts; the session adopts it
        // only then, and sends nothing more until it knows (a barrier: see onSlotResponse).
        conn.assumeDb(slot.selectDb);
      } else {
        // Unreadable, or queued in a transaction that EXEC may commit or not: trust nothing after it.
        conn.assumeDb(null);
      }
    }
    this.#sendOn(slot, slot.bytes, conn, server);
    if (slot.spec.use === 'select' && !queuing) this.#wait = 'idle';
  }

  #sendOn(slot: Slot, bytes: Buffer, conn: Connection, server: ServerPool): void {
    slot.server = server;
    slot.conn = conn;
    const order = this.#orderOf(slot);
    if (order > this.#latestSent) this.#latestSent = order;
    this.#outstanding++;
    const lease = this.#lease;
    if (slot.pinned && lease.kind === 'pinned') {
      // A blocking command may legitimately wait longer than request_timeout.
      lease.lease.send(bytes, slot, slot.blocking);
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
    if (this.#wait === 'none' && this.#backlog.length > 0 && (this.#redirectQueue.length > 0 || this.#backoffInFlight !== null)) {
      // A redirected request is still to be sent again (or its retry answered): nothing behind it
      // goes first, whatever the session waited for before (a connection to another node, a
      // lease). It counts as outstanding, so the backlog drains once it is answered.
      this.#wait = 'idle';
      return;
    }
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
      // A read split over servers goes where it can; the parts that found no connection fail.
      if (slot.fanout !== null && this.#lease.kind === 'shared' && slot.spec.idempotent && !this.#closed) this.#sendFanout(slot, slot.fanout, { reason, message });
      else this.#answerError(slot, reason, message);
    }
  }

  // ── replies ─────────────────────────────────────────────────────────────────────────────────

  /** Bookkeeping for a slot that got its response or failed. */
  #settle(slot: Slot): void {
    this.#outstanding--;
    if (slot === this.#backoffInFlight) {
      // Answered (or redirected again, and queued first): the retries behind it may go.
      this.#backoffInFlight = null;
      if (this.#redirectQueue.length > 0) this.#armRedirectTimer(0);
    }
    const lease = this.#lease;
    if (slot.pinned && lease.kind === 'pinned' && slot.conn === lease.conn) {
      lease.outstanding--;
      if (slot.blocking) lease.lease.blockingDone();
    } else if (slot.server !== null) {
      this.#affinity.settled(slot.server, slot.conn);
    }
  }

  #afterSettle(): void {
    const lease = this.#lease;
    if (lease.kind === 'pinned' && lease.outstanding === 0 && !lease.state.dirty && !lease.session && !lease.relay) {
      this.#lease = SHARED;
      lease.lease.release(lease.conn.db !== lease.server.config.db);
    }
    if (this.#wait === 'idle' && this.#outstanding === 0) {
      this.#wait = 'none';
      this.#drainBacklog();
    }
  }

  #answer(slot: Slot, response: Buffer): void {
    this.#setResponse(slot, response);
    slot.done = true;
    this.#flush();
  }

  /** What the client gets: the reply, or what the rules' map makes of it (nothing: silent). */
  #setResponse(slot: Slot, response: Buffer): void {
    const map = slot.mapReply;
    if (map === null) {
      slot.response = response;
      return;
    }
    slot.mapReply = null;
    const mapped = map(response);
    if (mapped === null) slot.silent = true;
    slot.response = mapped ?? EMPTY;
  }

  #answerError(slot: Slot, reason: FailureReason, message: string): void {
    const part = slot.part;
    if (part !== null) {
      // Not the client's answer: the fanout's merge decides what the client gets (and is counted).
      if (part.fanout.failed(part.index, reason, message)) this.#finishFanout(part.fanout);
      return;
    }
    // Refused inside a transaction being queued: its EXEC must abort, as Redis's would.
    const lease = this.#lease;
    if (lease.kind === 'pinned') lease.state.refusedInside();
    else if (this.#deferred !== null && slot.server === null) this.#deferred.aborted = true;
    this.#pool.fail(reason, message);
    const reply = this.#codec.errorReply(reason, message);
    // No error reply in this protocol: the client is closed at this reply's turn instead, and
    // nothing it sends from now on is read: a request run now could never get its reply to the
    // client, which sees a failed call and may well send it again.
    if (reply === null) {
      slot.closes = true;
      this.#stopReading();
    }
    this.#answer(slot, reply ?? EMPTY);
  }

  /** `endAtBlocking`: a half-closed client's unanswered blocking command at the head ends it now (see #endAtBlockingSoon). */
  #flush(endAtBlocking = false): void {
    const stop = this.#replies.flush(!this.#closed, this.#halfClosed);
    if (stop === 'blocking' && !endAtBlocking) {
      this.#endAtBlockingSoon();
      return;
    }
    if (stop !== 'idle') {
      // A request poolside could not answer in the client's protocol, or a blocking command of a
      // client that sent its FIN: the replies before it are written, then the connection ends, so
      // the client's library sees a failed call, never a reply that belongs to another request.
      this.#stopReading();
      this.#output.end(true);
      return;
    }
    if (this.#replies.length !== 0 || this.#closed) return;
    // QUIT, an error, or the client shut down its write side: end after the last reply it is owed.
    if (this.#quitting) {
      if (!this.#quitRelayed) this.#output.end(!this.#halfClosed);
    } else if (this.#leaving.state === 'due') {
      // Closed between requests: FIN, then read and drop until the client's (no RST for unread bytes).
      this.#quitting = true;
      this.#output.endLingering(CLOSE_LINGER_MS);
    }
  }

  /**
   * A half-closed client's blocking command is unanswered at the head of its replies: the client is
   * ended there at the end of this turn, not now. One already sent may have run (BLPOP on a
   * non-empty list) and its reply be in the very read being handled, behind the reply just
   * written (WATCH; EVAL; BLPOP answered in one write): ending now would drop that reply and lose
   * the element it popped, where Redis answers it. (A reply still on the wire is not waited for.)
   */
  #endAtBlockingSoon(): void {
    if (this.#blockingEndDue) return;
    this.#blockingEndDue = true;
    setImmediate(() => {
      this.#blockingEndDue = false;
      if (!this.#closed) this.#flush(true);
    });
  }

  /**
   * Closes the client between requests (drain, a retired pool, idle_timeout): it keeps being read
   * for one more turn of the event loop, so a request already in the receive buffer is answered
   * `message` (DRAINING, not run) rather than lost; then the FIN follows the last reply it is owed.
   */
  #leave(message: string): void {
    if (this.#closed || this.#quitting || this.#leaving.state !== 'no') return;
    this.#leaving = { state: 'deciding', message };
    // Two turns: the second one's I/O phase reads whatever arrived before the decision.
    setImmediate(() =>
      setImmediate(() => {
        this.#leaving = { state: 'due', message };
        this.#flush();
      }),
    );
  }

  // ── lifecycle: shutdown and idle clients (PoolClient) ───────────────────────────────────────

  /**
   * Shutdown began: an idle client is closed now, one with requests in flight once it has their
   * replies; a new request is answered DRAINING. Blocked and subscribed clients stay until shutdown().
   */
  drain(): void {
    if (this.#shutdown !== 'cut') this.#shutdown = 'draining';
    // A request half read when the drain began is in flight, not new: it is run when it completes.
    if (this.#decoder.buffered > 0) this.#begunBeforeDrain = true;
    this.#closeIfDrained();
  }

  /** Whether the request just framed began before the drain, and so is run rather than refused. */
  #admitBegun(leaving: string, shutdown: string): boolean {
    if (!this.#begunBeforeDrain || leaving !== 'no' || shutdown !== 'draining') return false;
    this.#begunBeforeDrain = false;
    return true;
  }

  /** A reload replaced its pool: served as before, and closed once it holds nothing and is quiet. */
  retire(): void {
    if (this.#shutdown === 'no') this.#shutdown = 'retiring';
    this.#closeIfDrained();
  }

  /**
   * The deadline of a pool a reload replaced. A blocked or subscribed client is cut now (true),
   * its DRAINING error saying why. Any other is never cut under a request: its requests in flight
   * get their replies; a request sent from now on is answered DRAINING (not run) and the client is
   * closed after it, or once it is quiet.
   */
  retireDeadline(): boolean {
    if (this.#closed) return false;
    const holds = this.#holds();
    if (holds === 'blocking' || holds === 'subscription') return this.#cut('poolside reloaded its config and replaced this pool (shutdown.timeout after the reload reached)');
    if (this.#shutdown === 'no' || this.#shutdown === 'retiring') this.#shutdown = 'retired';
    this.#closeIfDrained();
    return false;
  }

  /** The shutdown deadline: closes the client now, between replies; false if it was gone already. */
  cut(): boolean {
    return this.#cut('poolside is shutting down (shutdown.timeout reached)');
  }

  #cut(message: string): boolean {
    if (this.#closed) return false;
    // Already on its way out (idle and ended by drain(), or after QUIT): not cut off.
    const closing = (this.#quitting || this.#leaving.state !== 'no') && this.#replies.length === 0;
    this.#shutdown = 'cut';
    if (this.#output.midReply) {
      // Half a reply is written: nothing may follow it but the end of the connection.
      this.#output.reset();
      return true;
    }
    // A blocked command or a subscription reads this as its answer: it says why the connection ends.
    const draining = this.#replies.length > 0 || this.subscribed ? this.#codec.errorReply('DRAINING', message) : null;
    if (draining !== null) this.#output.write(draining);
    this.#stopReading();
    this.#output.end(true);
    return !closing;
  }

  /** What the client holds that shutdown or idle_timeout must wait for (null: nothing). */
  #holds(): ClientInfo['holds'] {
    const lease = this.#lease;
    if (lease.kind === 'pinned') {
      if (lease.relay) return 'subscription';
      if (lease.lease.blocking) return 'blocking';
      if (lease.state.dirty) return 'transaction';
    }
    // A cluster pool's MULTI not sent yet is an open transaction all the same.
    if (this.#deferred !== null) return 'transaction';
    if (this.#busy()) return 'request';
    if (lease.kind === 'pinned') return 'connection';
    return null;
  }

  /** A request in flight, waiting, or a reply not yet written. */
  #busy(): boolean {
    return this.#outstanding > 0 || this.#backlog.length > 0 || this.#replies.length > 0 || this.#wait !== 'none' || this.#lease.kind === 'acquiring';
  }

  /**
   * Called again and again while poolside drains or the pool retires. A client is closed between
   * requests: holding nothing, and quiet for DRAIN_QUIET_MS, so one that just got a reply and is
   * about to send its next request is not closed under it (that request would be lost in the FIN).
   */
  #closeIfDrained(): void {
    if (this.#closed || this.#quitting || this.#leaving.state !== 'no' || this.#pool.now() - this.#chunkAt < DRAIN_QUIET_MS) return;
    // Half a request read (a large SET on a slow uplink) is not between requests: it is waited for
    // until the deadline, as a request in flight is.
    if (this.#decoder.buffered > 0) return;
    const holds = this.#holds();
    // A session-state pin (AUTH, HELLO, lease: exclusive) holds nothing worth waiting for; an open
    // transaction is waited for on a reload, not at shutdown (its next request would be refused).
    if (holds !== null && holds !== 'connection' && (holds !== 'transaction' || this.#shutdown === 'retiring')) return;
    this.#leave(this.#shutdown === 'draining' ? GOODBYE.shutdown : GOODBYE.reload);
  }

  /**
   * clients.idle_timeout, from the pool's sweep: closed when it sent nothing for idleMs and has no
   * request in flight, blocking command or subscription. An open transaction (MULTI, WATCH) is
   * closed too, as Redis's own `timeout` does: a client that left one open that long is stuck or
   * gone, and it holds an exclusive connection meanwhile (closing it discards the transaction).
   */
  closeIfIdle(now: number, idleMs: number): boolean {
    if (this.#closed || this.#quitting || this.#leaving.state !== 'no') return false;
    const holds = this.#holds();
    if (this.#busy() || holds === 'blocking' || holds === 'subscription') {
      // Idle counts from its last reply too, as Redis's timeout counts both ways: a worker whose
      // BLPOP just returned is not closed as it sends its next command. Seen busy by this sweep is
      // close enough to the reply, without a clock read per reply.
      this.#busyAt = now;
      return false;
    }
    if (now - Math.max(this.#chunkAt, this.#busyAt) < idleMs) return false;
    this.#leave(GOODBYE.idle);
    return true;
  }

  info(now: number): ClientInfo {
    return {
      id: this.id,
      peer: this.#unixPath() !== null || (this.#listener === null && this.#socket.remoteAddress === undefined) ? 'unix' : this.#addresses().addr,
      listener: this.#listener ?? this.#addresses().laddr,
      ageMs: now - this.#createdAt,
      idleMs: now - this.#chunkAt,
      lastCommand: this.#lastCommand,
      inflight: this.#outstanding,
      holds: this.#holds(),
    };
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
      if (!(err instanceof ProtocolError)) {
        // poolside's own fault, not the client's: loud, counted, and never blamed on the peer.
        this.#internalError(err);
        return;
      }
      this.#pool.counters.protocolErrors++;
      const slot = new Slot(this, EMPTY, UNASKED, null);
      this.#replies.push(slot);
      this.#answerError(slot, 'PROTOCOL_ERROR', err.message);
      this.#closeAfterReplies();
    }
  }

  /**
   * Reads nothing more and runs nothing more; replies still owed are written, then the client is
   * closed. (A protocol error, a lost pinned connection.)
   */
  #stopReading(): void {
    this.#quitting = true;
    this.#output.pauseReads('closing');
  }

  /** The client shut down its write side (half-close): nothing more comes; its requests are still answered. */
  #onEnd(): void {
    this.#quitting = true;
    this.#halfClosed = true;
    // A FIN may as well be a client that is gone: a blocking command it waits on may never
    // return, so, like Redis at EOF, it is dropped rather than hold its exclusive connection,
    // once the replies to the requests before that command are written (#flush ends it there).
    this.#flush();
  }

  #closeAfterReplies(): void {
    this.#stopReading();
    this.#flush();
  }

  #onClose(): void {
    this.#output.closed();
    if (this.#closed) return;
    this.#closed = true;
    if (this.#wait === 'connection') this.#pool.cancelWait(this);
    this.#pool.waitingRequests -= this.#backlog.length;
    this.#backlog.clear();
    const lease = this.#lease;
    if (lease.kind === 'pinned') {
      this.#lease = SHARED;
      // In flight, mid-transaction or subscribed: the connection cannot be lent as it is.
      const dirty = lease.state.dirty || lease.session || lease.conn.db !== lease.server.config.db;
      lease.lease.release(dirty);
    }
    this.#onClosed(this, this.#pool);
  }
}

