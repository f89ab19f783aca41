/**
 * The composition root: builds pools, listeners and sessions from a Config, and owns their
 * lifetime. Nothing else creates long-lived objects, so a test can run several proxies in one
 * process.
 */
import fs from 'node:fs';
import type net from 'node:net';
import { Registry } from 'prom-client';
import { AdminServer } from './admin.js';
import { ClientSession } from './session/client-session.js';
import { codecFor } from './codec/registry.js';
import type { Config, ListenAddress, TcpAddress } from './config/schema.js';
import { formatAddress, listen } from './listener.js';
import { packageVersion, registerMetrics } from './metrics.js';
import { Pool } from './pool/pool.js';
import type { PoolStats } from './pool/pool.js';
import type { Clock } from './util/clock.js';
import { systemClock } from './util/clock.js';
import type { Logger } from './util/log.js';
import { silentLogger } from './util/log.js';
import { LogThrottle } from './util/log-throttle.js';

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
}

export interface BoundListener {
  pool: string;
  /** As configured. */
  address: ListenAddress;
  /** As bound: the real port when the configured one was 0. */
  bound: ListenAddress;
  server: net.Server;
}

export class Proxy {
  readonly config: Config;
  readonly pools = new Map<string, Pool>();
  readonly listeners: BoundListener[] = [];
  readonly #sessions = new Set<ClientSession>();
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #options: ProxyOptions;
  readonly #maxClients: number;
  readonly #acceptErrors = new LogThrottle();
  #admin: AdminServer | null = null;
  #closing: Promise<void> | null = null;
  /** CLIENT ID of the next client: unique across every pool of this process. */
  #nextClientId = 1;

  private constructor(config: Config, options: ProxyOptions) {
    this.config = config;
    this.#options = options;
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#maxClients = options.maxClients ?? Infinity;
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

  /** The bound TCP port or unix path of a pool's n-th listener (tests bind port 0). */
  address(pool: string, n = 0): ListenAddress {
    const found = this.listeners.filter((l) => l.pool === pool)[n];
    if (found === undefined) throw new Error(`pool ${pool} has no listener ${n}`);
    return found.bound;
  }

  /** The admin endpoint's bound address (tests bind port 0); throws when config.admin is null. */
  adminAddress(): TcpAddress {
    if (this.#admin === null) throw new Error('the admin endpoint is off (admin: false)');
    return this.#admin.address;
  }

  /** True from the moment close() begins: no new clients, /readyz answers 503. */
  get draining(): boolean {
    return this.#closing !== null;
  }

  stats(): PoolStats[] {
    return [...this.pools.values()].map((pool) => pool.stats());
  }

  get clients(): number {
    return this.#sessions.size;
  }

  /**
   * Stops accepting clients, gives connected ones up to `graceMs` to leave, then closes
   * everything. Idempotent.
   */
  close(graceMs = 0): Promise<void> {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #start(): Promise<void> {
    for (const config of this.config.pools) {
      const pool = new Pool(config, codecFor(config.protocol), this.#clock, this.#log);
      this.pools.set(config.name, pool);
      pool.start();
    }
    for (const config of this.config.pools) {
      const pool = this.pools.get(config.name) as Pool;
      for (const address of config.listen) {
        const server = await listen(address, (socket) => this.#accept(pool, socket));
        // accept() failing (EMFILE, ENFILE): logged, at most once a second, never a crash.
        server.on('error', (err: NodeJS.ErrnoException) => this.#onAcceptError(config.name, err));
        const bound = boundAddress(address, server);
        this.listeners.push({ pool: config.name, address, bound, server });
        this.#log.info('listening', { pool: config.name, address: formatAddress(bound) });
      }
    }
    if (this.config.admin !== null) await this.#startAdmin(this.config.admin.listen);
  }

  async #startAdmin(address: TcpAddress): Promise<void> {
    const registry = this.#options.registry ?? new Registry();
    const version = this.#options.version ?? packageVersion();
    const pools = (): Iterable<Pool> => this.pools.values();
    registerMetrics({ registry, pools, version });
    this.#admin = await AdminServer.start({
      listen: address,
      registry,
      pools,
      draining: () => this.draining,
      clock: this.#clock,
      log: this.#log,
      version,
    });
    this.#log.info('admin endpoint listening', { address: formatAddress(this.#admin.address) });
  }

  #accept(pool: Pool, socket: net.Socket): void {
    if (this.#closing !== null) {
      pool.fail('DRAINING', 'client refused: poolside is shutting down');
      refuse(socket, pool.codec.errorReply('DRAINING', 'poolside is shutting down'));
      return;
    }
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
    const session = new ClientSession(socket, {
      id: this.#nextClientId++,
      pool,
      log: this.#log,
      onClose: (s) => {
        pool.removeClient(s);
        this.#sessions.delete(s);
      },
    });
    pool.addClient(session);
    this.#sessions.add(session);
  }

  #onAcceptError(pool: string, err: NodeJS.ErrnoException): void {
    const unlogged = this.#acceptErrors.take(this.#clock.now());
    if (unlogged >= 0) this.#log.warn('cannot accept a client', { pool, reason: 'accept_failed', error: err.code ?? err.message, unlogged_since_last: unlogged });
  }

  async #close(graceMs: number): Promise<void> {
    // server.close() calls back only once every accepted client has gone: stop accepting now,
    // and wait for the callbacks after the sessions were given their grace and closed.
    const listenersClosed = Promise.all(
      this.listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            l.server.close(() => resolve());
          }),
      ),
    );
    const deadline = this.#clock.now() + graceMs;
    while (this.#sessions.size > 0 && this.#clock.now() < deadline) {
      await new Promise((resolve) => this.#clock.setTimeout(() => resolve(undefined), 50));
    }
    for (const session of this.#sessions) session.close();
    await listenersClosed;
    await Promise.all([...this.pools.values()].map((pool) => pool.close()));
    for (const l of this.listeners) {
      if (l.address.kind === 'unix') fs.rmSync(l.address.path, { force: true });
    }
    // Last: /readyz answers 503 through the whole drain, so orchestrators see it.
    await this.#admin?.close();
  }
}

/**
 * Answers a refused client and closes it as soon as the answer is written: a FIN alone would
 * leave its descriptor open until the client closes too, and refusals happen when descriptors
 * are short.
 */
function refuse(socket: net.Socket, reply: Buffer): void {
  socket.on('error', () => {});
  socket.end(reply);
  socket.destroySoon();
}

function boundAddress(address: ListenAddress, server: net.Server): ListenAddress {
  if (address.kind === 'unix') return address;
  const info = server.address();
  if (info === null || typeof info === 'string') return address;
  return { kind: 'tcp', host: address.host, port: info.port };
}
