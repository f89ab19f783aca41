/**
 * YAML text → validated Config: poolside's schema (root, admin, pools, servers, listeners), its
 * defaults and the checks that span fields or pools. The document is read through yaml-reader.ts so
 * that every problem can name the file, line, column and YAML path it came from. Problems are
 * collected, never thrown one at a time: a user fixing a config should see all of it in one run, and
 * a rejected reload should say everything that is wrong with the new file.
 */

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { frameLength } from '../codec/framed/framing.js';
import { parsePolicyName } from '../codec/redis/policy.js';
import { twemproxyServerName } from '../router/ketama.js';
import { resolveAccount } from './accounts.js';
import { formatHex, parseHex, PROBED_PROTOCOLS } from './probe.js';
import type { Expect, Probe, ProbeAnswer } from './probe.js';
import type { Account, AccountDatabase } from './accounts.js';
import { DEFAULTS, KETAMA_HASHES } from './schema.js';
import type {
  AdminConfig,
  Config,
  Endian,
  FieldSize,
  FramedConfig,
  KetamaOnEjection,
  LeaseMode,
  ListenAddress,
  LogLevel,
  PoolConfig,
  Protocol,
  ReadFrom,
  Routing,
  ServerConfig,
  TcpAddress,
  TlsConfig,
} from './schema.js';
import { readTlsFiles } from './tls.js';
import type { TlsFileField } from './tls.js';
import {
  describe,
  formatAddress,
  listenersClash,
  oneOf,
  parseAdminAddress,
  parseBoolean,
  parseHashTag,
  parseListenAddress,
  parseMode,
  parseName,
  parsePercent,
  parseServerAddress,
  parseServerString,
  parseString,
  wholeNumber,
} from './validate.js';
import type { Parser, ServerString } from './validate.js';
import { formatProblem, offsetOf, problemAt, YamlReader } from './yaml-reader.js';
import type { ConfigProblem, Section, Slot } from './yaml-reader.js';

export { formatProblem } from './yaml-reader.js';
export type { ConfigProblem } from './yaml-reader.js';

/** A config that cannot be used, with every problem found in it. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_ERROR' as const;
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const PROTOCOLS: readonly Protocol[] = ['redis', 'memcached', 'framed', 'tcp'];
const ROUTINGS: readonly Routing[] = ['failover', 'ketama', 'cluster'];
const READ_FROM: readonly ReadFrom[] = ['primary', 'replica', 'prefer_replica'];
const LEASES: readonly LeaseMode[] = ['shared', 'exclusive'];
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const ON_EJECTION: readonly KetamaOnEjection[] = ['rehash', 'fail'];
const POOL_NAME = /^[a-zA-Z0-9_-]+$/;

const ROOT_KEYS = ['admin', 'log', 'shutdown', 'shutdown_grace', 'pools'];
const POOL_KEYS = [
  'protocol', 'listen', 'servers', 'client_auth', 'routing', 'ketama', 'cluster', 'connections', 'exclusive', 'lease', 'queue',
  'connect', 'heartbeat', 'idle_timeout', 'max_lifetime', 'eject', 'request_timeout', 'clients', 'max_request_size',
  'max_item_size', 'commands', 'tls', 'framed', 'tcp',
];
const SERVER_KEYS = ['address', 'name', 'weight', 'username', 'password_file', 'password_env', 'db', 'tls'];
const TLS_KEYS = ['ca_file', 'cert_file', 'key_file', 'servername', 'reject_unauthorized'];
const CLIENT_AUTH_KEYS = ['username', 'password_file', 'password_env'];
/** Redis's AUTH <password> authenticates as this user; client_auth stores it as username null. */
const REDIS_DEFAULT_USER = 'default';

/** Reads the file and parses it; see parseConfig. */
export function loadConfig(file: string): Config {
  return parseConfig(readFileSync(file, 'utf8'), file);
}

/**
 * Parses and validates config text. `file` is used in messages as given, and resolved for
 * Config.file and for relative password_file paths. `env` and `readFile` are where password_env
 * and password_file are looked up, injectable so tests need no real secrets. Throws ConfigError.
 */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const syntax = [...doc.errors, ...doc.warnings].map((error) => {
    // yaml's wording here names its own API, which means nothing to someone editing a config.
    const oneDocument = 'a config file holds one YAML document; remove this ---';
    return problemAt(file, lines, error.pos[0], '', error.code === 'MULTIPLE_DOCS' ? oneDocument : error.message);
  });
  // The document is validated even when it has syntax errors: yaml recovers well enough that most
  // other problems are real, and one run that shows everything beats a fix-and-rerun loop. Syntax
  // errors come first because what follows them may be their consequence.
  const walk = new Walk(file, doc, lines, env, readFile);
  const config = readRoot(walk, resolve(file));
  const problems = [...sortProblems(syntax), ...sortProblems(walk.problems)];
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.column - b.column);
}

interface Listener {
  address: ListenAddress;
  /** Null for the admin endpoint's default address, which is not written in the file. */
  slot: Slot | null;
}

/** The state of one parse: the reader, plus what the cross-pool checks and password lookups need. */
class Walk extends YamlReader {
  readonly listeners: Listener[] = [];

  constructor(
    file: string,
    doc: Document,
    lines: LineCounter,
    readonly env: NodeJS.ProcessEnv,
    readonly readFile: (path: string) => string,
  ) {
    super(file, doc, lines);
  }
}

function readRoot(walk: Walk, file: string): Config {
  const config: Config = {
    file,
    admin: null,
    log: { ...DEFAULTS.log },
    shutdown: { ...DEFAULTS.shutdown },
    pools: [],
  };
  const contents = walk.child(walk.doc.contents, '', null);
  if (contents === undefined) {
    walk.at(0, 'pools', 'is required (the config is empty; it needs at least one pool)');
    return config;
  }
  if (!isMap(contents.node)) {
    const got = describe(walk.plain(contents));
    walk.report(contents, `the top level must be a mapping with keys ${ROOT_KEYS.join(', ')}, got ${got}`);
    return config;
  }
  const root = walk.section(contents, ROOT_KEYS);
  if (root === undefined) return config;
  config.admin = readAdmin(walk, root.get('admin'));
  config.log.level = walk.parse(root.section('log', ['level'])?.get('level'), DEFAULTS.log.level, oneOf(LOG_LEVELS));
  config.shutdown = readShutdown(walk, root);
  config.pools = readPools(walk, root.require('pools', 'at least one pool'));
  checkListenerClashes(walk);
  return config;
}

/**
 * `shutdown: { delay, timeout }`. The older `shutdown_grace` is still read, as shutdown.timeout
 * (what it meant: how long clients get before they are closed); giving both is an error.
 */
function readShutdown(walk: Walk, root: Section): Config['shutdown'] {
  const d = DEFAULTS.shutdown;
  const graceSlot = root.get('shutdown_grace');
  const section = root.section('shutdown', ['delay', 'timeout']);
  const [delaySlot, timeoutSlot] = [section?.get('delay'), section?.get('timeout')];
  if (graceSlot !== undefined && timeoutSlot !== undefined) {
    walk.report(graceSlot, 'shutdown_grace is the old name of shutdown.timeout; give only shutdown.timeout');
  }
  const delayMs = walk.duration(delaySlot, d.delayMs, 'allowed');
  const timeoutMs = walk.duration(timeoutSlot ?? graceSlot, d.timeoutMs, 'allowed');
  walk.check(
    delayMs === 0 || delayMs < timeoutMs,
    [delaySlot, timeoutSlot ?? graceSlot],
    `shutdown.delay (${delayMs}ms) must be less than shutdown.timeout (${timeoutMs}ms): the timeout counts from the signal`,
  );
  return { delayMs, timeoutMs };
}

function readAdmin(walk: Walk, slot: Slot | undefined): AdminConfig | null {
  const fallback = parseAdminAddress(DEFAULTS.admin.listen);
  if (!fallback.ok) throw new Error(`DEFAULTS.admin.listen is invalid: ${fallback.message}`);
  const enabled = slot === undefined || !isScalar(slot.node) || slot.node.value !== false;
  if (!enabled) return null;
  const isFlag = slot !== undefined && isScalar(slot.node) && slot.node.value === true;
  const listenSlot = slot === undefined || isFlag ? undefined : walk.section(slot, ['listen'])?.get('listen');
  const listen = walk.parse(listenSlot, fallback.value, parseAdminAddress);
  walk.listeners.push({ address: listen, slot: listenSlot ?? null });
  return { listen };
}

function readPools(walk: Walk, slot: Slot | undefined): PoolConfig[] {
  if (slot === undefined) return [];
  if (!isMap(slot.node)) {
    walk.report(slot, `expected a mapping of pool name to pool, got ${describe(walk.plain(slot))}`);
    return [];
  }
  if (slot.node.items.length === 0) walk.report(slot, 'needs at least one pool');
  const pools: PoolConfig[] = [];
  for (const pair of slot.node.items) {
    const keyNode = isScalar(pair.key) ? pair.key : slot.node;
    const name = isScalar(pair.key) ? String(pair.key.value) : '';
    const path = POOL_NAME.test(name) ? `pools.${name}` : `pools[${JSON.stringify(name)}]`;
    if (!POOL_NAME.test(name)) walk.at(offsetOf(keyNode), path, 'pool names may contain only letters, digits, _ and -');
    const poolSlot = walk.child(pair.value, path, keyNode);
    if (poolSlot === undefined) {
      walk.at(offsetOf(keyNode), path, 'expected a pool with protocol, listen and servers, got nothing');
      continue;
    }
    const pool = walk.section(poolSlot, POOL_KEYS);
    if (pool !== undefined) pools.push(readPool(walk, name, pool));
  }
  return pools;
}

function readPool(walk: Walk, name: string, pool: Section): PoolConfig {
  const d = DEFAULTS.pool;
  const protocolSlot = pool.require('protocol', PROTOCOLS.join(' | '));
  const protocol = walk.parse(protocolSlot, 'redis', oneOf(PROTOCOLS));

  const framed = readFramed(walk, pool, protocol);
  if (framed !== null) {
    // A framed pool only frames: it has no commands to allow or deny and no AUTH to check.
    for (const key of ['client_auth', 'commands']) {
      const slot = pool.get(key);
      walk.check(slot === undefined, [slot], `${key} does not apply to protocol framed (poolside does not look inside its frames)`);
    }
  }

  const listenSlot = pool.require('listen', 'an address or a list of addresses');
  const listenSlots = listenSlot === undefined ? [] : walk.list(listenSlot, 'listen address', true);
  const listen = listenSlots.map((slot) => readListen(walk, slot));

  const serversSlot = pool.require('servers', 'a list of host:port addresses');
  const poolTls = readTls(walk, pool.get('tls'), null);
  const servers = serversSlot === undefined ? [] : readServers(walk, walk.list(serversSlot, 'server', false), poolTls);
  const clientAuth = readClientAuth(walk, pool.get('client_auth'));
  const maxItemSlot = pool.get('max_item_size');
  const maxItemBytes = walk.size(maxItemSlot, d.maxItemBytes);
  walk.check(maxItemSlot === undefined || protocol === 'memcached', [maxItemSlot], 'max_item_size applies only to memcached pools');
  if (protocol === 'memcached') {
    // memcached's text protocol has no AUTH, no databases and no command policy (yet).
    const redisOnly = 'applies only to redis pools';
    walk.check(pool.get('client_auth') === undefined, [pool.get('client_auth')], `client_auth ${redisOnly}`);
    walk.check(pool.get('commands') === undefined, [pool.get('commands')], `commands ${redisOnly}`);
    const stateful = servers.find((s) => s.config.db !== 0 || s.config.password !== null);
    walk.check(stateful === undefined, [stateful?.nameSlot], 'db, username and password apply only to redis pools');
  }

  const routingSlot = pool.get('routing');
  const routing = walk.parse(routingSlot, d.routing, oneOf(ROUTINGS));
  // Raw bytes carry no key to hash.
  walk.check(protocol !== 'tcp' || routing !== 'ketama', [routingSlot], 'a tcp pool has no keys to shard by: routing must be failover');
  if (routing === 'ketama') {
    for (const { config, weightSlot } of servers) {
      const message = `routing: ketama needs every weight to be at least 1, got ${config.weight}`;
      walk.check(config.weight >= 1, [weightSlot], message);
    }
  }
  const ketamaSlot = pool.get('ketama');
  const ketama = pool.section('ketama', ['hash', 'on_ejection', 'hash_tag']);
  const cluster = readCluster(walk, pool, routing, protocol);
  if (routing === 'cluster') {
    // Redis Cluster has one database and its own slot hashing (CRC16 with {hash tags}).
    walk.check(ketamaSlot === undefined, [ketamaSlot], 'ketama does not apply to routing: cluster (keys go by Redis Cluster hash slot, {hash tags} included)');
    const selecting = servers.find((s) => s.config.db !== 0);
    walk.check(selecting === undefined, [selecting?.dbSlot], 'a Redis Cluster has only database 0: db must be 0 for routing: cluster');
  }

  const connections = pool.section('connections', ['min', 'max']);
  const [minSlot, maxSlot] = [connections?.get('min'), connections?.get('max')];
  const min = walk.parse(minSlot, d.connections.min, wholeNumber(0));
  const max = walk.parse(maxSlot, d.connections.max, wholeNumber(1));
  walk.check(min <= max, [minSlot, maxSlot], `connections.min (${min}) must not exceed connections.max (${max})`);

  const exclusive = pool.section('exclusive', ['max', 'idle_timeout']);
  const exclusiveMaxSlot = exclusive?.get('max');
  const exclusiveMax = walk.parse(exclusiveMaxSlot, d.exclusive.max, wholeNumber(0));
  const leaseSlot = pool.get('lease');
  const lease = walk.parse(leaseSlot, d.lease, oneOf(LEASES));
  const noExclusive = 'lease: exclusive needs exclusive.max of at least 1';
  walk.check(lease === 'shared' || exclusiveMax >= 1, [leaseSlot, exclusiveMaxSlot], noExclusive);
  // A connection of its own is to one node; the client's keys live on every node (docs/redis-cluster.md).
  walk.check(lease === 'shared' || routing !== 'cluster', [leaseSlot], 'lease: exclusive does not apply to routing: cluster (a connection of its own would be to one node; transactions, WATCH, blocking commands and subscriptions pin to their key\'s node by themselves)');

  const queue = pool.section('queue', ['max', 'timeout']);
  const connect = pool.section('connect', ['timeout', 'backoff']);
  const backoff = connect?.section('backoff', ['initial', 'max']);
  const [initialSlot, backoffMaxSlot] = [backoff?.get('initial'), backoff?.get('max')];
  const initialMs = walk.duration(initialSlot, d.connect.backoff.initialMs, 'rejected');
  const maxMs = walk.duration(backoffMaxSlot, d.connect.backoff.maxMs, 'rejected');
  walk.check(
    initialMs <= maxMs,
    [backoffMaxSlot, initialSlot],
    `connect.backoff.max (${maxMs}ms) must be at least connect.backoff.initial (${initialMs}ms)`,
  );

  const eject = pool.section('eject', ['after_failures', 'for']);
  const clients = pool.section('clients', ['max', 'output_buffer', 'input_buffer', 'idle_timeout']);
  const output = clients?.section('output_buffer', ['soft', 'hard', 'soft_seconds']);
  const [softSlot, hardSlot] = [output?.get('soft'), output?.get('hard')];
  const outputSoftBytes = walk.size(softSlot, d.clients.outputSoftBytes);
  const outputHardBytes = walk.size(hardSlot, d.clients.outputHardBytes);
  walk.check(
    outputSoftBytes <= outputHardBytes,
    [hardSlot, softSlot],
    `clients.output_buffer.hard (${outputHardBytes} bytes) must be at least soft (${outputSoftBytes} bytes)`,
  );
  const outputSoftSeconds = walk.parse(output?.get('soft_seconds'), d.clients.outputSoftMs / 1000, wholeNumber(1));
  const input = clients?.section('input_buffer', ['soft', 'hard']);
  const [inSoftSlot, inHardSlot] = [input?.get('soft'), input?.get('hard')];
  const inputSoftBytes = walk.size(inSoftSlot, d.clients.inputSoftBytes);
  const inputHardBytes = walk.size(inHardSlot, d.clients.inputHardBytes);
  walk.check(
    inputSoftBytes <= inputHardBytes,
    [inHardSlot, inSoftSlot],
    `clients.input_buffer.hard (${inputHardBytes} bytes) must be at least soft (${inputSoftBytes} bytes)`,
  );

  return {
    name,
    protocol,
    listen,
    servers: servers.map((s) => s.config),
    clientAuth,
    routing,
    ketama: {
      hash: walk.parse(ketama?.get('hash'), d.ketama.hash, oneOf(KETAMA_HASHES)),
      onEjection: walk.parse(ketama?.get('on_ejection'), d.ketama.onEjection, oneOf(ON_EJECTION)),
      hashTag: walk.parse(ketama?.get('hash_tag'), d.ketama.hashTag, parseHashTag),
    },
    cluster,
    connections: { min, max },
    exclusive: {
      max: exclusiveMax,
      idleTimeoutMs: walk.duration(exclusive?.get('idle_timeout'), d.exclusive.idleTimeoutMs, 'allowed'),
    },
    lease,
    queue: {
      max: walk.parse(queue?.get('max'), d.queue.max, wholeNumber(0)),
      timeoutMs: walk.duration(queue?.get('timeout'), d.queue.timeoutMs, 'rejected'),
    },
    connect: {
      timeoutMs: walk.duration(connect?.get('timeout'), d.connect.timeoutMs, 'rejected'),
      backoff: { initialMs, maxMs },
    },
    heartbeat: readHeartbeat(walk, pool.get('heartbeat'), protocol, framed),
    idleTimeoutMs: walk.duration(pool.get('idle_timeout'), d.idleTimeoutMs, 'allowed'),
    maxLifetimeMs: walk.duration(pool.get('max_lifetime'), d.maxLifetimeMs, 'allowed'),
    eject: {
      afterFailures: walk.parse(eject?.get('after_failures'), d.eject.afterFailures, wholeNumber(1)),
      forMs: walk.duration(eject?.get('for'), d.eject.forMs, 'rejected'),
    },
    requestTimeoutMs: walk.duration(pool.get('request_timeout'), d.requestTimeoutMs, 'allowed'),
    clients: {
      max: walk.parse(clients?.get('max'), d.clients.max, wholeNumber(1)),
      outputSoftBytes,
      outputHardBytes,
      outputSoftMs: outputSoftSeconds * 1000,
      inputSoftBytes,
      inputHardBytes,
      idleTimeoutMs: walk.duration(clients?.get('idle_timeout'), d.clients.idleTimeoutMs, 'allowed'),
    },
    maxRequestBytes: walk.size(pool.get('max_request_size'), d.maxRequestBytes),
    maxItemBytes,
    commands: readCommands(walk, pool.get('commands')),
    framed,
    tcp: readTcp(walk, pool.get('tcp'), protocol),
  };
}

/** `cluster: { refresh_interval, max_redirects, read_from }`, only for routing: cluster (redis only). */
function readCluster(walk: Walk, pool: Section, routing: Routing, protocol: Protocol): PoolConfig['cluster'] {
  const d = DEFAULTS.pool.cluster;
  const routingSlot = pool.get('routing');
  walk.check(routing !== 'cluster' || protocol === 'redis', [routingSlot], `routing: cluster is Redis Cluster: it needs protocol redis (this pool is ${protocol})`);
  const slot = pool.get('cluster');
  if (slot === undefined) return d;
  if (routing !== 'cluster') {
    walk.report(slot, `cluster applies only to routing: cluster (this pool routes by ${routing})`);
    return d;
  }
  const section = walk.section(slot, ['refresh_interval', 'max_redirects', 'read_from']);
  return {
    refreshIntervalMs: walk.duration(section?.get('refresh_interval'), d.refreshIntervalMs, 'allowed'),
    maxRedirects: walk.parse(section?.get('max_redirects'), d.maxRedirects, wholeNumber(0)),
    readFrom: walk.parse(section?.get('read_from'), d.readFrom, oneOf(READ_FROM)),
  };
}

/**
 * `tcp: { reset: { send, expect } }`, only for protocol: tcp. The reset's reply is recognised at the
 * end of the stream, so it needs an expect of some length (not "any reply").
 */
function readTcp(walk: Walk, slot: Slot | undefined, protocol: Protocol): PoolConfig['tcp'] {
  const d = DEFAULTS.pool.tcp;
  if (slot === undefined) return d;
  if (protocol !== 'tcp') {
    walk.report(slot, `tcp applies only to protocol tcp (this pool is ${protocol})`);
    return d;
  }
  const resetSlot = walk.section(slot, ['reset'])?.get('reset');
  const reset = resetSlot === undefined ? undefined : walk.section(resetSlot, ['send', 'expect']);
  if (reset === undefined || resetSlot === undefined) return d;
  const sendSlot = reset.require('send', 'hex bytes that ask the service to reset');
  const expectSlot = reset.require('expect', 'hex bytes, { prefix }, or { mask, value }: the reply that proves the connection clean');
  if (sendSlot === undefined || expectSlot === undefined) return d;
  const probe = readProbe(walk, sendSlot, expectSlot, null);
  if (probe === null || probe.expect.kind === 'any') return d;
  return { reset: probe };
}


/**
 * The pool's changes to the built-in command policy. Names are checked against the command tables
 * (the same ones classify uses), so a typo is an error here rather than a policy that silently
 * does nothing. Only Redis has a policy so far.
 */
function readCommands(walk: Walk, slot: Slot | undefined): PoolConfig['commands'] {
  const d = DEFAULTS.pool.commands;
  const section = slot === undefined ? undefined : walk.section(slot, ['allow', 'deny']);
  if (section === undefined) return d;
  const lists = { allow: [] as string[], deny: [] as string[] };
  const seen = new Map<string, Slot>();
  for (const list of ['allow', 'deny'] as const) {
    const listSlot = section.get(list);
    if (listSlot === undefined) continue;
    // An empty list is the default, not a mistake: unlike listen or servers, none is fine.
    const items = isSeq(listSlot.node) && listSlot.node.items.length === 0 ? [] : walk.list(listSlot, 'command name', true);
    for (const item of items) {
      const name = walk.parse(item, '', (value) =>
        typeof value === 'string' ? parsePolicyName(value, list) : { ok: false, message: `expected a command name such as "CONFIG GET", got ${describe(value)}` },
      );
      if (name === '') continue;
      const earlier = seen.get(name);
      if (earlier !== undefined) {
        const { line, col } = walk.lines.linePos(offsetOf(earlier.node));
        walk.report(item, `${name} is already listed at ${earlier.path} (line ${line}:${col})`);
        continue;
      }
      seen.set(name, item);
      lists[list].push(name);
    }
  }
  return lists;
}

const HEARTBEAT_KEYS = ['interval', 'timeout', 'misses', 'jitter', 'send', 'expect', 'answer'];

/**
 * `heartbeat:`. Redis's is PING; framed and tcp pools have a heartbeat only when `send` says what
 * to send (without one, interval is 0: liveness is TCP keepalive and eviction on error, and
 * --check-config warns). `answer` answers the server's own heartbeat requests.
 */
function readHeartbeat(walk: Walk, slot: Slot | undefined, protocol: Protocol, framed: FramedConfig | null): PoolConfig['heartbeat'] {
  const d = DEFAULTS.pool.heartbeat;
  const probed = PROBED_PROTOCOLS.has(protocol);
  if (slot !== undefined && isScalar(slot.node) && typeof slot.node.value === 'boolean') {
    const on = slot.node.value;
    walk.check(!on || !probed, [slot], `protocol ${protocol} has no heartbeat of its own: give heartbeat.send (and expect), or leave heartbeat out`);
    return on && !probed ? { ...d } : { ...d, intervalMs: 0 };
  }
  const heartbeat = slot === undefined ? undefined : walk.section(slot, HEARTBEAT_KEYS);
  const intervalSlot = heartbeat?.get('interval');
  const timeoutSlot = heartbeat?.get('timeout');
  const jitterSlot = heartbeat?.get('jitter');
  const [sendSlot, expectSlot, answerSlot] = [heartbeat?.get('send'), heartbeat?.get('expect'), heartbeat?.get('answer')];
  if (!probed) {
    for (const [key, keySlot] of [['send', sendSlot], ['expect', expectSlot], ['answer', answerSlot]] as const) {
      walk.check(keySlot === undefined, [keySlot], `heartbeat.${key} applies only to protocol framed and tcp (protocol ${protocol} has its own heartbeat)`);
    }
  }
  const probe = probed ? readProbe(walk, sendSlot, expectSlot, framed) : null;
  // framed and tcp without `send`: nothing to send, so no heartbeat unless interval asks for one (an error).
  const intervalDefault = probed && probe === null ? 0 : d.intervalMs;
  const intervalMs = walk.duration(intervalSlot, intervalDefault, 'allowed');
  if (probed && probe === null && sendSlot === undefined) {
    walk.check(intervalMs === 0, [intervalSlot], `protocol ${protocol} has no heartbeat of its own: heartbeat.send must say what to send`);
  }
  const timeoutMs = walk.duration(timeoutSlot, d.timeoutMs, intervalMs === 0 ? 'allowed' : 'rejected');
  walk.check(
    intervalMs === 0 || timeoutMs < intervalMs,
    [timeoutSlot, intervalSlot],
    `heartbeat.timeout (${timeoutMs}ms) must be less than heartbeat.interval (${intervalMs}ms)`,
  );
  const jitter = walk.parse(jitterSlot, d.jitter, parsePercent);
  // At 100% a beat could be scheduled at interval × 0, i.e. in a tight loop.
  walk.check(jitter < 1, [jitterSlot], 'must be less than 100%');
  // A tcp pool frames nothing: a server's heartbeat request could not be told from other bytes, and
  // bytes on an idle relay connection close it.
  walk.check(protocol !== 'tcp' || answerSlot === undefined, [answerSlot], 'a tcp pool frames nothing, so it cannot tell a server\'s heartbeat request from other bytes: heartbeat.answer is for framed pools');
  const answer = probed && protocol !== 'tcp' && answerSlot !== undefined ? readProbeAnswer(walk, answerSlot, framed) : null;
  return {
    intervalMs: probe === null && probed ? 0 : intervalMs,
    timeoutMs,
    misses: walk.parse(heartbeat?.get('misses'), d.misses, wholeNumber(1)),
    jitter,
    probe,
    answer,
  };
}

function readProbe(walk: Walk, sendSlot: Slot | undefined, expectSlot: Slot | undefined, framed: FramedConfig | null): Probe | null {
  if (sendSlot === undefined) {
    walk.check(expectSlot === undefined, [expectSlot], 'heartbeat.expect needs heartbeat.send (what to send)');
    return null;
  }
  const send = walk.parse(sendSlot, null, parseHex);
  if (send !== null && framed !== null) checkWholeFrame(walk, sendSlot, send, framed);
  const expect = expectSlot === undefined ? ANY : readExpect(walk, expectSlot);
  return send === null ? null : { send, expect };
}

function readProbeAnswer(walk: Walk, slot: Slot, framed: FramedConfig | null): ProbeAnswer | null {
  const section = walk.section(slot, ['match', 'reply']);
  const [matchSlot, replySlot] = [section?.require('match', 'what marks a heartbeat request: hex, { prefix }, or { mask, value }'), section?.require('reply', 'hex bytes')];
  if (matchSlot === undefined || replySlot === undefined) return null;
  const match = readExpect(walk, matchSlot);
  const reply = walk.parse(replySlot, null, parseHex);
  if (reply !== null && framed !== null) checkWholeFrame(walk, replySlot, reply, framed);
  return reply === null ? null : { match, reply };
}

const ANY: Expect = { kind: 'any' };

/** `"hex"` (exact bytes), `{ prefix: "hex" }`, or `{ mask: "hex", value: "hex" }` of one length. */
function readExpect(walk: Walk, slot: Slot): Expect {
  if (!isMap(slot.node)) {
    const bytes = walk.parse(slot, null, parseHex);
    return bytes === null ? ANY : { kind: 'exact', bytes };
  }
  const section = walk.section(slot, ['prefix', 'mask', 'value']);
  const [prefixSlot, maskSlot, valueSlot] = [section?.get('prefix'), section?.get('mask'), section?.get('value')];
  if (prefixSlot !== undefined) {
    walk.check(maskSlot === undefined && valueSlot === undefined, [maskSlot ?? valueSlot], 'give prefix, or mask and value, not both');
    const bytes = walk.parse(prefixSlot, null, parseHex);
    return bytes === null ? ANY : { kind: 'prefix', bytes };
  }
  if (maskSlot === undefined || valueSlot === undefined) {
    walk.report(slot, 'expected { prefix: "<hex>" } or { mask: "<hex>", value: "<hex>" }');
    return ANY;
  }
  const mask = walk.parse(maskSlot, null, parseHex);
  const value = walk.parse(valueSlot, null, parseHex);
  if (mask === null || value === null) return ANY;
  if (mask.length !== value.length) {
    walk.report(valueSlot, `mask and value must be the same length: mask has ${mask.length} bytes, value ${value.length}`);
    return ANY;
  }
  const stray = value.findIndex((byte, i) => (byte & ~mask[i]) !== 0);
  walk.check(stray < 0, [valueSlot], `value has bits set outside the mask at byte ${stray} (value ${formatHex(value)}, mask ${formatHex(mask)}): it could never match`);
  return { kind: 'mask', mask, value };
}

/** A configured frame (heartbeat.send, heartbeat.answer.reply) must be one whole frame by the pool's framing. */
function checkWholeFrame(walk: Walk, slot: Slot, frame: Buffer, framed: FramedConfig): void {
  if (frame.length < framed.headerSize) {
    walk.report(slot, `is ${frame.length} bytes, shorter than framed.header_size (${framed.headerSize})`);
    return;
  }
  const length = frameLength(framed, frame);
  if (!length.ok) walk.report(slot, length.message);
  else walk.check(length.bytes === frame.length, [slot], `is ${frame.length} bytes, but its length field makes a frame of ${length.bytes} bytes: it must be one whole frame`);
}

const FIELD_SIZES: readonly FieldSize[] = [1, 2, 4, 8];
const ENDIANS: readonly Endian[] = ['big', 'little'];
const UNASKED: readonly FramedConfig['unasked'][] = ['drop', 'close'];

function fieldSize(value: unknown): { ok: true; value: FieldSize } | { ok: false; message: string } {
  const size = FIELD_SIZES.find((s) => s === value);
  return size === undefined ? { ok: false, message: `expected 1, 2, 4 or 8 (bytes), got ${describe(value)}` } : { ok: true, value: size };
}

function integer(value: unknown): { ok: true; value: number } | { ok: false; message: string } {
  return typeof value === 'number' && Number.isSafeInteger(value) ? { ok: true, value } : { ok: false, message: `expected a whole number (may be negative), got ${describe(value)}` };
}

/**
 * `framed:` (required with protocol framed, refused with any other): the header, its length field,
 * an optional request-id field, max_frame and what to do with frames nobody asked for.
 */
function readFramed(walk: Walk, pool: Section, protocol: Protocol): FramedConfig | null {
  const slot = pool.get('framed');
  if (protocol !== 'framed') {
    walk.check(slot === undefined, [slot], `framed applies only to protocol framed (this pool is ${protocol})`);
    return null;
  }
  const d = DEFAULTS.framed;
  const framedSlot = pool.require('framed', 'header_size and length: how frames are delimited');
  const framed = framedSlot === undefined ? undefined : walk.section(framedSlot, ['header_size', 'length', 'request_id', 'max_frame', 'unasked']);
  const headerSlot = framed?.require('header_size', 'bytes before the body, the length field among them');
  const headerSize = walk.parse(headerSlot, 4, wholeNumber(1, 65536));
  const lengthSlot = framed?.require('length', '{ offset, size, endian, includes_header, adjustment }');
  const length = lengthSlot === undefined ? undefined : walk.section(lengthSlot, ['offset', 'size', 'endian', 'includes_header', 'adjustment']);
  const lengthOffsetSlot = length?.require('offset', 'where the length field starts in the header');
  const lengthSizeSlot = length?.require('size', '1, 2, 4 or 8 bytes');
  const lengthField = {
    offset: walk.parse(lengthOffsetSlot, 0, wholeNumber(0)),
    size: walk.parse(lengthSizeSlot, 4, fieldSize),
    endian: walk.parse(length?.get('endian'), 'big', oneOf(ENDIANS)),
    includesHeader: walk.parse(length?.get('includes_header'), false, parseBoolean),
    adjustment: walk.parse(length?.get('adjustment'), 0, integer),
  };
  const outside = (offset: number, size: number): boolean => offset + size > headerSize;
  walk.check(
    !outside(lengthField.offset, lengthField.size),
    [lengthOffsetSlot, lengthSizeSlot, headerSlot],
    `the length field (offset ${lengthField.offset}, size ${lengthField.size}) must lie inside the ${headerSize}-byte header`,
  );
  let requestId: FramedConfig['requestId'] = null;
  const idSlot = framed?.get('request_id');
  const id = idSlot === undefined ? undefined : walk.section(idSlot, ['offset', 'size']);
  if (id !== undefined) {
    const [idOffsetSlot, idSizeSlot] = [id.require('offset', 'where the request id starts in the header'), id.require('size', '1, 2, 4 or 8 bytes')];
    requestId = { offset: walk.parse(idOffsetSlot, 0, wholeNumber(0)), size: walk.parse(idSizeSlot, 4, fieldSize) };
    walk.check(
      !outside(requestId.offset, requestId.size),
      [idOffsetSlot, idSizeSlot],
      `the request id (offset ${requestId.offset}, size ${requestId.size}) must lie inside the ${headerSize}-byte header`,
    );
    const overlaps = requestId.offset < lengthField.offset + lengthField.size && lengthField.offset < requestId.offset + requestId.size;
    walk.check(!overlaps, [idOffsetSlot, idSizeSlot, lengthOffsetSlot, lengthSizeSlot], 'the request id must not overlap the length field');
  }
  const maxSlot = framed?.get('max_frame');
  const maxFrameBytes = walk.size(maxSlot, d.maxFrameBytes);
  walk.check(maxFrameBytes >= headerSize, [maxSlot], `must be at least framed.header_size (${headerSize} bytes)`);
  return {
    headerSize,
    length: lengthField,
    requestId,
    maxFrameBytes,
    unasked: walk.parse(framed?.get('unasked'), d.unasked, oneOf(UNASKED)),
  };
}

/** A user or group name, or a numeric id, resolved now: a typo is a config error, not a failed start. */
function accountParser(database: AccountDatabase, what: string): Parser<Account | null> {
  return (value) => {
    if (!(typeof value === 'string' && value !== '') && !(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) {
      return { ok: false, message: `expected a ${what} name or a numeric id, got ${describe(value)}` };
    }
    const account = resolveAccount(database, value);
    if (account === null) return { ok: false, message: `no ${what} named ${JSON.stringify(value)} on this host (getent ${database} ${String(value)})` };
    return { ok: true, value: account };
  };
}

function readListen(walk: Walk, slot: Slot): ListenAddress {
  // Only reached with a problem already reported; port 0 never clashes with another listener.
  const fallback: ListenAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 };
  let addressSlot: Slot | undefined = slot;
  let mode: number = DEFAULTS.pool.unixMode;
  let modeSlot: Slot | undefined;
  let ownerSlot: Slot | undefined;
  let groupSlot: Slot | undefined;
  let owner: Account | null = null;
  let group: Account | null = null;
  if (isMap(slot.node)) {
    const entry = walk.section(slot, ['address', 'mode', 'owner', 'group']);
    addressSlot = entry?.require('address', 'host:port or unix:/path');
    modeSlot = entry?.get('mode');
    mode = walk.parse(modeSlot, mode, parseMode);
    ownerSlot = entry?.get('owner');
    groupSlot = entry?.get('group');
    owner = walk.parse(ownerSlot, null, accountParser('passwd', 'user'));
    group = walk.parse(groupSlot, null, accountParser('group', 'group'));
  }
  if (addressSlot === undefined) return fallback;
  const address = walk.parse(addressSlot, fallback, (value) => parseListenAddress(value, mode, owner, group));
  for (const [key, keySlot] of [['mode', modeSlot], ['owner', ownerSlot], ['group', groupSlot]] as const) {
    walk.check(keySlot === undefined || address.kind === 'unix', [keySlot], `${key} applies only to unix: sockets`);
  }
  walk.listeners.push({ address, slot: addressSlot });
  return address;
}

interface ReadServer {
  config: ServerConfig;
  /** Where a bad weight is reported: the weight's value, or the whole server string. */
  weightSlot: Slot;
  /** Where a duplicate name is reported: the name's value, or the address it defaulted from. */
  nameSlot: Slot;
  /** Where a db that does not apply is reported: its value, or the server. */
  dbSlot: Slot;
}

function readServers(walk: Walk, slots: Slot[], poolTls: TlsConfig | null): ReadServer[] {
  const servers: ReadServer[] = [];
  const firstWithName = new Map<string, string>();
  for (const slot of slots) {
    const server = isMap(slot.node) ? readServerObject(walk, slot, poolTls) : readServerString(walk, slot, poolTls);
    if (server === undefined) continue;
    const { name } = server.config;
    const first = firstWithName.get(name);
    if (first === undefined) firstWithName.set(name, slot.path);
    const duplicate = `server name ${JSON.stringify(name)} is already used by ${first}; names must be unique in a pool`;
    walk.check(first === undefined, [server.nameSlot], duplicate);
    servers.push(server);
  }
  return servers;
}

function readServerString(walk: Walk, slot: Slot, poolTls: TlsConfig | null): ReadServer | undefined {
  const parsed = walk.parse<ServerString | null>(slot, null, parseServerString);
  if (parsed === null) return undefined;
  const config: ServerConfig = {
    address: parsed.address,
    name: parsed.name ?? defaultName(parsed.addressText, parsed.address.port),
    weight: parsed.weight ?? DEFAULTS.server.weight,
    username: null,
    password: null,
    db: DEFAULTS.server.db,
    tls: poolTls,
  };
  return { config, weightSlot: slot, nameSlot: slot, dbSlot: slot };
}

function readServerObject(walk: Walk, slot: Slot, poolTls: TlsConfig | null): ReadServer | undefined {
  const server = walk.section(slot, SERVER_KEYS);
  const addressSlot = server?.require('address', 'host:port');
  if (server === undefined || addressSlot === undefined) return undefined;
  // A bad address is reported; the placeholder lets the server's other fields be checked too.
  const address = walk.parse<TcpAddress>(addressSlot, { kind: 'tcp', host: '127.0.0.1', port: 1 }, parseServerAddress);
  const [nameSlot, weightSlot, usernameSlot] = [server.get('name'), server.get('weight'), server.get('username')];
  const unnamed = defaultName(String(walk.plain(addressSlot)).trim(), address.port);
  const username = usernameSlot === undefined ? null : walk.parse(usernameSlot, '', parseString);
  const password = readPassword(walk, server);
  if (!passwordGiven(server)) {
    walk.check(username === null, [usernameSlot], 'username needs a password: add password_file or password_env');
  }
  const config: ServerConfig = {
    address,
    name: walk.parse(nameSlot, unnamed, parseName),
    weight: walk.parse(weightSlot, DEFAULTS.server.weight, wholeNumber(0)),
    username,
    password,
    db: walk.parse(server.get('db'), DEFAULTS.server.db, wholeNumber(0)),
    tls: readTls(walk, server.get('tls'), poolTls),
  };
  return { config, weightSlot: weightSlot ?? addressSlot, nameSlot: nameSlot ?? addressSlot, dbSlot: server.get('db') ?? addressSlot };
}

/**
 * twemproxy's name for an unnamed server, `host:port` as written (just `host` on port 11211), so a
 * ketama pool moved from twemproxy keeps every key on the same server.
 */
function defaultName(hostPort: string, port: number): string {
  return twemproxyServerName({ host: hostPort.slice(0, hostPort.lastIndexOf(':')), port });
}

/**
 * The pool's client_auth: what clients must present to poolside itself. Absent (or written with no
 * value) is null. The password follows the servers' rules (readPassword) but is required here.
 */
function readClientAuth(walk: Walk, slot: Slot | undefined): PoolConfig['clientAuth'] {
  if (slot === undefined) return null;
  const auth = walk.section(slot, CLIENT_AUTH_KEYS);
  if (auth === undefined) return null;
  const usernameSlot = auth.get('username');
  const username = usernameSlot === undefined ? null : walk.parse(usernameSlot, '', parseString);
  if (!passwordGiven(auth)) {
    walk.at(offsetOf(slot.key ?? slot.node), slot.path, 'needs a password: add password_file or password_env');
    return null;
  }
  const password = readPassword(walk, auth);
  if (password === null || password === '' || username === '') return null;
  // AUTH <password> is AUTH default <password>, so naming the default user changes nothing.
  return { username: username === REDIS_DEFAULT_USER ? null : username, password };
}

/**
 * A `tls` value: absent = `inherited` (the pool's, for a server), `false` = plain TCP, `true` =
 * TLS with Node's defaults (system CAs), or a mapping. A server's mapping replaces the pool's whole.
 * The files are read now (readTlsFiles), relative to the config file like password files.
 */
function readTls(walk: Walk, slot: Slot | undefined, inherited: TlsConfig | null): TlsConfig | null {
  if (slot === undefined) return inherited;
  const defaults: TlsConfig = { caFile: null, certFile: null, keyFile: null, ca: null, cert: null, key: null, servername: null, rejectUnauthorized: true };
  if (isScalar(slot.node) && typeof slot.node.value === 'boolean') return slot.node.value ? defaults : null;
  const tls = walk.section(slot, TLS_KEYS);
  if (tls === undefined) return null;
  const path = (field: TlsFileField): string | null => {
    const given = walk.parse(tls.get(field), '', parseString);
    return given === '' ? null : isAbsolute(given) ? given : resolve(dirname(resolve(walk.file)), given);
  };
  const files = { caFile: path('ca_file'), certFile: path('cert_file'), keyFile: path('key_file') };
  const { material, problems } = readTlsFiles(files, walk.readFile);
  for (const problem of problems) {
    const at = problem.field === null ? undefined : tls.get(problem.field);
    if (at !== undefined) walk.report(at, problem.message);
    else walk.at(offsetOf(slot.key ?? slot.node), slot.path, problem.message);
  }
  const servernameSlot = tls.get('servername');
  return {
    ...files,
    ...material,
    servername: servernameSlot === undefined ? null : walk.parse(servernameSlot, '', parseName),
    rejectUnauthorized: walk.parse(tls.get('reject_unauthorized'), true, parseBoolean),
  };
}

function passwordGiven(section: Section): boolean {
  return section.get('password_file') !== undefined || section.get('password_env') !== undefined;
}

/** Resolves password_file / password_env. Messages name the file or the variable, never the secret. */
function readPassword(walk: Walk, server: Section): string | null {
  const fileSlot = server.get('password_file');
  const envSlot = server.get('password_env');
  if (fileSlot !== undefined && envSlot !== undefined) {
    walk.report(envSlot, 'give password_file or password_env, not both');
    return null;
  }
  if (fileSlot !== undefined) {
    const given = walk.parse(fileSlot, '', parseString);
    if (given === '') return null;
    // Relative to the config file, so a config and its secrets can move together.
    const path = isAbsolute(given) ? given : resolve(dirname(resolve(walk.file)), given);
    let content: string;
    try {
      content = walk.readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      walk.report(fileSlot, `cannot read password file ${path}${code === undefined ? '' : ` (${code})`}`);
      return null;
    }
    // `echo secret > file` leaves a newline that is not part of the password.
    const password = content.replace(/(?:\r?\n)+$/, '');
    walk.check(password !== '', [fileSlot], `password file ${path} is empty`);
    return password;
  }
  if (envSlot !== undefined) {
    const name = walk.parse(envSlot, '', parseString);
    if (name === '') return null;
    const password = walk.env[name];
    walk.check(password !== undefined, [envSlot], `environment variable ${name} is not set`);
    walk.check(password !== '', [envSlot], `environment variable ${name} is empty`);
    return password ?? null;
  }
  return null;
}

function checkListenerClashes(walk: Walk): void {
  walk.listeners.forEach(({ address, slot }, i) => {
    if (slot === null) return;
    const first = walk.listeners.slice(0, i).find((earlier) => listenersClash(earlier.address, address));
    if (first === undefined) return;
    let owner = `admin.listen (the default ${DEFAULTS.admin.listen}; set admin.listen or admin: false)`;
    if (first.slot !== null) {
      const { line, col } = walk.lines.linePos(offsetOf(first.slot.node));
      owner = `${first.slot.path} (line ${line}:${col})`;
    }
    walk.report(slot, `${formatAddress(address)} is already used by ${owner}`);
  });
}
