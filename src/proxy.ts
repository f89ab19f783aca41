/**
 * The composition root: builds pools, listeners and sessions from a Config, and owns their
 * lifetime: start, live reload (reload()) and shutdown (drain()). Nothing else creates long-lived
 * objects, so a test can run several proxies in one process.
 *
 * Reload is parse → validate → diff → swap. A pool whose settings are unchanged is kept as it is
 * (clients, backend connections, counters). A changed pool is built anew beside the old one and
 * takes every new client; the old one retires: its clients are closed between requests (never
 * with a request in flight) and its connections close once it has none; at shutdown.timeout
 * after the reload its blocked and subscribed clients are cut, and the others are answered
 * DRAINING for their next request and closed after it. A removed pool retires the same way. Listeners whose address
 * is unchanged keep their socket (a unix socket whose mode or owner changed is fixed in place).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { Registry } from 'prom-client';
import { AdminServer } from './admin.js';
import { CLIENT_LIST_MAX } from './admin.js';
import type { ReloadOutcome } from './admin.js';
import { ClientSession } from './session/client-session.js';
import { RelaySession } from './session/relay-session.js';
import type { SessionKind } from './codec/registry.js';
import { codecFor } from './codec/registry.js';
import { ConfigError, formatProblem, parseConfig } from './config/load.js';
import type { Config, ListenAddress, PoolConfig, TcpAddress } from './config/schema.js';
import { applySocketPermissions, formatAddress, listen } from './listener.js';
import { packageVersion, registerMetrics } from './metrics.js';
import type { ConfigStatus } from './metrics.js';
import { Pool } from './pool/pool.js';
import { Roster } from './util/roster.js';
import { sendQueuedWrites } from './util/turn-writes.js';
import type { ClientInfo, PoolClient, PoolStats } from './pool/pool.js';
import type { Clock, Timer } from './util/clock.js';
import { systemClock } from './util/clock.js';
import type { Logger } from './util/log.js';
import { silentLogger } from './util/log.js';
import { LogThrottle } from './util/log-throttle.js';

/** How often a drain or a retiring pool looks for clients that became idle. */
const DRAIN_CHECK_MS = 25;

export interface ProxyOptions {
  clock?: Clock;
  log?: Logger;
  /**
   * Where the admin endpoint's metrics are declared (config.admin set); a new Registry by
   * default, never prom-client's global one.
   */
  registry?: Registry;
  /** For poolside_build_info and /stats; package.json's version by default. */
  version?: string;
  /**
   * Clients across all listeners, past which poolside refuses more (TOO_MANY_CLIENTS) so the
   * descriptors that are left serve the pools and the admin endpoint: fdBudget's capacity.
   * Unlimited by default (tests); main.ts sets it from RLIMIT_NOFILE.
   */
  maxClients?: number;
  /** Where a reload reads password_env from (tests); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** One client in /stats?clients=1: its ClientInfo, its pool, and when it connected and last sent something (unix seconds). */
export type ListedClient = ClientInfo & { pool: string; connectTime: number; lastTime: number };

export interface BoundListener {
  pool: string;
  /** As configured. */
  address: ListenAddress;
  /** As bound: the real port when the configured one was 0. */
  bound: ListenAddress;
  server: net.Server;
}

/** A listener and the pool it feeds now (a reload may point it at the pool's replacement). */
interface ListenerRecord {
  pool: Pool;
  address: ListenAddress;
  bound: ListenAddress;
  /** formatAddress(bound), made once: every client accepted on it carries it (CLIENT LIST, /stats). */
  label: string;
  server: net.Server;
}

/** A connected client as the proxy keeps it: either kind of session. */
type Session = PoolClient & { close(): void; start(): void };

interface SessionOptions {
  id: number;
  pool: Pool;
  log: Logger;
  listener: string;
  onClose(session: Session, pool: Pool): void;
}

/** Which session serves a client, by how the pool's codec says its clients are served. */
const SESSIONS: Record<SessionKind, (socket: net.Socket, options: SessionOptions) => Session> = {
  requests: (socket, options) => new ClientSession(socket, options),
  relay: (socket, options) => new RelaySession(socket, options),
};

/** What drain() did: clients closed at the deadline while they still held something. */
export interface DrainResult {
  cutOff: number;
}


export class Proxy {
  #config: Config;
  #pools = new Map<string, Pool>();
  #listeners: ListenerRecord[] = [];
  readonly #sessions = new Roster<Session>();
  /** Pools replaced or removed by a reload, until their last client leaves (or their deadline). */
  readonly #retiring = new Map<Pool, { deadline: Timer; check: Timer }>();
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #options: ProxyOptions;
  readonly #maxClients: number;
  readonly #acceptErrors = new LogThrottle();
  readonly #status: ConfigStatus;
  #admin: AdminServer | null = null;
  /** From SIGTERM (drain()) or close(): /readyz answers 503. */
  #closing: Promise<DrainResult> | null = null;
  /** Reloads run one at a time, in order. */
  #reloading: Promise<unknown> = Promise.resolve();
  /** CLIENT ID of the next client: unique across every pool of this process. */
  #nextClientId = 1;

  private constructor(config: Config, options: ProxyOptions) {
    this.#config = config;
    this.#options = options;
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#maxClients = options.maxClients ?? Infinity;
    this.#status = { reloads: { success: 0, failure: 0 }, lastSuccessful: true, lastSuccessAt: Date.now() / 1000, hash: hashFile(config.file) };
  }

  /** Builds and starts everything; rejects (with everything closed again) if any listener fails. */
  static async start(config: Config, options: ProxyOptions = {}): Promise<Proxy> {
    const proxy = new Proxy(config, options);
    try {
      await proxy.#start();
    } catch (err) {
      await proxy.close();
      throw err;
    }
    return proxy;
  }

  get config(): Config {
    return this.#config;
  }

  get pools(): ReadonlyMap<string, Pool> {
    return this.#pools;
  }

  get listeners(): readonly BoundListener[] {
    return this.#listeners.map((l) => ({ pool: l.pool.config.name, address: l.address, bound: l.bound, server: l.server }));
  }

  /** The bound TCP port or unix path of a pool's n-th listener (tests bind port 0). */
  address(pool: string, n = 0): ListenAddress {
    const found = this.#listeners.filter((l) => l.pool.config.name === pool)[n];
    if (found === undefined) throw new Error(`pool ${pool} has no listener ${n}`);
    return found.bound;
  }

  /** The admin endpoint's bound address (tests bind port 0); throws when config.admin is null. */
  adminAddress(): TcpAddress {
    if (this.#admin === null) throw new Error('the admin endpoint is off (admin: false)');
    return this.#admin.address;
  }

  /** True from the moment drain() or close() begins: /readyz answers 503. */
  get draining(): boolean {
    return this.#closing !== null;
  }

  stats(): PoolStats[] {
    return [...this.#pools.values()].map((pool) => pool.stats());
  }

  get clients(): number {
    return this.#sessions.size;
  }

  /** Connected clients for /stats?clients=1, at most `max`, retiring pools' included. */
  clientList(max = CLIENT_LIST_MAX): { total: number; truncated: boolean; clients: ListedClient[] } {
    const now = this.#clock.now();
    // Wall-clock times as Swoole's getClientInfo gives them (unix seconds), from the ages.
    const wallNow = Date.now();
    const clients: ListedClient[] = [];
    for (const pool of [...this.#pools.values(), ...this.#retiring.keys()]) {
      for (const client of pool.connectedClients()) {
        if (clients.length >= max) return { total: this.#sessions.size, truncated: true, clients };
        const info = client.info(now);
        clients.push({ pool: pool.config.name, ...info, connectTime: Math.floor((wallNow - info.ageMs) / 1000), lastTime: Math.floor((wallNow - info.idleMs) / 1000) });
      }
    }
    return { total: this.#sessions.size, truncated: false, clients };
  }

  /**
   * Shutdown as SIGTERM asks for it (docs/configuration.md, "Shutdown"): /readyz turns 503 now;
   * listeners keep accepting for `delayMs`; then they close (unix socket files are removed), idle
   * clients are closed, busy ones once they have their replies, and new requests are answered
   * DRAINING; clients still connected at `timeoutMs` (from now) are cut between replies.
   * Idempotent.
   */
  drain(shutdown: Config['shutdown'] = this.#config.shutdown): Promise<DrainResult> {
    this.#closing ??= this.#drain(shutdown.delayMs, shutdown.timeoutMs);
    return this.#closing;
  }

  /** Closes everything now: drain() with no delay and no time for clients. Idempotent. */
  async close(): Promise<void> {
    await this.drain({ delayMs: 0, timeoutMs: 0 });
  }

  // ── reload ────────────────────────────────────────────────────────────────────────────────

  /**
   * Re-reads the config file (and its password files) and applies it; a config with problems is
   * rejected whole, the running one kept. Logged either way. Reloads run one at a time.
   */
  reloadFromFile(): Promise<ReloadOutcome> {
    const next = this.#reloading.then(() => this.#reloadFromFile());
    this.#reloading = next.catch(() => {});
    return next;
  }

  async #reloadFromFile(): Promise<ReloadOutcome> {
    const file = this.#config.file;
    if (this.#closing !== null) return { ok: false, status: 409, problems: ['poolside is shutting down'] };
    let text: string;
    let config: Config;
    try {
      text = fs.readFileSync(file, 'utf8');
      config = parseConfig(text, file, this.#options.env ?? process.env);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems.map(formatProblem) : [`cannot read config ${file}: ${(err as Error).message}`];
      return this.#rejected(problems);
    }
    try {
      const changes = await this.reload(config);
      this.#status.hash = sha256(text);
      return { ok: true, status: 200, hash: this.#status.hash, changes };
    } catch (err) {
      // Shutdown began while it bound its listeners: not a bad file.
      if (this.#closing !== null) return { ok: false, status: 409, problems: ['poolside is shutting down'] };
      return this.#rejected([(err as Error).message]);
    }
  }

  #rejected(problems: string[]): ReloadOutcome {
    this.#status.reloads.failure++;
    this.#status.lastSuccessful = false;
    this.#log.error('config reload rejected; the running config is kept', { reason: 'reload_failed', config: this.#config.file, problems: problems.length });
    for (const problem of problems) this.#log.error(`config reload: ${problem}`, { reason: 'reload_failed' });
    return { ok: false, status: 400, problems };
  }

  /**
   * Applies a validated config: diff, then swap. Throws (with nothing changed) when a new
   * listener cannot be bound, or when shutdown began (before or during the binds). Returns what changed, for the log and POST /reload.
   */
  async reload(config: Config): Promise<string[]> {
    const changes: string[] = [];
    const old = this.#config;
    if (!isDeepStrictEqual(old.admin, config.admin)) changes.push('admin: changes need a restart; kept as it was');
    if (old.log.level !== config.log.level) changes.push('log.level: changes need a restart; kept as it was');
    // 1. New and changed pools, built beside the running ones (nothing takes clients yet).
    const next = new Map<string, Pool>();
    const started: Pool[] = [];
    for (const poolConfig of config.pools) {
      const current = this.#pools.get(poolConfig.name);
      if (current !== undefined && samePool(current.config, poolConfig)) {
        next.set(poolConfig.name, current);
        continue;
      }
      const pool = new Pool(poolConfig, codecFor(poolConfig.protocol), this.#clock, this.#log, current?.counters);
      pool.start();
      started.push(pool);
      next.set(poolConfig.name, pool);
      changes.push(current === undefined ? `pool ${poolConfig.name}: added` : `pool ${poolConfig.name}: changed; new connections, its clients move as they finish`);
    }
    // 2. Listeners: kept ones keep their socket; new ones are bound before anything is swapped.
    const kept: { record: ListenerRecord; want: { pool: Pool; address: ListenAddress } }[] = [];
    const added: ListenerRecord[] = [];
    const wanted: { pool: Pool; address: ListenAddress }[] = config.pools.flatMap((p) => p.listen.map((address) => ({ pool: next.get(p.name) as Pool, address })));
    const unclaimed = new Set(this.#listeners);
    const toBind: { pool: Pool; address: ListenAddress }[] = [];
    for (const want of wanted) {
      // The same pool's first; an ephemeral port (0) is only ever the same listener within a pool.
      const name = want.pool.config.name;
      const candidates = [...unclaimed].filter((l) => sameSocket(l.address, want.address));
      const match =
        candidates.find((l) => l.pool.config.name === name) ??
        candidates.find((l) => !(l.address.kind === 'tcp' && l.address.port === 0));
      if (match === undefined) {
        toBind.push(want);
        continue;
      }
      unclaimed.delete(match);
      kept.push({ record: match, want });
    }
    try {
      if (this.#closing !== null) throw new Error('poolside is shutting down');
      for (const want of toBind) added.push(await this.#bind(want.pool, want.address));
      // A drain that began while the binds were awaited closed what it saw; swapping in these now
      // would leave a listener and pools nobody closes.
      if (this.#closing !== null) throw new Error('poolside is shutting down');
    } catch (err) {
      for (const record of added) this.#closeListener(record);
      await Promise.all(started.map((pool) => pool.close()));
      throw err;
    }
    // 3. Swap, all at once. Nothing here may throw: the reload is committed from this point.
    for (const { record, want } of kept) {
      // A kept unix socket whose mode or owner changed is fixed in place: only now, so that a
      // reload rejected above leaves it as it was.
      if (record.address.kind === 'unix' && want.address.kind === 'unix' && !isDeepStrictEqual(record.address, want.address)) {
        try {
          applySocketPermissions(want.address);
        } catch (err) {
          this.#log.warn('cannot change the unix socket permissions', { address: formatAddress(want.address), error: (err as Error).message });
        }
      }
      record.pool = want.pool;
      record.address = want.address;
    }
    for (const record of unclaimed) {
      this.#closeListener(record);
      changes.push(`listener ${formatAddress(record.bound)}: removed`);
    }
    for (const record of added) changes.push(`listener ${formatAddress(record.bound)}: added (pool ${record.pool.config.name})`);
    const previous = this.#pools;
    this.#pools = next;
    this.#listeners = [...kept.map((k) => k.record), ...added];
    this.#config = { ...config, admin: old.admin, log: old.log };
    for (const [name, pool] of previous) {
      if (next.get(name) === pool) continue;
      if (!next.has(name)) changes.push(`pool ${name}: removed; its clients are closed as they finish`);
      this.#retire(pool);
    }
    this.#status.reloads.success++;
    this.#status.lastSuccessful = true;
    this.#status.lastSuccessAt = Date.now() / 1000;
    this.#log.info('config reloaded', { config: config.file, changes: changes.length === 0 ? 'none' : changes.join('; ') });
    return changes;
  }

  /** A replaced or removed pool: clients leave between requests; closed when the last one has gone. */
  #retire(pool: Pool): void {
    const timeoutMs = this.#config.shutdown.timeoutMs;
    const deadline = this.#clock.setTimeout(() => {
      // Blocked and subscribed clients are cut; the others leave between requests (never with one in flight).
      let cut = 0;
      for (const client of pool.connectedClients()) if (client.retireDeadline()) cut++;
      pool.counters.clientsReloadClosed += cut;
      if (cut > 0) this.#log.warn('reload: blocked or subscribed clients of a replaced pool cut at shutdown.timeout', { reason: 'reload', pool: pool.config.name, clients: cut, timeout_ms: timeoutMs });
    }, timeoutMs);
    const check = this.#clock.setInterval(() => {
      for (const client of pool.connectedClients()) client.retire();
    }, DRAIN_CHECK_MS);
    this.#retiring.set(pool, { deadline, check });
    for (const client of pool.connectedClients()) client.retire();
    this.#afterClientLeft(pool);
  }

  /** Every session's onClose: one function for all of them, not a closure per client. */
  readonly #onSessionClosed = (session: Session, pool: Pool): void => {
    pool.removeClient(session);
    this.#sessions.remove(session.id);
    this.#afterClientLeft(pool);
  };

  #afterClientLeft(pool: Pool): void {
    const retiring = this.#retiring.get(pool);
    if (retiring === undefined || pool.clients > 0) return;
    this.#clock.clearTimeout(retiring.deadline);
    this.#clock.clearInterval(retiring.check);
    this.#retiring.delete(pool);
    void pool.close();
  }

  // ── start and accept ──────────────────────────────────────────────────────────────────────

  async #start(): Promise<void> {
    for (const config of this.#config.pools) {
      const pool = new Pool(config, codecFor(config.protocol), this.#clock, this.#log);
      this.#pools.set(config.name, pool);
      pool.start();
    }
    for (const config of this.#config.pools) {
      const pool = this.#pools.get(config.name) as Pool;
      for (const address of config.listen) this.#listeners.push(await this.#bind(pool, address));
    }
    if (this.#config.admin !== null) await this.#startAdmin(this.#config.admin.listen);
  }

  async #bind(pool: Pool, address: ListenAddress): Promise<ListenerRecord> {
    // The record is looked up at accept time: a reload may point the listener at another pool.
    const holder: { record: ListenerRecord | null } = { record: null };
    const server = await listen(address, (socket) => {
      if (holder.record !== null) this.#accept(holder.record, socket);
      else socket.destroy();
    });
    // accept() failing (EMFILE, ENFILE): logged, at most once a second, never a crash.
    server.on('error', (err: NodeJS.ErrnoException) => this.#onAcceptError(holder.record?.pool.config.name ?? pool.config.name, err));
    const bound = boundAddress(address, server);
    const record: ListenerRecord = { pool, address, bound, label: formatAddress(bound), server };
    holder.record = record;
    this.#log.info('listening', { pool: pool.config.name, address: formatAddress(record.bound) });
    return record;
  }

  async #startAdmin(address: TcpAddress): Promise<void> {
    const registry = this.#options.registry ?? new Registry();
    const version = this.#options.version ?? packageVersion();
    const pools = (): Iterable<Pool> => this.#pools.values();
    registerMetrics({ registry, pools, version, config: () => this.#status });
    this.#admin = await AdminServer.start({
      listen: address,
      registry,
      pools,
      draining: () => this.draining,
      clients: (max) => this.clientList(max),
      reload: () => this.reloadFromFile(),
      clock: this.#clock,
      log: this.#log,
      version,
    });
    this.#log.info('admin endpoint listening', { address: formatAddress(this.#admin.address) });
  }

  #accept(listener: ListenerRecord, socket: net.Socket): void {
    // Setting up a client costs tens of µs: requests read earlier in this turn go out first.
    sendQueuedWrites();
    const pool = listener.pool;
    if (pool.clients >= pool.config.clients.max) {
      pool.counters.clientsRejected++;
      pool.fail('TOO_MANY_CLIENTS', `client refused: clients.max (${pool.config.clients.max}) reached`);
      refuse(socket, pool.codec.errorReply('TOO_MANY_CLIENTS', `pool ${pool.config.name} has ${pool.config.clients.max} clients`));
      return;
    }
    if (this.#sessions.size >= this.#maxClients) {
      pool.counters.clientsRejected++;
      pool.fail('TOO_MANY_CLIENTS', `client refused: ${this.#maxClients} clients, all the open-file limit leaves room for`);
      refuse(socket, pool.codec.errorReply('TOO_MANY_CLIENTS', `poolside has ${this.#maxClients} clients, all its open-file limit allows`));
      return;
    }
    pool.counters.clientsAccepted++;
    const session = SESSIONS[pool.codec.sessionKind](socket, {
      id: this.#nextClientId++,
      pool,
      log: this.#log,
      listener: listener.label,
      onClose: this.#onSessionClosed,
    });
    pool.addClient(session);
    this.#sessions.add(session);
    session.start();
  }

  /** Stops accepting on a listener; a unix socket's file is removed. Clients already accepted stay. Never throws. */
  #closeListener(l: ListenerRecord): void {
    l.server.close();
    if (l.address.kind !== 'unix') return;
    try {
      fs.rmSync(l.address.path, { force: true });
    } catch (err) {
      this.#log.warn('cannot remove the unix socket file', { address: formatAddress(l.address), error: (err as Error).message });
    }
  }

  #onAcceptError(pool: string, err: NodeJS.ErrnoException): void {
    const unlogged = this.#acceptErrors.take(this.#clock.now());
    if (unlogged >= 0) this.#log.warn('cannot accept a client', { pool, reason: 'accept_failed', error: err.code ?? err.message, unlogged_since_last: unlogged });
  }

  // ── shutdown ──────────────────────────────────────────────────────────────────────────────

  async #drain(delayMs: number, timeoutMs: number): Promise<DrainResult> {
    const clock = this.#clock;
    const deadline = clock.now() + timeoutMs;
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => clock.setTimeout(() => resolve(), ms));
    if (delayMs > 0) {
      this.#log.info('shutting down: still accepting clients for shutdown.delay', { delay_ms: delayMs, timeout_ms: timeoutMs });
      await sleep(delayMs);
    }
    // Stop accepting. Unix socket files go at once: a client connecting now is refused, not left waiting.
    for (const l of this.#listeners) this.#closeListener(l);
    const retiring = [...this.#retiring.keys()];
    for (const { deadline: timer, check } of this.#retiring.values()) {
      clock.clearTimeout(timer);
      clock.clearInterval(check);
    }
    this.#retiring.clear();
    const pools = [...this.#pools.values(), ...retiring];
    for (const session of this.#sessions.snapshot()) session.drain();
    if (this.#sessions.size > 0) {
      this.#log.info('shutting down: stopped accepting; waiting for clients to finish', { clients: this.#sessions.size, timeout_ms: Math.max(0, Math.round(deadline - clock.now())) });
    }
    while (this.#sessions.size > 0 && clock.now() < deadline) {
      await sleep(Math.min(DRAIN_CHECK_MS, Math.max(1, deadline - clock.now())));
      // Clients that finished their requests since, and went quiet, are closed now.
      for (const session of this.#sessions.snapshot()) session.drain();
    }
    let cutOff = 0;
    const held: Record<string, number> = {};
    if (this.#sessions.size > 0) {
      const now = clock.now();
      for (const pool of pools) {
        for (const client of pool.connectedClients()) {
          const holds = client.info(now).holds ?? 'nothing';
          if (!client.cut()) continue;
          cutOff++;
          held[holds] = (held[holds] ?? 0) + 1;
          pool.counters.clientsShutdownClosed++;
        }
      }
      // They were ended between replies; give the last bytes a moment to leave, then drop what is left.
      const flushBy = clock.now() + 500;
      while (this.#sessions.size > 0 && clock.now() < flushBy) await sleep(10);
      for (const session of this.#sessions.snapshot()) session.close();
    }
    if (cutOff > 0) this.#log.warn('shutdown: clients cut off at shutdown.timeout', { reason: 'shutdown', clients: cutOff, ...held });
    await Promise.all(pools.map((pool) => pool.close()));
    // Last: /readyz answers 503 and /metrics answers through the whole drain.
    await this.#admin?.close();
    return { cutOff };
  }
}


/**
 * Whether a reload may keep a pool as it runs. Everything in its config counts except where it
 * listens (listeners are diffed on their own); password files were re-read into it, so a new
 * password is a change.
 */
function samePool(a: PoolConfig, b: PoolConfig): boolean {
  return isDeepStrictEqual({ ...a, listen: [] }, { ...b, listen: [] });
}

/** The same socket: a listener kept across a reload (a unix socket's mode and owner may change in place). */
function sameSocket(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  return a.host === b.host && a.port === b.port;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The hash of the file as loaded at start ('' where it cannot be read: a config built in a test). */
function hashFile(file: string): string {
  try {
    return sha256(fs.readFileSync(file, 'utf8'));
  } catch {
    return '';
  }
}

/**
 * Answers a refused client and closes it as soon as the answer is written: a FIN alone would
 * leave its descriptor open until the client closes too, and refusals happen when descriptors
 * are short.
 */
/** `reply`: the protocol's error, or null when it has none (framed RPC): the client is just closed. */
function refuse(socket: net.Socket, reply: Buffer | null): void {
  socket.on('error', () => {});
  if (reply === null) socket.end();
  else socket.end(reply);
  socket.destroySoon();
}

function boundAddress(address: ListenAddress, server: net.Server): ListenAddress {
  if (address.kind === 'unix') return address;
  const info = server.address();
  if (info === null || typeof info === 'string') return address;
  return { kind: 'tcp', host: address.host, port: info.port };
}
