/**
 * The validated configuration, as the rest of poolside sees it: camelCase, durations in
 * milliseconds, every default filled in. The YAML shape (snake_case, `500ms`, `5s`) is documented
 * in docs/configuration.md and config.example.yaml; load.ts turns one into the other and
 * DEFAULTS below is the one place defaults live.
 */

import type { Account } from './accounts.js';

export type Protocol = 'redis' | 'memcached' | 'framed' | 'tcp';
export type Routing = 'failover' | 'ketama';
export type LeaseMode = 'shared' | 'exclusive';
/** Every key hash twemproxy 0.5 offers; KETAMA_HASHES lists them for validation. */
export const KETAMA_HASHES = ['fnv1a_64', 'fnv1_64', 'fnv1a_32', 'fnv1_32', 'md5', 'crc16', 'crc32', 'crc32a', 'hsieh', 'jenkins', 'murmur', 'one_at_a_time'] as const;
export type KetamaHash = (typeof KETAMA_HASHES)[number];
/** What a ketama pool does with the keys of an ejected server. */
export type KetamaOnEjection = 'rehash' | 'fail';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface TcpAddress {
  kind: 'tcp';
  host: string;
  port: number;
}

export interface UnixAddress {
  kind: 'unix';
  path: string;
  /** File mode of the socket, e.g. 0o660. */
  mode: number;
  /** Owner and group given to the socket file (null: poolside's own); resolved to ids at load time. */
  owner: Account | null;
  group: Account | null;
}

export type ListenAddress = TcpAddress | UnixAddress;

/**
 * TLS to one server. The files are read at load (tls.ts, readTlsFiles), so a reload re-reads
 * them; the PEM text lives here, the key never logged. Null fields: Node's defaults (the system
 * CAs, no client certificate, SNI and identity check against the server's host).
 */
export interface TlsConfig {
  /** Absolute paths, for messages; the contents below are what connections use. */
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
  ca: string | null;
  cert: string | null;
  /** Private key (PEM): never logged, never in /stats. */
  key: string | null;
  /** Name sent as SNI and checked against the certificate; null = the address's host. */
  servername: string | null;
  rejectUnauthorized: boolean;
}

export interface ServerConfig {
  address: TcpAddress;
  /** Label in metrics and logs, and the ketama continuum name (twemproxy-compatible). */
  name: string;
  weight: number;
  username: string | null;
  /** Resolved from password_file or password_env at load time; never logged. */
  password: string | null;
  /** Redis database selected on every new connection (0 = leave as is). */
  db: number;
  /** TLS to the server (its own `tls`, else the pool's); null = plain TCP. */
  tls: TlsConfig | null;
}

export interface BackoffConfig {
  initialMs: number;
  maxMs: number;
}

export interface HeartbeatConfig {
  /** 0 disables heartbeats. */
  intervalMs: number;
  timeoutMs: number;
  misses: number;
  /** Fraction 0..1: each beat is scheduled at interval × (1 ± jitter). */
  jitter: number;
}

export interface PoolConfig {
  name: string;
  protocol: Protocol;
  listen: ListenAddress[];
  servers: ServerConfig[];
  /**
   * Credentials clients must present to poolside (AUTH, HELLO … AUTH), checked by poolside and never
   * forwarded; null = clients need not authenticate (their AUTH goes to the server and pins the
   * session). username null = Redis's default user: AUTH <password> and AUTH default <password>
   * both match. password is resolved from password_file or password_env at load time; never logged.
   */
  clientAuth: { username: string | null; password: string } | null;
  routing: Routing;
  /** hashTag: two characters such as "{}" (hash only what is between them), or "" for none (twemproxy's default). */
  ketama: { hash: KetamaHash; onEjection: KetamaOnEjection; hashTag: string };
  /** Shared (pipelined) connections per server; max is a hard cap, connects in progress included. */
  connections: { min: number; max: number };
  /** Exclusive (pinned) connections per server, lent to one session at a time. */
  exclusive: { max: number; idleTimeoutMs: number };
  lease: LeaseMode;
  queue: { max: number; timeoutMs: number };
  connect: { timeoutMs: number; backoff: BackoffConfig };
  heartbeat: HeartbeatConfig;
  /** Idle shared connections above min are closed after this long; 0 = never. */
  idleTimeoutMs: number;
  /** Connections are replaced after this long (± heartbeat jitter); 0 = never. */
  maxLifetimeMs: number;
  eject: { afterFailures: number; forMs: number };
  /** 0 = no deadline. */
  requestTimeoutMs: number;
  clients: {
    max: number;
    /** Unsent reply bytes at which a client's reads are paused (and outputSoftMs starts to count). */
    outputSoftBytes: number;
    /** Reply bytes queued behind the one being written at which a client is reset. */
    outputHardBytes: number;
    /** A client with outputSoftBytes unsent that takes none of them for this long is reset. */
    outputSoftMs: number;
    /** Bytes of requests framed and not yet answered at which a client's reads are paused. */
    inputSoftBytes: number;
    /** … at which it is reset (the decoder's incomplete request included). */
    inputHardBytes: number;
    /**
     * A client that sent nothing for this long is closed (a transaction open or not, as Redis
     * does), unless it has a request in flight, a blocking command or a subscription; 0 = never
     * (Redis's `timeout`).
     */
    idleTimeoutMs: number;
  };
  /** Largest request a client may send, in bytes (Redis: the largest bulk string; memcached: the longest get/gets line). */
  maxRequestBytes: number;
  /**
   * memcached pools: the largest data block a client may store (memcached's `-I`), checked from the
   * command line before anything is buffered; a larger one is counted away and answered
   * `SERVER_ERROR object too large for cache`, as memcached answers it.
   */
  maxItemBytes: number;
  /**
   * Changes to the built-in command policy (codec/redis/policy.ts): names such as `CONFIG` or
   * `CONFIG GET`, uppercase, one space. The most specific name wins; deny beats allow.
   */
  commands: { allow: readonly string[]; deny: readonly string[] };
}

export interface AdminConfig {
  listen: TcpAddress;
}

export interface Config {
  /** Absolute path of the file this was loaded from, for reload and messages. */
  file: string;
  admin: AdminConfig | null;
  log: { level: LogLevel };
  /**
   * SIGTERM: listeners keep accepting for delayMs (/readyz already 503), then stop; clients still
   * connected at timeoutMs (counted from the signal) are closed and poolside exits.
   */
  shutdown: { delayMs: number; timeoutMs: number };
  pools: PoolConfig[];
}

export const DEFAULTS = {
  admin: { listen: '127.0.0.1:9121' },
  log: { level: 'info' as LogLevel },
  shutdown: { delayMs: 0, timeoutMs: 10_000 },
  pool: {
    clientAuth: null as PoolConfig['clientAuth'],
    routing: 'failover' as Routing,
    ketama: { hash: 'fnv1a_64' as KetamaHash, onEjection: 'fail' as KetamaOnEjection, hashTag: '' },
    connections: { min: 2, max: 8 },
    exclusive: { max: 32, idleTimeoutMs: 60_000 },
    lease: 'shared' as LeaseMode,
    queue: { max: 1000, timeoutMs: 500 },
    connect: { timeoutMs: 1000, backoff: { initialMs: 100, maxMs: 5000 } },
    heartbeat: { intervalMs: 5000, timeoutMs: 1000, misses: 2, jitter: 0.2 },
    idleTimeoutMs: 300_000,
    maxLifetimeMs: 3_600_000,
    eject: { afterFailures: 3, forMs: 10_000 },
    requestTimeoutMs: 2000,
    clients: { max: 10_000, outputSoftBytes: 1 << 20, outputHardBytes: 64 << 20, outputSoftMs: 10_000, inputSoftBytes: 8 << 20, inputHardBytes: 1 << 30, idleTimeoutMs: 0 },
    maxRequestBytes: 512 << 20,
    maxItemBytes: 1 << 20,
    commands: { allow: [] as readonly string[], deny: [] as readonly string[] },
    unixMode: 0o660,
  },
  server: { weight: 1, db: 0 },
} as const;
