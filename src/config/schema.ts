/**
 * The validated configuration, as the rest of poolside sees it: camelCase, durations in
 * milliseconds, every default filled in. The YAML shape (snake_case, `500ms`, `5s`) is documented
 * in docs/configuration.md and config.example.yaml; load.ts turns one into the other and
 * DEFAULTS below is the one place defaults live.
 */

import type { Account } from './accounts.js';
import type { Probe, ProbeAnswer } from './probe.js';

export type Protocol = 'redis' | 'memcached' | 'framed' | 'tcp';
export type Routing = 'failover' | 'ketama' | 'cluster';
/** Where a cluster pool sends reads (the replica routing itself is the observe work; core carries the value). */
export type ReadFrom = 'primary' | 'replica' | 'prefer_replica';

/** `cluster:` of a `routing: cluster` pool (defaults on every other pool, unused there). */
export interface ClusterConfig {
  /** Periodic topology refresh (CLUSTER SHARDS); 0 = only on MOVED, failures and CLUSTERDOWN. */
  refreshIntervalMs: number;
  /** Redirections (MOVED, ASK, TRYAGAIN/CLUSTERDOWN retries) followed for one request before its last error passes. */
  maxRedirects: number;
  readFrom: ReadFrom;
}
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
  /**
   * The configured heartbeat (`send`/`expect`, protocols framed and tcp); null: the codec's own
   * (Redis PING), or, for framed and tcp, none at all (intervalMs is then 0: liveness is TCP
   * keepalive and eviction on error).
   */
  probe: Probe | null;
  /** How poolside answers the server's own heartbeat requests (`answer`); null: it does not. */
  answer: ProbeAnswer | null;
}

/** A length field or a request-id field: where it is in the header, and how wide. */
export type FieldSize = 1 | 2 | 4 | 8;
export type Endian = 'big' | 'little';

/**
 * `protocol: framed`: every frame (request or response) is a header of headerSize bytes holding a
 * length field, then a body. The frame's total size is
 *   length + adjustment + (includesHeader ? 0 : headerSize).
 */
export interface FramedConfig {
  headerSize: number;
  length: { offset: number; size: FieldSize; endian: Endian; includesHeader: boolean; adjustment: number };
  /**
   * Where each frame carries its request id (null: none, replies come in request order). With one,
   * replies may come out of order; poolside gives each request a connection-unique id and restores
   * the client's in the reply.
   */
  requestId: { offset: number; size: FieldSize } | null;
  /** Largest frame either way, header included; checked from the header, before buffering. */
  maxFrameBytes: number;
  /**
   * A frame from the server that answers nothing waiting (no request in flight, an unknown id) and
   * is not a heartbeat request `heartbeat.answer` matches: dropped and counted, or the connection
   * closed (the reply stream can no longer be trusted).
   */
  unasked: 'drop' | 'close';
}

/** `protocol: tcp` only. */
export interface TcpPoolConfig {
  /**
   * The exchange that proves a connection clean after a client leaves, so it is lent again; null:
   * every connection is closed when its client leaves and a fresh one warmed.
   */
  reset: Probe | null;
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
  /** routing: cluster: `servers` are the seed nodes; the nodes themselves are discovered. */
  cluster: ClusterConfig;
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
  /** `protocol: tcp` settings (the defaults for any other protocol). */
  tcp: TcpPoolConfig;
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
  /** `protocol: framed`'s framing; null for every other protocol. */
  framed: FramedConfig | null;
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
    cluster: { refreshIntervalMs: 10_000, maxRedirects: 5, readFrom: 'primary' as ReadFrom },
    connections: { min: 2, max: 8 },
    exclusive: { max: 32, idleTimeoutMs: 60_000 },
    lease: 'shared' as LeaseMode,
    queue: { max: 1000, timeoutMs: 500 },
    connect: { timeoutMs: 1000, backoff: { initialMs: 100, maxMs: 5000 } },
    heartbeat: { intervalMs: 5000, timeoutMs: 1000, misses: 2, jitter: 0.2, probe: null as Probe | null, answer: null as ProbeAnswer | null },
    idleTimeoutMs: 300_000,
    maxLifetimeMs: 3_600_000,
    eject: { afterFailures: 3, forMs: 10_000 },
    requestTimeoutMs: 2000,
    clients: { max: 10_000, outputSoftBytes: 1 << 20, outputHardBytes: 64 << 20, outputSoftMs: 10_000, inputSoftBytes: 8 << 20, inputHardBytes: 1 << 30, idleTimeoutMs: 0 },
    maxRequestBytes: 512 << 20,
    maxItemBytes: 1 << 20,
    commands: { allow: [] as readonly string[], deny: [] as readonly string[] },
    tcp: { reset: null as Probe | null },
    unixMode: 0o660,
  },
  server: { weight: 1, db: 0 },
  /** `framed:` of a framed pool (null on every other pool, so not under pool). */
  framed: { maxFrameBytes: 16 << 20, unasked: 'close' as FramedConfig['unasked'] },
} as const;
