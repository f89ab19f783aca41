/**
 * One persistent socket from poolside to a server.
 *
 *   send(bytes, target) ──▶ #out ──(end of turn, or sooner: util/turn-writes; one writeBatch)──▶ server
 *                      └──▶ #inflight FIFO: targets in the order their requests were written
 *   server ──▶ response decoder ──▶ onResponse(bytes) ──▶ #inflight.shift().onResponse(bytes)
 *                                  └─▶ onResponsePart(piece, end) ──▶ #inflight.peek().onResponsePart(piece, end)
 *                                      (a large reply, as it arrives; shifted on `end`)
 *
 * Each request gets exactly one response, in order, so the head of the FIFO owns the next
 * response. A response with no target waiting breaks that invariant: the connection is destroyed.
 * A codec that matches responses by id (framed request_id) uses #byId instead of the FIFO: each
 * response goes to the request that has its id, in any order.
 * Time-based duties (request deadline, heartbeat, lifetime) run from the owner's periodic sweep:
 * nothing here reads the clock per request, only once per write batch (when it went out, kept in
 * a ring beside the FIFO) and once per read (when the server last showed progress).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { TlsConfig } from '../config/schema.js';
import { judgeHeartbeat } from '../codec/registry.js';
import type { Codec, HeartbeatReply, RequestIds } from '../codec/registry.js';
import type { ResponseDecoder, ResponseSink } from '../codec/codec.js';
import type { FailureReason } from '../errors.js';
import type { Clock, Timer } from '../util/clock.js';
import { Fifo } from '../util/fifo.js';
import { Roster } from '../util/roster.js';
import { flushAtEndOfTurn, sendQueuedWrites } from '../util/turn-writes.js';
import { writeBatch } from '../util/write-batch.js';
import { WriteTimes } from './write-times.js';

/** Who receives the response to one request. */
export interface ResponseTarget {
  /** What the request expects back, for a response decoder whose framing depends on it (headExpectation). */
  readonly expects?: unknown;
  /** The complete response, in order. Called at most once, or onFailure instead. */
  onResponse(bytes: Buffer): void;
  /**
   * Optional: a large response in pieces as it arrives, instead of onResponse; `end` on the last.
   * A target without it gets such a response whole. If the connection dies between pieces,
   * onFailure follows (not retryable) and the response is torn for good.
   */
  onResponsePart?(bytes: Buffer, end: boolean): void;
  /**
   * The request will get no response on this connection. `retryable`: its bytes reached the
   * connection but no byte of its response was read, so running it again elsewhere is safe if
   * the command is idempotent.
   */
  onFailure(reason: FailureReason, message: string, retryable: boolean): void;
}

export const CLOSE_REASONS = [
  'idle_timeout',
  'max_lifetime',
  'heartbeat_failed',
  'request_timeout',
  'remote_closed',
  'error',
  'protocol_error',
  'unexpected_response',
  'connect_failed',
  'init_failed',
  'server_busy',
  'reset_failed',
  'session_state',
  'shutdown',
  'tls_handshake',
  'certificate',
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

export type ConnectionState =
  | { kind: 'connecting' }
  | { kind: 'initializing'; pending: number }
  | { kind: 'ready' }
  | { kind: 'closed'; reason: CloseReason; message: string };

/**
 * A connection's heartbeat: none out (the next one due at `dueAt` if the connection stays idle,
 * Infinity when nothing scheduled one), or one out since `sentAt` with `misses` heartbeat.timeout
 * periods passed unanswered. At most one is out: a second PING behind an unanswered one could
 * only be answered after it, and would measure nothing.
 */
export type HeartbeatState = { kind: 'idle'; dueAt: number } | { kind: 'awaiting'; sentAt: number; misses: number };

export type { HeartbeatReply } from '../codec/registry.js';

/**
 * A request in flight on a connection whose codec matches responses by id (Codec.requestIds): its
 * target, the client's own id (put back into the response) and its number in the order requests
 * were queued (for the request deadline: WriteTimes). It lives only in the connection's map of ids
 * in flight, which keeps insertion order, so the map's first entry is the oldest unanswered; once
 * answered it is gone, whatever is still waiting before it.
 */
class Tagged {
  constructor(
    readonly id: number,
    readonly target: ResponseTarget,
    readonly original: Buffer,
    readonly seq: number,
  ) {}
}

/**
 * TCP keepalive's idle time on connections whose protocol has no heartbeat (framed or tcp with
 * none configured): the kernel then probes a silent peer, so a server host that vanished is found.
 */
const KEEPALIVE_IDLE_MS = 10_000;

/**
 * Ids a connection keeps for timed-out requests whose late replies never came before it is
 * evicted instead (Connection.expireStalled): the server is dropping requests, and each kept id
 * is one fewer for new ones.
 */
const EXPIRED_IDS_MAX = 1024;

export interface ConnectionOwner {
  onReady(conn: Connection): void;
  /** The heartbeat sent at `sentAt` (clock time) was answered with `reply`. */
  onHeartbeat(conn: Connection, reply: HeartbeatReply, sentAt: number): void;
  /** Fired once, after every in-flight target was failed. */
  onClose(conn: Connection, reason: CloseReason, message: string, wasReady: boolean): void;
  /**
   * A frame the server sent on its own: a heartbeat request poolside `answered` (Codec.answerServer),
   * or a response to nothing waiting that the codec says to drop (`dropped`).
   */
  onUnasked?(conn: Connection, action: 'answered' | 'dropped'): void;
  /**
   * A target threw while handed its response: poolside's own fault, not the server's. The
   * connection and its reply stream are intact and carry on; the owner makes it loud.
   */
  onInternalError(conn: Connection, error: unknown): void;
}

/** TLS for a connection: the secure context is built once per server (connectionTls), not per connect. */
export interface ConnectionTls {
  context: tls.SecureContext;
  servername: string | null;
  rejectUnauthorized: boolean;
}

/** A server's TlsConfig as connections use it. Pure (OpenSSL parses the PEM; no I/O). */
export function connectionTls(config: TlsConfig): ConnectionTls {
  const context = tls.createSecureContext({ ca: config.ca ?? undefined, cert: config.cert ?? undefined, key: config.key ?? undefined });
  return { context, servername: config.servername, rejectUnauthorized: config.rejectUnauthorized };
}

/** OpenSSL's verification results (err.code) and Node's name check: the server's certificate was refused. */
const CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED',
  'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Why a TLS connection failed, from the error's code: `certificate` when a certificate was refused
 * (the server's by us, or ours by the server: a TLS alert such as bad certificate, unknown CA,
 * certificate required), `tls_handshake` for any other TLS failure; null when it is not TLS's doing.
 */
export function tlsFailure(err: NodeJS.ErrnoException): 'certificate' | 'tls_handshake' | null {
  const code = err.code ?? '';
  if (CERTIFICATE_CODES.has(code) || /^ERR_SSL_.*(CERTIFICATE|_CERT_|UNKNOWN_CA)/.test(code)) return 'certificate';
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return 'tls_handshake';
  return null;
}

const REFUSED_AFTER_HANDSHAKE =
  'TLS certificate refused: the server hung up right after the handshake, before answering anything: it refused our client certificate (none given, or not signed by a CA it trusts: tls.cert_file, tls.key_file)';

export interface ConnectionSettings {
  host: string;
  port: number;
  /** null: plain TCP. The handshake is part of the connect (connect timeout, connect duration). */
  tls: ConnectionTls | null;
  connectTimeoutMs: number;
  clock: Clock;
  username: string | null;
  password: string | null;
  db: number;
  /**
   * Learn the server's id for the connection during setup (Redis CLIENT ID): exclusive
   * connections need it (CLIENT UNBLOCK, TRACKING REDIRECT name the connection a client holds).
   */
  identify: boolean;
  /**
   * A raw byte stream (protocol: tcp): no setup requests, ready once TCP (and TLS) is up, half-open
   * allowed, TCP keepalive on; bytes go to the StreamSink attached (attachStream), never through
   * the response decoder. Whoever owns it proves it alive with a configured probe (probe.ts).
   */
  raw: boolean;
}

/** Where a raw connection's bytes go (a relay session, or a probe exchange). */
export interface StreamSink {
  onData(chunk: Buffer): void;
  /** The server's FIN: it sends nothing more (it may still read what we send). */
  onEnd(): void;
  /** The write side has room again after write() returned false. */
  onDrain(): void;
  /** The connection closed (destroyed, reset, or both sides done); the owner hears after this. */
  onClose(): void;
}

/** TCP keepalive on raw connections: the only liveness check of a tcp pool without a heartbeat. */
const RAW_KEEPALIVE_MS = 15_000;

let nextId = 1;

export class Connection implements ResponseSink {
  readonly id = nextId++;
  /**
   * The database the connection is in after every request written so far; null when poolside
   * cannot know (a refused or queued SELECT): the next session to use it selects its own.
   */
  #db: number | null;
  readonly createdAt: number;
  /**
   * Liveness and use, written only here; owners read them and mark what they saw (markProgress,
   * noteUse). Reads, not responses, are progress: a large reply still streaming in is alive.
   */
  #responses = 0;
  #reads = 0;
  /** Clock time of the last read: when every response framed from it arrived. */
  #lastReadAt = 0;
  /**
   * The last read that carried a response, or part of one: a frame the server sent on its own (its
   * heartbeat request, answered by Codec.answerServer) is a read but no progress for a request.
   */
  #lastReplyAt = 0;
  /** Reads as of the owner's last mark, and when that mark saw new reads (or the connection became ready). */
  #seenReads = -1;
  #lastProgressAt: number;
  /** Heartbeats answered: responses minus these are the ones clients asked for. */
  #heartbeatsAnswered = 0;
  /** Client responses as of the owner's last noteUse, and when that count last changed (idle_timeout). */
  #seenUsed = 0;
  #lastUsedAt: number;
  /** When the owner retires this connection (max_lifetime with jitter); Infinity = never. */
  #expiresAt = Infinity;
  /** Past max_lifetime: lent to no new request, closed once idle and replaced. */
  #retiring = false;

  #state: ConnectionState = { kind: 'connecting' };
  /** TCP is up (with TLS, the handshake may still be running): tells a failed handshake from a failed connect. */
  #tcpConnected = false;
  #serverId: number | null = null;
  /**
   * Reads stopped by the client a reply is streaming to (holdReads): it is behind, and the rest of
   * the reply waits in the kernel and on the server rather than in poolside's memory.
   */
  #readsHeld = false;
  /** From start() on. */
  #socket: net.Socket | null = null;
  readonly #settings: ConnectionSettings;
  readonly #decoder: ResponseDecoder;
  readonly #inflight = new Fifo<ResponseTarget>(64);
  /**
   * With Codec.requestIds: requests in flight by the id poolside gave them, oldest first (a roster
   * keeps insertion order); #inflight is unused. Without: empty. Not a Map: with an entry per
   * request, the tables a Map discards kept every request's target alive through scavenges
   * (src/util/roster.ts).
   */
  readonly #ids: RequestIds | null;
  readonly #byId = new Roster<Tagged>();
  /**
   * With Codec.requestIds: ids of requests failed alone for request_timeout (expireStalled), kept
   * out of use until the server's late reply comes (then dropped), so it can never answer a new
   * request that was given the same id.
   */
  readonly #expired = new Set<number>();
  #lastId = 0;
  /** Requests ever queued, and ever answered: the oldest in flight is number #answered (by id: the oldest unanswered). */
  #queued = 0;
  #answered = 0;
  /** #queued as of the last flush, and when each flush went out. */
  #flushedQueued = 0;
  readonly #writes = new WriteTimes();
  #heartbeat: HeartbeatState = { kind: 'idle', dueAt: Infinity };
  #out: Buffer[] = [];
  /** The other batch array, reused so that a write costs no array; null while a flush holds it. */
  #spareOut: Buffer[] | null = [];
  #flushScheduled = false;
  #connectTimer: Timer | null = null;
  readonly #clock: Clock;
  #relay: ((bytes: Buffer) => void) | null = null;
  #pushSink: ((bytes: Buffer) => void) | null = null;
  /**
   * A response arriving in pieces: handed on to the head target (`streaming`), or gathered for a
   * target that takes only whole responses (heartbeat, setup, relay frames).
   */
  #part: { kind: 'none' } | { kind: 'streaming'; target: ResponseTarget } | { kind: 'gathering'; pieces: Buffer[]; bytes: number } = { kind: 'none' };
  readonly #owner: ConnectionOwner;
  readonly #codec: Codec;
  readonly #flush = (): void => this.#flushNow();
  /** Raw connections: who gets the bytes now (null: nobody; a byte arriving then is unexpected). */
  #stream: StreamSink | null = null;
  /** Raw connections: the server sent its FIN; we shut our write side (endWrite). */
  #readEnded = false;
  #writeEnded = false;
  /** Raw connections: since when write() has had bytes the kernel would not take (null: it drained). */
  #writeFullSince: number | null = null;

  constructor(codec: Codec, settings: ConnectionSettings, owner: ConnectionOwner, now: number) {
    this.#codec = codec;
    this.#owner = owner;
    this.#db = settings.db;
    this.createdAt = now;
    this.#lastProgressAt = now;
    this.#lastUsedAt = now;
    this.#decoder = codec.responseDecoder(this);
    this.#ids = codec.requestIds ?? null;
    this.#clock = settings.clock;
    this.#settings = settings;
  }

  /** Connects: the constructor has no side effects; the owner calls this once, right after it. */
  start(): void {
    if (this.#socket !== null || this.#state.kind !== 'connecting') return;
    const settings = this.#settings;
    const secure = settings.tls;
    const socket =
      secure === null
        ? net.connect({ host: settings.host, port: settings.port, noDelay: true, allowHalfOpen: settings.raw, keepAlive: settings.raw, keepAliveInitialDelay: RAW_KEEPALIVE_MS })
        : tls.connect({
            host: settings.host,
            port: settings.port,
            secureContext: secure.context,
            // Unset, Node sends the host as SNI (not an IP) and checks the certificate against it.
            servername: secure.servername ?? undefined,
            rejectUnauthorized: secure.rejectUnauthorized,
          });
    if (secure !== null) socket.setNoDelay(true);
    if (secure !== null && settings.raw) socket.setKeepAlive(true, RAW_KEEPALIVE_MS);
    this.#socket = socket;
    this.#connectTimer = settings.clock.setTimeout(() => {
      const inHandshake = secure !== null && this.#tcpConnected && this.#state.kind === 'connecting';
      // TCP up but no handshake: a server that does not speak TLS waits for a line that never comes.
      if (inHandshake) this.destroy('tls_handshake', `TLS handshake not done after ${settings.connectTimeoutMs}ms (does the server speak TLS on this port?)`);
      else this.destroy('connect_failed', `connect timeout after ${settings.connectTimeoutMs}ms`);
    }, settings.connectTimeoutMs);
    // With TLS, 'connect' is TCP's and 'secureConnect' the handshake's: the connection starts after both.
    socket.once('connect', () => {
      this.#tcpConnected = true;
    });
    socket.once(secure === null ? 'connect' : 'secureConnect', () => this.#onConnect(settings));
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset or a write to a socket the server closed is the server hanging up, like a FIN.
      const hungUp = err.code === 'ECONNRESET' || err.code === 'EPIPE';
      const tlsReason = secure === null ? null : tlsFailure(err);
      if (tlsReason !== null) {
        this.destroy(tlsReason, `TLS ${tlsReason === 'certificate' ? 'certificate refused' : 'handshake failed'}: ${err.message}${err.code === undefined ? '' : ` (${err.code})`}`);
      } else if (hungUp && this.#tlsRefusedUs()) {
        this.destroy('certificate', `${REFUSED_AFTER_HANDSHAKE} (${err.message})`);
      } else if (secure !== null && this.#state.kind === 'connecting' && this.#tcpConnected) {
        // TCP connected but the handshake never finished: the server hung up on our TLS.
        this.destroy('tls_handshake', `TLS handshake failed: ${err.message}`);
      } else {
        this.destroy(this.#state.kind === 'connecting' ? 'connect_failed' : hungUp ? 'remote_closed' : 'error', err.message);
      }
    });
    // 'end' (the server's FIN) rather than waiting for 'close': no request may be lent a
    // connection the server already hung up on.
    const hangUp = (): void => {
      if (secure !== null && this.#state.kind === 'connecting' && this.#tcpConnected) {
        this.destroy('tls_handshake', 'server closed the connection during the TLS handshake');
      } else if (this.#tlsRefusedUs()) {
        this.destroy('certificate', REFUSED_AFTER_HANDSHAKE);
      } else {
        this.destroy('remote_closed', 'server closed the connection');
      }
    };
    socket.on('end', () => {
      // A raw stream is half-open: the server's FIN ends only its direction.
      if (this.#stream !== null && this.#state.kind === 'ready') {
        this.#readEnded = true;
        this.#stream.onEnd();
        return;
      }
      hangUp();
    });
    socket.on('close', hangUp);
    if (settings.raw)
      socket.on('drain', () => {
        this.#writeFullSince = null;
        this.#stream?.onDrain();
      });
  }

  // ── raw streams (protocol: tcp) ──

  /** Sends every byte the server sends to `sink` from now on (a raw, ready connection only). */
  attachStream(sink: StreamSink): void {
    if (!this.#settings.raw) throw new Error('Connection.attachStream on a framed connection');
    this.#stream = sink;
  }

  /** Nobody takes the bytes any more: one arriving now is unexpected and closes the connection. */
  detachStream(): void {
    this.#stream = null;
    this.resumeStream();
  }

  /** Writes now (no batching: a relay writes what it read); false: the kernel buffer is full, wait for onDrain. */
  write(chunk: Buffer): boolean {
    if (this.#state.kind !== 'ready' || this.#socket === null || this.#writeEnded) return true;
    const took = this.#socket.write(chunk);
    if (!took && this.#writeFullSince === null) this.#writeFullSince = this.#clock.now();
    return took;
  }

  /**
   * How long the server has left written bytes untaken (0: it takes what is written): a server
   * that stopped reading, which nothing else on a lent raw connection would notice.
   */
  writeStalledFor(now: number): number {
    return this.#writeFullSince === null || this.#state.kind !== 'ready' ? 0 : now - this.#writeFullSince;
  }

  /** Our FIN, after every byte written so far (a client's half-close, relayed). */
  endWrite(): void {
    if (this.#state.kind !== 'ready' || this.#socket === null || this.#writeEnded) return;
    this.#writeEnded = true;
    this.#socket.end();
  }

  /**
   * Our FIN after every byte queued, then `done` once they have left (or the connection closed):
   * a relay that is over lets the client's last bytes out before the connection is destroyed.
   */
  endWriteThen(done: () => void): void {
    const socket = this.#socket;
    if (this.#state.kind !== 'ready' || socket === null || socket.writableFinished) {
      done();
      return;
    }
    let called = false;
    const once = (): void => {
      if (called) return;
      called = true;
      done();
    };
    socket.once('finish', once);
    socket.once('close', once);
    this.endWrite();
  }

  /** Stops reading from the server: the peer its bytes go to has a full write buffer. */
  pauseStream(): void {
    if (this.#state.kind !== 'closed') this.#socket?.pause();
  }

  resumeStream(): void {
    if (this.#state.kind !== 'closed') this.#socket?.resume();
  }

  /** Either direction was shut (FIN from the server, or ours): a raw connection that can never be lent again. */
  get halfClosed(): boolean {
    return this.#readEnded || this.#writeEnded;
  }

  /** Bytes handed to write() and not yet taken by the kernel. */
  get writeBuffered(): number {
    return this.#socket?.writableLength ?? 0;
  }

  /**
   * With TLS 1.3 the server checks our certificate after our side of the handshake is done: a
   * refusal is an alert (tlsFailure) or, when our first write crossed it, just a hang-up before the
   * server answered anything. Nothing else makes a TLS server hang up on a connection's setup
   * unanswered (Redis answers even a refused AUTH or a full server with an error first).
   */
  #tlsRefusedUs(): boolean {
    return this.#settings.tls !== null && this.#state.kind === 'initializing' && this.#reads === 0;
  }

  get db(): number | null {
    return this.#db;
  }

  /** What a request written now leaves the database at (null: unknown until a reply says). */
  assumeDb(db: number | null): void {
    this.#db = db;
  }

  /** The owner saw the connection alive now (a sweep that found new reads, a ready or validated connection). */
  markProgress(now: number): void {
    this.#seenReads = this.#reads;
    this.#lastProgressAt = now;
  }

  /** Whether anything was read since the owner's last markProgress. */
  get readSinceMark(): boolean {
    return this.#reads !== this.#seenReads;
  }

  /** When the owner last marked progress. */
  get lastProgressAt(): number {
    return this.#lastProgressAt;
  }

  /** The owner's sweep: clients got responses since the last note (heartbeats keep a connection honest, not busy). */
  noteUse(now: number): void {
    const used = this.#responses - this.#heartbeatsAnswered;
    if (used !== this.#seenUsed) {
      this.#seenUsed = used;
      this.#lastUsedAt = now;
    }
  }

  /** When clients last got a response on it (or it became ready): idle_timeout counts from here. */
  get lastUsedAt(): number {
    return this.#lastUsedAt;
  }

  /** Clock time of the last read from the server. */
  get lastReadAt(): number {
    return this.#lastReadAt;
  }

  /** When the owner retires it (max_lifetime); Infinity: never. Set once, when the owner opens it. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  expireAt(at: number): void {
    this.#expiresAt = at;
  }

  get retiring(): boolean {
    return this.#retiring;
  }

  /** Past max_lifetime: lent to no new request, closed by its owner once idle and replaced. */
  retire(): void {
    this.#retiring = true;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get ready(): boolean {
    return this.#state.kind === 'ready';
  }

  /** Requests written (or queued to be written) and not yet answered. */
  get inflight(): number {
    return this.#ids === null ? this.#inflight.length : this.#byId.size;
  }

  /**
   * A large response is arriving in pieces (or its client's reads are held): a request sent now
   * would wait behind the rest of it, so the pool sends elsewhere when it can.
   */
  get receivingLarge(): boolean {
    return this.#part.kind !== 'none' || this.#readsHeld;
  }

  /** Requests queued this turn, not yet written: they go out together in the turn's one write. */
  get unwritten(): number {
    return this.#queued - this.#flushedQueued;
  }

  /**
   * How long the oldest request in flight has waited with no byte from the server since it was
   * written: 0 when nothing is in flight or it is not written yet. The request deadline. It runs
   * from the write, never from a mark taken while the connection was idle, and every read since
   * the write is progress (a large reply still streaming in, or the replies ahead of it). Matched
   * by id (Codec.requestIds), a whole reply is some other request's, never progress for the oldest:
   * only a reply still arriving (part of a frame read) may be its, so another client's steady
   * replies cannot keep a request the server dropped waiting forever.
   */
  stalledFor(now: number): number {
    // Reads held by poolside itself: the server is not the one keeping the request waiting.
    if (this.inflight === 0 || this.#readsHeld) return 0;
    const writtenAt = this.#writes.writtenAt(this.#answered);
    if (writtenAt === undefined) return 0;
    // A server's own heartbeat request is no progress either way (#lastReplyAt leaves it out).
    const progressAt = this.#decoder.midFrame ? this.#lastReadAt : this.#ids === null ? this.#lastReplyAt : 0;
    return Math.max(0, now - Math.max(writtenAt, progressAt));
  }

  /**
   * Matched by id (Codec.requestIds), a request the server does not answer holds up no other
   * request, so it fails alone: every request stalled for `timeoutMs` (stalledFor, oldest first)
   * gets REQUEST_TIMEOUT (not retryable: the server may still run it), and its id stays out of use
   * until its late reply comes, which is then dropped. The connection and everyone else's requests
   * on it carry on. Returns false when the connection cannot do that (replies in order: the rest
   * wait behind the stuck one; a reply stopped half way: its id or not, nothing after it in the
   * byte stream can be framed, and the next reply would be read as its rest; or ids kept for
   * replies that never came reached EXPIRED_IDS_MAX or half the id space): the owner evicts it.
   */
  expireStalled(now: number, timeoutMs: number, message: string): boolean {
    const ids = this.#ids;
    if (ids === null || this.#decoder.midFrame) return false;
    while (this.#byId.size > 0 && this.stalledFor(now) >= timeoutMs) {
      const tagged = this.#byId.first();
      if (tagged === undefined) break;
      this.#byId.remove(tagged.id);
      this.#expired.add(tagged.id);
      this.#answered = this.#byId.first()?.seq ?? this.#queued;
      try {
        tagged.target.onFailure('REQUEST_TIMEOUT', message, false);
      } catch (err) {
        this.#owner.onInternalError(this, err);
      }
    }
    return this.#expired.size < Math.min(EXPIRED_IDS_MAX, Math.floor((ids.space - 1) / 2));
  }

  get heartbeat(): HeartbeatState {
    return this.#heartbeat;
  }

  /** Schedules the next heartbeat for `dueAt`, unless one is out. */
  scheduleBeat(dueAt: number): void {
    if (this.#heartbeat.kind === 'idle') this.#heartbeat = { kind: 'idle', dueAt };
  }

  /** Counts one more heartbeat.timeout period passed with the heartbeat out; returns the misses so far. */
  miss(): number {
    const beat = this.#heartbeat;
    if (beat.kind !== 'awaiting') return 0;
    this.#heartbeat = { kind: 'awaiting', sentAt: beat.sentAt, misses: beat.misses + 1 };
    return beat.misses + 1;
  }

  /**
   * Queues a request; its response goes to `target`. Bytes are written once per event-loop turn,
   * together with every other request queued in the same turn.
   */
  send(bytes: Buffer, target: ResponseTarget): void {
    const state = this.#state;
    if (state.kind === 'closed') {
      // Lent, then closed while its session was idle: the session hears on its next request.
      const message = `connection to server lost (${state.reason}: ${state.message})`;
      queueMicrotask(() => target.onFailure('SERVER_ERROR', message, true));
      return;
    }
    const ids = this.#ids;
    let out = bytes;
    if (ids !== null) {
      const id = this.#freeId(ids);
      if (id < 0) {
        const message = `all ${ids.space - 1} request ids of the connection are in flight (framed.request_id is too narrow for this load)`;
        queueMicrotask(() => target.onFailure('SERVER_ERROR', message, true));
        return;
      }
      this.#byId.add(new Tagged(id, target, ids.original(bytes), this.#queued));
      out = ids.tag(bytes, id);
    } else {
      this.#inflight.push(target);
    }
    this.#queued++;
    // A request now waits behind the reply whose reads were held: it is not kept waiting for a slow reader.
    if (this.#readsHeld) this.releaseReads();
    this.sendRaw(out);
  }

  /** The next id not in flight on this connection (1 … space-1, round robin), or -1 when all are. */
  #freeId(ids: RequestIds): number {
    if (this.#byId.size + this.#expired.size >= ids.space - 1) return -1;
    let id = this.#lastId;
    do {
      id = id + 1 >= ids.space ? 1 : id + 1;
    } while (this.#byId.get(id) !== undefined || this.#expired.has(id));
    this.#lastId = id;
    return id;
  }

  /**
   * Sends the codec's no-op request unless a heartbeat is already out; the owner hears of the
   * reply through onHeartbeat, with this heartbeat's own send time.
   */
  beat(now: number): void {
    const request = this.#codec.heartbeatRequest;
    if (this.#heartbeat.kind === 'awaiting' || request === null) return;
    this.#heartbeat = { kind: 'awaiting', sentAt: now, misses: 0 };
    this.send(request, {
      onResponse: (bytes) => {
        this.#heartbeatsAnswered++;
        // At most one heartbeat is out, so this reply is the one awaited.
        this.#heartbeat = { kind: 'idle', dueAt: Infinity };
        const reply: HeartbeatReply = judgeHeartbeat(this.#codec, bytes);
        this.#owner.onHeartbeat(this, reply, now);
      },
      onFailure: () => {},
    });
  }

  /** Queues bytes to write this turn without a target: relay mode, and send()'s write half. */
  sendRaw(bytes: Buffer): void {
    // Before start() nothing could be written in order (setup must go first): a bug, made loud.
    if (this.#socket === null) throw new Error('Connection.sendRaw before start()');
    this.#out.push(bytes);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      flushAtEndOfTurn(this.#flush);
    }
  }

  /**
   * From now on every response goes to `sink` unmatched (SUBSCRIBE, MONITOR: the server pushes
   * frames no request asked for). Only on an exclusive connection with nothing in flight.
   */
  startRelay(sink: (bytes: Buffer) => void): void {
    this.#relay = sink;
  }

  /** Where push frames go while a session holds this connection exclusively (null: nobody). */
  setPushSink(sink: ((bytes: Buffer) => void) | null): void {
    this.#pushSink = sink;
  }

  get relaying(): boolean {
    return this.#relay !== null;
  }

  /** Destroys the connection: every in-flight target fails, the owner hears once. Idempotent. */
  destroy(reason: CloseReason, message: string): void {
    const state = this.#state;
    if (state.kind === 'closed') return;
    const wasReady = state.kind === 'ready';
    this.#state = { kind: 'closed', reason, message };
    if (this.#connectTimer !== null) this.#clock.clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#socket?.destroy();
    this.#out = [];
    this.#relay = null;
    this.#pushSink = null;
    const stream = this.#stream;
    this.#stream = null;
    stream?.onClose();
    this.#part = { kind: 'none' };
    const failure: FailureReason = 'SERVER_ERROR';
    const detail = `connection to server lost (${reason}: ${message})`;
    // In order, only the head can have had response bytes read; everything behind it is untouched.
    // Matched by id, a response half read may be anyone's.
    const torn = this.#decoder.midFrame;
    const anyTorn = torn && this.#ids !== null;
    const tagged = this.#byId.snapshot();
    this.#byId.clear();
    this.#expired.clear();
    let first = true;
    const fail = (target: ResponseTarget): void => {
      // The head of a timed-out connection is the request that got stuck: never run it twice.
      const retryable = !anyTorn && !(first && (torn || reason === 'request_timeout'));
      target.onFailure(first && reason === 'request_timeout' ? 'REQUEST_TIMEOUT' : failure, detail, retryable);
      first = false;
    };
    for (const entry of tagged) fail(entry.target);
    for (let target = this.#inflight.shift(); target !== undefined; target = this.#inflight.shift()) fail(target);
    this.#owner.onClose(this, reason, message, wasReady);
  }

  onResponse(bytes: Buffer): void {
    // The server's own request (a heartbeat it sends its clients): answered, never matched.
    const answer = this.#codec.answerServer?.(bytes) ?? null;
    if (answer !== null) {
      this.sendRaw(answer);
      this.#owner.onUnasked?.(this, 'answered');
      return;
    }
    this.#lastReplyAt = this.#lastReadAt;
    this.#responses++;
    // Relaying, frames answer what is still in flight first (an identify sent before SUBSCRIBE).
    if (this.#relay !== null && this.inflight === 0) {
      this.#relay(bytes);
      return;
    }
    if (this.#codec.isPush(bytes)) {
      // Answers no request: on a pinned RESP3 connection (CLIENT TRACKING) it is the session's;
      // on a shared one it cannot be anyone's, and the FIFO must not swallow it.
      if (this.#pushSink !== null) this.#pushSink(bytes);
      else this.destroy('unexpected_response', 'a push frame arrived on a connection no session owns');
      return;
    }
    const ids = this.#ids;
    if (ids !== null) {
      this.#onTaggedResponse(ids, bytes);
      return;
    }
    const target = this.#inflight.shift();
    if (target === undefined) {
      this.#unasked('a response arrived with no request waiting for it');
      return;
    }
    this.#answered++;
    try {
      target.onResponse(bytes);
    } catch (err) {
      // Not a protocol error of the server's: the frame was whole and went to its target.
      this.#owner.onInternalError(this, err);
    }
  }

  /** A response matched by its id: the client's id goes back in, and it goes to its own target, in any order. */
  #onTaggedResponse(ids: RequestIds, bytes: Buffer): void {
    const id = ids.idOf(bytes);
    const tagged = id < 0 ? undefined : this.#byId.get(id);
    if (tagged === undefined && this.#expired.delete(id)) {
      // The late reply to a request failed for request_timeout: its client was told already.
      this.#responses--;
      this.#owner.onUnasked?.(this, 'dropped');
      return;
    }
    if (tagged === undefined) {
      this.#unasked(`a response arrived with request id ${id < 0 ? '(not one poolside gives)' : id}, which no request in flight has`);
      return;
    }
    this.#byId.remove(id);
    ids.restore(bytes, tagged.original);
    // The oldest request still unanswered (the request deadline runs from its write): the roster's first.
    this.#answered = this.#byId.first()?.seq ?? this.#queued;
    try {
      tagged.target.onResponse(bytes);
    } catch (err) {
      this.#owner.onInternalError(this, err);
    }
  }

  /** A response to nothing waiting: dropped and counted, or the connection closed, as the codec says. */
  #unasked(message: string): void {
    if (this.#codec.unasked === 'drop') {
      // Not a response anyone used: it keeps the connection no less idle.
      this.#responses--;
      this.#owner.onUnasked?.(this, 'dropped');
      return;
    }
    this.destroy('unexpected_response', message);
  }

  /**
   * Stops reading from the server until releaseReads: the client a large reply is streaming to has
   * fallen behind (see ClientOutput). Only while that reply is all that is in flight: a request
   * waiting behind it is refused the wait (send releases at once), so the slow reader's reply comes
   * into poolside's memory under the output limits instead, as any reply does. The request
   * deadline does not run meanwhile: poolside, not the server, is the one waiting.
   */
  holdReads(): void {
    if (this.#readsHeld || this.#state.kind === 'closed' || this.#socket === null || this.inflight > 1) return;
    this.#readsHeld = true;
    this.#socket.pause();
  }

  releaseReads(): void {
    if (!this.#readsHeld) return;
    this.#readsHeld = false;
    // The deadline starts again from now: the server was not asked to wait for poolside's time.
    this.#lastReadAt = this.#clock.now();
    this.#lastReplyAt = this.#lastReadAt;
    if (this.#state.kind !== 'closed') this.#socket?.resume();
  }

  onResponsePart(bytes: Buffer, end: boolean): void {
    this.#lastReplyAt = this.#lastReadAt;
    let part = this.#part;
    if (part.kind === 'none') {
      // Matched by id, the head is not necessarily whose response this is: gathered whole.
      const target = this.#ids !== null || (this.#relay !== null && this.#inflight.length === 0) ? undefined : this.#inflight.peek();
      part = target?.onResponsePart !== undefined ? { kind: 'streaming', target } : { kind: 'gathering', pieces: [], bytes: 0 };
      this.#part = part;
    }
    if (part.kind === 'gathering') {
      part.pieces.push(bytes);
      part.bytes += bytes.length;
      if (!end) return;
      this.#part = { kind: 'none' };
      this.onResponse(Buffer.concat(part.pieces, part.bytes));
      return;
    }
    const target = part.target;
    if (end) {
      this.#part = { kind: 'none' };
      this.#responses++;
      this.#inflight.shift();
      this.#answered++;
    }
    try {
      (target.onResponsePart as (bytes: Buffer, end: boolean) => void).call(target, bytes, end);
    } catch (err) {
      this.#owner.onInternalError(this, err);
    }
  }

  #onConnect(settings: ConnectionSettings): void {
    if (this.#state.kind !== 'connecting') return;
    if (settings.raw) {
      // No setup of its own: the owner proves it with its probe, if it has one.
      this.#becomeReady();
      return;
    }
    // The heartbeat last: a connection is ready only once the server has answered, so a server
    // that accepts TCP but is frozen (SIGSTOP, a full backlog) fails the connect timeout instead.
    // A protocol with no heartbeat is ready once connected; the kernel's keepalive watches it.
    const init = this.#codec.initRequests(settings.username, settings.password, settings.db);
    const probe = this.#codec.heartbeatRequest;
    if (probe === null) this.#socket?.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    const identify = settings.identify ? this.#codec.identifyRequest : null;
    const pending = init.length + (probe === null ? 0 : 1) + (identify === null ? 0 : 1);
    this.#state = { kind: 'initializing', pending };
    if (pending === 0) {
      this.#becomeReady();
      return;
    }
    if (identify !== null) {
      // A server that will not tell (ACL) only loses the commands that need it, not the connection.
      this.send(identify, {
        onResponse: (bytes) => {
          this.#serverId = this.#codec.parseIdentity(bytes);
          const state = this.#state;
          if (state.kind === 'initializing' && --state.pending === 0) this.#becomeReady();
        },
        onFailure: () => {},
      });
    }
    const step: ResponseTarget = {
      onResponse: (bytes) => {
        if (this.#codec.isErrorResponse(bytes)) {
          // A busy server (a long script, loading its dataset) is alive: not a failure of the server.
          const reason: CloseReason = this.#codec.isBusyResponse(bytes) ? 'server_busy' : 'init_failed';
          this.destroy(reason, bytes.toString('latin1').trim().slice(1, 200));
          return;
        }
        const state = this.#state;
        if (state.kind === 'initializing' && --state.pending === 0) this.#becomeReady();
      },
      onFailure: () => {},
    };
    for (const request of init) this.send(request, step);
    if (probe === null) return;
    this.send(probe, {
      onResponse: (bytes) => {
        const verdict = judgeHeartbeat(this.#codec, bytes);
        if (verdict !== 'ok') {
          // A busy server (a long script, loading its dataset) is alive: not a failure of the server.
          const reason: CloseReason = verdict === 'busy' ? 'server_busy' : 'init_failed';
          const configured = this.#codec.heartbeatReply !== undefined;
          const what = configured ? `setup heartbeat answered with bytes heartbeat.expect does not match: ${bytes.toString('hex', 0, 64)}` : bytes.toString('latin1').trim().slice(1, 200);
          this.destroy(reason, what);
          return;
        }
        const state = this.#state;
        if (state.kind === 'initializing' && --state.pending === 0) this.#becomeReady();
      },
      onFailure: () => {},
    });
  }

  /** ResponseSink: what the request whose response comes next expects (its target's `expects`). */
  headExpectation(): unknown {
    return this.#inflight.peek()?.expects;
  }

  /** The server's id for this connection (Redis CLIENT ID), when settings.identify asked and the server told. */
  get serverId(): number | null {
    return this.#serverId;
  }


  #becomeReady(): void {
    if (this.#connectTimer !== null) this.#clock.clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#state = { kind: 'ready' };
    this.#owner.onReady(this);
  }

  #onData(chunk: Buffer): void {
    // Requests read earlier in this turn go out before this read's replies are written to their clients.
    sendQueuedWrites();
    this.#reads++;
    this.#lastReadAt = this.#clock.now();
    if (this.#settings.raw) {
      if (this.#stream !== null) this.#stream.onData(chunk);
      else this.destroy('unexpected_response', 'bytes arrived on an idle raw connection');
      return;
    }
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      this.destroy('protocol_error', (err as Error).message);
    }
  }

  #flushNow(): void {
    this.#flushScheduled = false;
    const out = this.#out;
    if (out.length === 0 || this.#state.kind === 'closed') return;
    this.#out = this.#spareOut ?? [];
    this.#spareOut = null;
    if (this.#queued !== this.#flushedQueued) {
      this.#flushedQueued = this.#queued;
      // Forget the batches already answered first: without a request deadline nobody else asks,
      // and the ring would grow for the connection's whole life.
      this.#writes.writtenAt(this.#answered);
      this.#writes.record(this.#queued, this.#clock.now());
    }
    if (this.#socket !== null) writeBatch(this.#socket, out);
    out.length = 0;
    this.#spareOut = out;
  }
}
