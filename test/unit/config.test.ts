import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { ConfigError, formatProblem, loadConfig, parseConfig } from '../../src/config/load.js';
import type { ConfigProblem } from '../../src/config/load.js';
import { DEFAULTS } from '../../src/config/schema.js';
import type { Config, PoolConfig } from '../../src/config/schema.js';
import {
  editDistance,
  listenersClash,
  parseDuration,
  parseHashTag,
  parseMode,
  parsePercent,
  parseServerString,
  parseSize,
  redactCredentials,
  parseTcpAddress,
  suggest,
} from '../../src/config/validate.js';

/** One string per line, so a test reads with its line numbers. */
const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** 1-based line and column of the `nth` occurrence of `needle`, to check where a problem points. */
function at(text: string, needle: string, nth = 0): { line: number; column: number } {
  let offset = -1;
  for (let i = 0; i <= nth; i++) {
    offset = text.indexOf(needle, offset + 1);
    if (offset < 0) throw new Error(`${JSON.stringify(needle)} occurs fewer than ${nth + 1} times`);
  }
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

interface Secrets {
  env?: NodeJS.ProcessEnv;
  files?: Record<string, string>;
}

function fakeReadFile(files: Record<string, string>): (path: string) => string {
  return (path) => {
    const content = files[path];
    if (content === undefined) throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
    return content;
  };
}

function parse(text: string, secrets: Secrets = {}): Config {
  return parseConfig(text, 'config.yaml', secrets.env ?? {}, fakeReadFile(secrets.files ?? {}));
}

function problems(text: string, secrets: Secrets = {}): ConfigProblem[] {
  try {
    parse(text, secrets);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error('expected a ConfigError, the config was accepted');
}

/** A problem with this path and message, optionally at this position (from `at`). */
const problem = (path: string, message: string, where: { line: number; column: number } | object = {}) =>
  expect.objectContaining({ ...where, path, message });

/** A valid pool around `lines` (indented at pool level), for tests about one option. */
const pool = (...lines: string[]): string =>
  yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:6380', '    servers: [127.0.0.1:6379]', ...lines);

const onlyPool = (config: Config): PoolConfig => {
  expect(config.pools).toHaveLength(1);
  return config.pools[0];
};

describe('parseConfig: a good config', () => {
  it('fills every default around the three required pool keys', () => {
    const config = parse(pool());
    expect(config.file).toBe(resolve('config.yaml'));
    expect(config.admin).toEqual({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9121 } });
    expect(config.log).toEqual({ level: 'info' });
    expect(config.shutdown).toEqual(DEFAULTS.shutdown);
    const d = DEFAULTS.pool;
    expect(onlyPool(config)).toEqual({
      name: 'cache',
      protocol: 'redis',
      listen: [{ kind: 'tcp', host: '127.0.0.1', port: 6380 }],
      servers: [
        {
          address: { kind: 'tcp', host: '127.0.0.1', port: 6379 },
          name: '127.0.0.1:6379',
          weight: 1,
          username: null,
          password: null,
          db: 0,
          tls: null,
        },
      ],
      clientAuth: null,
      routing: d.routing,
      ketama: d.ketama,
      cluster: d.cluster,
      connections: d.connections,
      exclusive: d.exclusive,
      lease: d.lease,
      queue: d.queue,
      connect: d.connect,
      heartbeat: d.heartbeat,
      idleTimeoutMs: d.idleTimeoutMs,
      maxLifetimeMs: d.maxLifetimeMs,
      eject: d.eject,
      requestTimeoutMs: d.requestTimeoutMs,
      clients: d.clients,
      maxRequestBytes: d.maxRequestBytes,
      maxItemBytes: d.maxItemBytes,
      commands: d.commands,
      tcp: d.tcp,
      framed: null,
    } satisfies PoolConfig);
  });

  it('reads every option when all are set to non-default values', () => {
    const text = yaml(
      'admin: { listen: "0.0.0.0:0" }',
      'log: { level: debug }',
      'shutdown: { delay: 5s, timeout: 30s }',
      'pools:',
      '  cache_2:',
      '    protocol: redis',
      '    listen:',
      '      - "[::1]:6390"',
      '      - unix:/run/poolside/cache.sock',
      '      - { address: "unix:/tmp/x.sock", mode: "0600", owner: root, group: 65534 }',
      '    servers:',
      '      - { address: 10.0.0.5:6379, name: redis-a, weight: 3, username: app, password_env: REDIS_PW, db: 2 }',
      '      - { address: "redis-b.internal:6380", password_file: /etc/poolside/pw }',
      '      - 10.0.0.7:6379:2 redis-c',
      '    client_auth: { username: app, password_env: CLIENT_PW }',
      '    routing: ketama',
      '    ketama: { hash: murmur, on_ejection: rehash, hash_tag: "{}" }',
      '    connections: { min: 0, max: 16 }',
      '    exclusive: { max: 4, idle_timeout: 30s }',
      '    lease: exclusive',
      '    queue: { max: 0, timeout: 250ms }',
      '    connect: { timeout: 2s, backoff: { initial: 50ms, max: 1m } }',
      '    heartbeat: { interval: 10s, timeout: 500ms, misses: 5, jitter: 0.1 }',
      '    idle_timeout: 0',
      '    max_lifetime: 2h',
      '    eject: { after_failures: 1, for: 30s }',
      '    request_timeout: 0s',
      '    clients: { max: 50, output_buffer: { soft: 64kb, hard: 2mb, soft_seconds: 3 }, input_buffer: { soft: 2mb, hard: 600mb }, idle_timeout: 1m }',
      '    max_request_size: 1048576',
      '    commands: { allow: [config get, "FUNCTION|FLUSH"], deny: KEYS }',
    );
    const config = parse(text, { env: { REDIS_PW: 's3cret', CLIENT_PW: 'letmein' }, files: { '/etc/poolside/pw': 'filepw\n' } });
    expect(config.admin).toEqual({ listen: { kind: 'tcp', host: '0.0.0.0', port: 0 } });
    expect(config.log.level).toBe('debug');
    expect(config.shutdown).toEqual({ delayMs: 5000, timeoutMs: 30_000 });
    expect(onlyPool(config)).toEqual({
      name: 'cache_2',
      protocol: 'redis',
      listen: [
        { kind: 'tcp', host: '::1', port: 6390 },
        { kind: 'unix', path: '/run/poolside/cache.sock', mode: 0o660, owner: null, group: null },
        { kind: 'unix', path: '/tmp/x.sock', mode: 0o600, owner: { name: 'root', id: 0 }, group: { name: '65534', id: 65534 } },
      ],
      servers: [
        {
          address: { kind: 'tcp', host: '10.0.0.5', port: 6379 },
          name: 'redis-a',
          weight: 3,
          username: 'app',
          password: 's3cret',
          db: 2,
          tls: null,
        },
        {
          address: { kind: 'tcp', host: 'redis-b.internal', port: 6380 },
          name: 'redis-b.internal:6380',
          weight: 1,
          username: null,
          password: 'filepw',
          db: 0,
          tls: null,
        },
        {
          address: { kind: 'tcp', host: '10.0.0.7', port: 6379 },
          name: 'redis-c',
          weight: 2,
          username: null,
          password: null,
          db: 0,
          tls: null,
        },
      ],
      clientAuth: { username: 'app', password: 'letmein' },
      routing: 'ketama',
      ketama: { hash: 'murmur', onEjection: 'rehash', hashTag: '{}' },
      cluster: DEFAULTS.pool.cluster,
      connections: { min: 0, max: 16 },
      exclusive: { max: 4, idleTimeoutMs: 30_000 },
      lease: 'exclusive',
      queue: { max: 0, timeoutMs: 250 },
      connect: { timeoutMs: 2000, backoff: { initialMs: 50, maxMs: 60_000 } },
      heartbeat: { intervalMs: 10_000, timeoutMs: 500, misses: 5, jitter: 0.1, probe: null, answer: null },
      idleTimeoutMs: 0,
      maxLifetimeMs: 7_200_000,
      eject: { afterFailures: 1, forMs: 30_000 },
      requestTimeoutMs: 0,
      clients: { max: 50, outputSoftBytes: 65_536, outputHardBytes: 2 * 1024 * 1024, outputSoftMs: 3000, inputSoftBytes: 2 << 20, inputHardBytes: 600 << 20, idleTimeoutMs: 60_000 },
      maxRequestBytes: 1_048_576,
      maxItemBytes: 1 << 20,
      commands: { allow: ['CONFIG GET', 'FUNCTION FLUSH'], deny: ['KEYS'] },
      tcp: { reset: null },
      framed: null,
    } satisfies PoolConfig);
  });

  it('keeps pools in file order', () => {
    const text = yaml(
      'pools:',
      '  b: { protocol: redis, listen: 127.0.0.1:7001, servers: [127.0.0.1:6379] }',
      '  a: { protocol: redis, listen: 127.0.0.1:7002, servers: [127.0.0.1:6379] }',
    );
    expect(parse(text).pools.map((p) => p.name)).toEqual(['b', 'a']);
  });

  it('turns the admin endpoint off with admin: false and keeps the default with admin: true', () => {
    expect(parse(yaml('admin: false', pool())).admin).toBeNull();
    expect(parse(yaml('admin: true', pool())).admin).toEqual({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9121 } });
  });

  it('turns heartbeats off with heartbeat: false or interval 0, skipping the timeout check', () => {
    expect(onlyPool(parse(pool('    heartbeat: false'))).heartbeat.intervalMs).toBe(0);
    const off = onlyPool(parse(pool('    heartbeat: { interval: 0, timeout: 10s }'))).heartbeat;
    expect(off).toMatchObject({ intervalMs: 0, timeoutMs: 10_000 });
  });

  it('treats a key with no value as absent, so commented-out children leave the defaults', () => {
    const text = pool('    exclusive:', '      # max: 64', '    idle_timeout:');
    const p = onlyPool(parse(text));
    expect(p.exclusive).toEqual(DEFAULTS.pool.exclusive);
    expect(p.idleTimeoutMs).toBe(DEFAULTS.pool.idleTimeoutMs);
  });

  it('follows YAML aliases', () => {
    const text = pool('    idle_timeout: &long 10m', '    max_lifetime: *long');
    expect(onlyPool(parse(text))).toMatchObject({ idleTimeoutMs: 600_000, maxLifetimeMs: 600_000 });
  });

  it('reads an unquoted leading-zero mode as octal, as the user meant', () => {
    const text = yaml(
      'pools:',
      '  cache:',
      '    protocol: redis',
      '    listen: [{ address: "unix:/tmp/a.sock", mode: 0600 }, { address: "unix:/tmp/b.sock", mode: 0o640 }]',
      '    servers: [127.0.0.1:6379]',
    );
    expect(onlyPool(parse(text)).listen.map((l) => (l.kind === 'unix' ? l.mode : -1))).toEqual([0o600, 0o640]);
  });
});

describe('parseConfig: shutdown and idle clients', () => {
  it('reads shutdown_grace as the old name of shutdown.timeout, and refuses both', () => {
    expect(parse(yaml('shutdown_grace: 30s', pool())).shutdown).toEqual({ delayMs: 0, timeoutMs: 30_000 });
    const text = yaml('shutdown_grace: 30s', 'shutdown: { timeout: 20s }', pool());
    expect(problems(text)).toEqual([
      problem('shutdown_grace', 'shutdown_grace is the old name of shutdown.timeout; give only shutdown.timeout', at(text, '30s')),
    ]);
  });

  it('refuses a shutdown.delay that is not below shutdown.timeout', () => {
    const text = yaml('shutdown: { delay: 10s, timeout: 5s }', pool());
    expect(problems(text)).toEqual([
      problem('shutdown.delay', 'shutdown.delay (10000ms) must be less than shutdown.timeout (5000ms): the timeout counts from the signal'),
    ]);
  });

  it('reads clients.idle_timeout, 0 (never) by default', () => {
    expect(onlyPool(parse(pool())).clients.idleTimeoutMs).toBe(0);
    expect(onlyPool(parse(pool('    clients: { idle_timeout: 5m }'))).clients.idleTimeoutMs).toBe(300_000);
  });
});

describe('problems never quote a password', () => {
  it('redacts the credentials of a server written as a URL', () => {
    const text = 'pools:\n  p:\n    protocol: redis\n    listen: 127.0.0.1:0\n    servers: ["redis://default:S3cretPw@10.0.0.1:6379"]\n';
    let problems: string[] = [];
    try {
      parseConfig(text, 'x.yaml', {});
    } catch (err) {
      problems = (err as ConfigError).problems.map(formatProblem);
    }
    expect(problems.join('\n')).toContain('pools.p.servers[0]');
    expect(problems.join('\n')).toContain('redis://***@10.0.0.1:6379');
    expect(problems.join('\n')).not.toContain('S3cretPw');
  });

  it('redacts user:pass@ with or without a scheme, and leaves other values alone', () => {
    expect(redactCredentials('"default:pw@10.0.0.1:6379"')).toBe('"***@10.0.0.1:6379"');
    expect(redactCredentials('rediss://:p@ss@h:6380')).toBe('rediss://***@h:6380');
    expect(redactCredentials('expected host:port, got "10.0.0.5"')).toBe('expected host:port, got "10.0.0.5"');
    expect(redactCredentials('unix:/run/poolside.sock')).toBe('unix:/run/poolside.sock');
  });
});

describe('config.example.yaml', () => {
  it('loads, and shows the defaults from schema.ts', () => {
    const config = loadConfig(new URL('../../config.example.yaml', import.meta.url).pathname);
    expect(config.admin).toEqual({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9121 } });
    expect(config.log.level).toBe(DEFAULTS.log.level);
    expect(config.shutdown).toEqual(DEFAULTS.shutdown);
    const { name, protocol, listen, servers, framed, ...options } = onlyPool(config);
    expect({ name, protocol, framed }).toEqual({ name: 'cache', protocol: 'redis', framed: null });
    expect(listen).toEqual([
      { kind: 'tcp', host: '127.0.0.1', port: 6380 },
      { kind: 'unix', path: '/tmp/poolside-cache.sock', mode: DEFAULTS.pool.unixMode, owner: null, group: null },
    ]);
    expect(servers.map((s) => [s.name, s.weight, s.db])).toEqual([['127.0.0.1:6379', 1, 0]]);
    const { unixMode: _unixMode, ...poolDefaults } = DEFAULTS.pool;
    expect(options).toEqual(poolDefaults);
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const blocks = [...doc.matchAll(/```(yaml)?\n([\s\S]*?)```/g)].map((m) => ({ yaml: m[1] === 'yaml', text: m[2] }));

  it('has examples that load', () => {
    const examples = blocks.filter((b) => b.yaml && /^(admin|pools):/.test(b.text));
    expect(examples.length).toBeGreaterThanOrEqual(3);
    for (const { text } of examples) expect(() => parse(text, { env: { REDIS_PASSWORD: 'pw', POOLSIDE_PASSWORD: 'pw' } })).not.toThrow();
  });

  it('shows the messages the loader really gives for its broken example', () => {
    const i = blocks.findIndex((b) => b.yaml && b.text.startsWith('log:'));
    expect(i).toBeGreaterThan(0);
    expect(problems(blocks[i].text).map(formatProblem).join('\n')).toBe(blocks[i + 1].text.trimEnd());
  });
});

describe('loadConfig', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir !== null) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  it('reads a real file and resolves a relative password_file next to it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'poolside-config-'));
    const file = join(dir, 'poolside.yaml');
    await writeFile(join(dir, 'redis.pw'), 'from-disk\n');
    await writeFile(
      file,
      yaml(
        'pools:',
        '  cache:',
        '    protocol: redis',
        '    listen: 127.0.0.1:0',
        '    servers:',
        '      - { address: 127.0.0.1:6379, password_file: redis.pw }',
      ),
    );
    const config = loadConfig(file);
    expect(config.file).toBe(file);
    expect(onlyPool(config).servers[0].password).toBe('from-disk');
  });

  it('names the file it was given in problems', async () => {
    dir = await mkdtemp(join(tmpdir(), 'poolside-config-'));
    const file = join(dir, 'bad.yaml');
    await writeFile(file, yaml('pools: {}'));
    expect(() => loadConfig(file)).toThrow(`${file}:1:8 pools: needs at least one pool`);
  });
});

describe('parseConfig: where problems point', () => {
  it('gives file:line:column path: message, as in the docs', () => {
    const text = yaml(
      'admin:',
      '  listen: 127.0.0.1:9121',
      'pools:',
      '  cache:',
      '    protocol: redis',
      '    listen: 127.0.0.1:6380',
      '    servers: [{ address: 10.0.0.4:6379 }, { address: 10.0.0.5 }]',
    );
    const error = (() => {
      try {
        parse(text);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('CONFIG_ERROR');
    const { line, column } = at(text, '10.0.0.5 }');
    expect({ line, column }).toEqual({ line: 7, column: 54 });
    expect((error as ConfigError).message).toBe(
      'config.yaml:7:54 pools.cache.servers[1].address: expected host:port, got "10.0.0.5"',
    );
    expect((error as ConfigError).problems).toEqual([
      {
        file: 'config.yaml',
        line,
        column,
        path: 'pools.cache.servers[1].address',
        message: 'expected host:port, got "10.0.0.5"',
      },
    ]);
  });

  it('reports YAML syntax errors with their position and no path', () => {
    const text = yaml('pools:', '  cache:', '    listen: [127.0.0.1:6380', '    protocol: redis');
    const found = problems(text);
    expect(found[0]).toMatchObject({ path: '', line: 4, column: 5, message: expect.stringMatching(/flow sequence/i) });
  });

  it('lists syntax errors first and still reports the problems yaml could read past', () => {
    const text = yaml('log: { level: loud }', pool(), '---', 'x: 1');
    expect(problems(text).map((p) => [p.line, p.path, p.message])).toEqual([
      [at(text, '---').line, '', 'a config file holds one YAML document; remove this ---'],
      [1, 'log.level', 'expected one of debug, info, warn, error, got "loud"'],
    ]);
  });

  it('reports duplicate keys', () => {
    const text = pool('    routing: failover', '    routing: ketama');
    const duplicate = expect.objectContaining({ ...at(text, 'routing', 1), message: expect.stringMatching(/unique/) });
    expect(problems(text)).toContainEqual(duplicate);
  });

  it('reports an unknown key at the key, suggesting the close one', () => {
    const text = pool('    conections: { min: 1 }');
    expect(problems(text)).toEqual([
      {
        file: 'config.yaml',
        ...at(text, 'conections'),
        path: 'pools.cache.conections',
        message: 'unknown key; did you mean connections?',
      },
    ]);
  });

  it('suggests the snake_case key for a camelCase one', () => {
    const text = pool('    idleTimeout: 5m');
    expect(problems(text)[0].message).toBe('unknown key; did you mean idle_timeout?');
  });

  it('reports an unknown key with no suggestion when nothing is close', () => {
    const text = yaml('tls: true', pool());
    expect(problems(text)).toEqual([{ file: 'config.yaml', line: 1, column: 1, path: 'tls', message: 'unknown key' }]);
  });

  it('reports a missing required key at the key of the mapping that lacks it', () => {
    const text = yaml('pools:', '  cache:', '    listen: 127.0.0.1:6380', '    servers: [127.0.0.1:6379]');
    expect(problems(text)).toEqual([
      {
        file: 'config.yaml',
        ...at(text, 'cache'),
        path: 'pools.cache.protocol',
        message: 'is required (redis | memcached | framed | tcp)',
      },
    ]);
  });

  it('reports an empty file', () => {
    expect(problems('')).toEqual([
      { file: 'config.yaml', line: 1, column: 1, path: 'pools', message: 'is required (the config is empty; it needs at least one pool)' },
    ]);
  });

  it('reports a wrong type where a mapping is expected', () => {
    const text = pool('    connections: 8');
    expect(problems(text)).toEqual([
      problem('pools.cache.connections', 'expected a mapping with keys min, max, got 8', at(text, '8\n')),
    ]);
  });

  it('reports a bad enum value with a suggestion', () => {
    const text = pool('    routing: ketamma');
    expect(problems(text)).toEqual([
      problem('pools.cache.routing', 'expected one of failover, ketama, cluster, got "ketamma"; did you mean ketama?', at(text, 'ketamma')),
    ]);
  });


  it('reads routing: cluster with its cluster section, and refuses what a cluster cannot have', () => {
    const config = onlyPool(parse(pool('    routing: cluster', '    cluster: { refresh_interval: 2s, max_redirects: 3, read_from: prefer_replica }')));
    expect(config.routing).toBe('cluster');
    expect(config.cluster).toEqual({ refreshIntervalMs: 2000, maxRedirects: 3, readFrom: 'prefer_replica' });
    expect(onlyPool(parse(pool('    routing: cluster'))).cluster).toEqual(DEFAULTS.pool.cluster);

    const mc = yaml('pools:', '  mc:', '    protocol: memcached', '    listen: 127.0.0.1:11212', '    servers: [127.0.0.1:11211]', '    routing: cluster');
    expect(problems(mc)).toEqual([problem('pools.mc.routing', 'routing: cluster is Redis Cluster: it needs protocol redis (this pool is memcached)', at(mc, 'cluster'))]);
    const ketama = pool('    routing: cluster', '    ketama: { hash_tag: "{}" }');
    expect(problems(ketama)).toEqual([
      problem('pools.cache.ketama', 'ketama does not apply to routing: cluster (keys go by Redis Cluster hash slot, {hash tags} included)', at(ketama, '{ hash_tag')),
    ]);
    const db = yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:6380', '    routing: cluster', '    servers:', '      - { address: 127.0.0.1:7000, db: 2 }');
    expect(problems(db)).toEqual([problem('pools.cache.servers[0].db', 'a Redis Cluster has only database 0: db must be 0 for routing: cluster', at(db, '2 }'))]);
    const misplaced = pool('    cluster: { max_redirects: 2 }');
    expect(problems(misplaced)).toEqual([problem('pools.cache.cluster', 'cluster applies only to routing: cluster (this pool routes by failover)', at(misplaced, '{ max_redirects'))]);
    const bad = pool('    routing: cluster', '    cluster: { read_from: replicas }');
    expect(problems(bad).map((p) => [p.path, p.message])).toEqual([['pools.cache.cluster.read_from', 'expected one of primary, replica, prefer_replica, got "replicas"; did you mean replica?']]);
  });

  it('reads max_item_size for memcached pools and refuses what only redis pools have', () => {
    const ok = yaml('pools:', '  mc:', '    protocol: memcached', '    listen: 127.0.0.1:11212', '    servers: [127.0.0.1:11211]', '    max_item_size: 2mb');
    expect(parseConfig(ok, 'test.yaml').pools[0].maxItemBytes).toBe(2 << 20);
    const defaults = yaml('pools:', '  mc:', '    protocol: memcached', '    listen: 127.0.0.1:11212', '    servers: [127.0.0.1:11211]');
    expect(parseConfig(defaults, 'test.yaml').pools[0].maxItemBytes).toBe(1 << 20);
    const redis = yaml('pools:', '  r:', '    protocol: redis', '    listen: 127.0.0.1:6380', '    servers: [127.0.0.1:6379]', '    max_item_size: 2mb');
    expect(problems(redis)).toEqual([problem('pools.r.max_item_size', 'max_item_size applies only to memcached pools', at(redis, '2mb'))]);
    const db = yaml('pools:', '  mc:', '    protocol: memcached', '    listen: 127.0.0.1:11212', '    servers: [{ address: 127.0.0.1:11211, db: 2 }]');
    expect(problems(db).map((p) => p.message)).toEqual(['db, username and password apply only to redis pools']);
  });

  it('reports a bad pool name at its key', () => {
    const text = yaml('pools:', '  "my cache": { protocol: redis, listen: 127.0.0.1:6380, servers: [127.0.0.1:6379] }');
    expect(problems(text)).toEqual([
      problem('pools["my cache"]', 'pool names may contain only letters, digits, _ and -', at(text, '"my cache"')),
    ]);
  });

  it('reports an empty servers list and an empty pools mapping', () => {
    expect(problems(yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:6380', '    servers: []'))).toEqual([
      problem('pools.cache.servers', 'needs at least one server'),
    ]);
    expect(problems(yaml('pools: {}'))).toEqual([problem('pools', 'needs at least one pool')]);
  });
});

describe('parseConfig: many problems at once', () => {
  it('reports every problem, sorted by position, one line each in the message', () => {
    const text = yaml(
      'log: { level: loud }',
      'shutdown_grace: 10',
      'pools:',
      '  cache:',
      '    protocol: redis',
      '    listen: [127.0.0.1:6380, "unix:relative.sock"]',
      '    servers:',
      '      - 127.0.0.1:6379',
      '      - 10.0.0.5',
      '      - "::1:6379"',
      '    connections: { min: 9, max: 4 }',
      '    heartbeat: { interval: 1s, timeout: 2s, misses: 0, jitter: 20 }',
      '    idle_timeout: 250us',
      '    clients: { max: 0, output_buffer: { soft: 2mb, hard: 1mb } }',
      '    max_request_size: lots',
      '    lease: exclusive',
      '    exclusive: { max: 0 }',
      '  other: { protocol: memcache, listen: 127.0.0.1:6380, servers: [127.0.0.1:1] }',
    );
    const found = problems(text);
    expect(found.map((p) => p.path)).toEqual([
      'log.level',
      'shutdown_grace',
      'pools.cache.listen[1]',
      'pools.cache.servers[1]',
      'pools.cache.servers[2]',
      'pools.cache.connections.min',
      'pools.cache.heartbeat.timeout',
      'pools.cache.heartbeat.misses',
      'pools.cache.heartbeat.jitter',
      'pools.cache.idle_timeout',
      'pools.cache.clients.max',
      'pools.cache.clients.output_buffer.hard',
      'pools.cache.max_request_size',
      'pools.cache.lease',
      'pools.other.protocol',
      'pools.other.listen',
    ]);
    const sorted = [...found].sort((a, b) => a.line - b.line || a.column - b.column);
    expect(found).toEqual(sorted);
    let error: unknown;
    try {
      parse(text);
    } catch (e) {
      error = e;
    }
    expect((error as Error).message.split('\n')).toEqual(found.map(formatProblem));
  });

  it('does not compare against a value that was itself wrong', () => {
    // max: 0 is reported; min: 2 <= max must not then be checked against the fallback.
    const text = pool('    connections: { min: 9, max: 0 }');
    expect(problems(text)).toEqual([problem('pools.cache.connections.max', 'must be at least 1, got 0')]);
  });

  it('still checks the rest of a server whose address is wrong', () => {
    const text = pool().replace('[127.0.0.1:6379]', '[{ address: "h:0", weight: -1 }]');
    expect(problems(text).map((p) => p.path)).toEqual(['pools.cache.servers[0].address', 'pools.cache.servers[0].weight']);
  });
});

describe('parseConfig: range rules', () => {
  it.each([
    ['    connections: { min: 3, max: 2 }', 'pools.cache.connections.min', 'connections.min (3) must not exceed connections.max (2)'],
    ['    connections: { max: 0 }', 'pools.cache.connections.max', 'must be at least 1, got 0'],
    [
      '    heartbeat: { interval: 1s, timeout: 1s }',
      'pools.cache.heartbeat.timeout',
      'heartbeat.timeout (1000ms) must be less than heartbeat.interval (1000ms)',
    ],
    ['    heartbeat: { misses: 0 }', 'pools.cache.heartbeat.misses', 'must be at least 1, got 0'],
    ['    heartbeat: { jitter: 100% }', 'pools.cache.heartbeat.jitter', 'must be less than 100%'],
    ['    queue: { max: -1 }', 'pools.cache.queue.max', 'must be at least 0, got -1'],
    ['    queue: { timeout: 0 }', 'pools.cache.queue.timeout', 'must be greater than 0'],
    [
      '    connect: { backoff: { initial: 10s } }',
      'pools.cache.connect.backoff.initial',
      'connect.backoff.max (5000ms) must be at least connect.backoff.initial (10000ms)',
    ],
    ['    eject: { after_failures: 0 }', 'pools.cache.eject.after_failures', 'must be at least 1, got 0'],
    [
      '    clients: { output_buffer: { soft: 128mb } }',
      'pools.cache.clients.output_buffer.soft',
      'clients.output_buffer.hard (67108864 bytes) must be at least soft (134217728 bytes)',
    ],
    [
      '    clients: { input_buffer: { hard: 4mb } }',
      'pools.cache.clients.input_buffer.hard',
      'clients.input_buffer.hard (4194304 bytes) must be at least soft (8388608 bytes)',
    ],
    ['    clients: { output_buffer: { soft_seconds: 0 } }', 'pools.cache.clients.output_buffer.soft_seconds', 'must be at least 1, got 0'],
    ['    max_request_size: 0', 'pools.cache.max_request_size', 'must be greater than 0'],
    ['    connections: { max: 2.5 }', 'pools.cache.connections.max', 'expected a whole number, got 2.5'],
    ['    connections: { max: "8" }', 'pools.cache.connections.max', 'expected a whole number, got "8"'],
    ['    request_timeout: 5', 'pools.cache.request_timeout', 'add a unit (ms, s, m or h), e.g. "5ms" or "5s"; got the plain number 5'],
    [
      '    ketama: { hash_tag: {} }',
      'pools.cache.ketama.hash_tag',
      'expected two characters such as "{}", or "" for none, got a mapping (quote it: an unquoted {} is a YAML mapping)',
    ],
  ])('%s → %s: %s', (line, path, message) => {
    expect(problems(pool(line))).toEqual([problem(path, message)]);
  });

  it('needs every weight to be at least 1 with ketama routing, but allows 0 with failover', () => {
    const servers = ['    servers:', '      - 127.0.0.1:6379:1 a', '      - { address: 127.0.0.1:6380, weight: 0 }'];
    const base = ['pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:7000'];
    expect(onlyPool(parse(yaml(...base, ...servers))).servers[1].weight).toBe(0);
    const text = yaml(...base, ...servers, '    routing: ketama');
    expect(problems(text)).toEqual([
      problem('pools.cache.servers[1].weight', 'routing: ketama needs every weight to be at least 1, got 0', at(text, '0 }')),
    ]);
  });

  it('refuses lease: exclusive with no exclusive connections', () => {
    expect(problems(pool('    lease: exclusive', '    exclusive: { max: 0 }'))).toEqual([
      problem('pools.cache.lease', 'lease: exclusive needs exclusive.max of at least 1'),
    ]);
  });
});

describe('parseConfig: servers', () => {
  const servers = (...lines: string[]): string =>
    yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:7000', '    servers:', ...lines.map((l) => `      - ${l}`));

  it('reads twemproxy-style strings: host:port, host:port:weight and host:port:weight name', () => {
    const config = parse(servers('127.0.0.1:6379', 'redis-b:6380:3', '"[::1]:6381:2 v6"', '10.0.0.1:6379:1 redis-a'));
    expect(onlyPool(config).servers.map(({ address, name, weight }) => ({ address, name, weight }))).toEqual([
      { address: { kind: 'tcp', host: '127.0.0.1', port: 6379 }, name: '127.0.0.1:6379', weight: 1 },
      { address: { kind: 'tcp', host: 'redis-b', port: 6380 }, name: 'redis-b:6380', weight: 3 },
      { address: { kind: 'tcp', host: '::1', port: 6381 }, name: 'v6', weight: 2 },
      { address: { kind: 'tcp', host: '10.0.0.1', port: 6379 }, name: 'redis-a', weight: 1 },
    ]);
  });

  it('names an unnamed server as twemproxy does: the address as written, the host alone on port 11211', () => {
    const config = parse(servers('"[::1]:6379"', 'Cache-1:11211:2', '{ address: cache-2:11211 }'));
    expect(onlyPool(config).servers.map((s) => s.name)).toEqual(['[::1]:6379', 'Cache-1', 'cache-2']);
  });

  it('needs server names to be unique within a pool, the default names included', () => {
    const text = servers('127.0.0.1:6379', '{ address: 127.0.0.2:6379, name: "127.0.0.1:6379" }');
    expect(problems(text)).toEqual([
      expect.objectContaining({
        ...at(text, '"127.0.0.1:6379"'),
        path: 'pools.cache.servers[1].name',
        message: 'server name "127.0.0.1:6379" is already used by pools.cache.servers[0]; names must be unique in a pool',
      }),
    ]);
  });

  it.each([
    ['10.0.0.5', 'expected host:port, got "10.0.0.5"'],
    ['127.0.0.1:0', 'port 0 is out of range 1..65535 in "127.0.0.1:0"'],
    ['127.0.0.1:65536', 'port 65536 is out of range 1..65535 in "127.0.0.1:65536"'],
    ['127.0.0.1:06379', 'expected host:port, got "127.0.0.1:06379"'],
    ['"::1:6379"', 'IPv6 addresses need brackets, e.g. "[::1]:6379", got "::1:6379"'],
    ['"[::g]:6379"', '"::g" is not a valid IPv6 address in "[::g]:6379"'],
    ['300.1.1.1:6379', '"300.1.1.1" is not a valid IPv4 address or hostname in "300.1.1.1:6379"'],
    ['bad_host!:6379', '"bad_host!" is not a valid IPv4 address or hostname in "bad_host!:6379"'],
    ['127.0.0.1:6379:x', 'expected "host:port:weight name" with a whole-number weight, got "127.0.0.1:6379:x"'],
    ['"unix:/tmp/redis.sock"', 'servers must be TCP host:port addresses, got "unix:/tmp/redis.sock"'],
    ['6379', 'expected host:port, "host:port:weight name" or a mapping, got 6379'],
  ])('rejects %s', (server, message) => {
    expect(problems(servers(server))).toEqual([expect.objectContaining({ path: 'pools.cache.servers[0]', message })]);
  });

  it('rejects a weight inside an object address, and unknown server keys', () => {
    const text = servers('{ address: "10.0.0.1:6379:1", pasword_env: X }');
    expect(problems(text)).toEqual([
      problem('pools.cache.servers[0].address', 'expected host:port, got "10.0.0.1:6379:1"'),
      problem('pools.cache.servers[0].pasword_env', 'unknown key; did you mean password_env?'),
    ]);
  });
});

describe('parseConfig: passwords', () => {
  const server = (fields: string): string =>
    yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:7000', `    servers: [{ address: 127.0.0.1:6379, ${fields} }]`);

  it('reads password_file through the injected reader, trimming the trailing newline only', () => {
    const config = parse(server('username: app, password_file: /run/secrets/pw'), { files: { '/run/secrets/pw': ' p w \r\n' } });
    expect(onlyPool(config).servers[0]).toMatchObject({ username: 'app', password: ' p w ' });
  });

  it('reads password_env from the injected environment', () => {
    const config = parse(server('password_env: REDIS_PW'), { env: { REDIS_PW: 'hunter2' } });
    expect(onlyPool(config).servers[0].password).toBe('hunter2');
  });

  it('reports a missing password file with its path', () => {
    const text = server('password_file: /run/secrets/nope');
    expect(problems(text)).toEqual([
      problem('pools.cache.servers[0].password_file', 'cannot read password file /run/secrets/nope (ENOENT)', at(text, '/run/secrets/nope')),
    ]);
  });

  it('reports an empty password file', () => {
    expect(problems(server('password_file: /pw'), { files: { '/pw': '\n' } })).toEqual([
      problem('pools.cache.servers[0].password_file', 'password file /pw is empty'),
    ]);
  });

  it('reports a missing environment variable by name', () => {
    expect(problems(server('password_env: REDIS_PW'))).toEqual([
      problem('pools.cache.servers[0].password_env', 'environment variable REDIS_PW is not set'),
    ]);
  });

  it('refuses both password_file and password_env', () => {
    expect(problems(server('password_file: /pw, password_env: PW'), { env: { PW: 'x' }, files: { '/pw': 'x' } })).toEqual([
      problem('pools.cache.servers[0].password_env', 'give password_file or password_env, not both'),
    ]);
  });

  it('refuses a username without a password', () => {
    expect(problems(server('username: app'))).toEqual([
      problem('pools.cache.servers[0].username', 'username needs a password: add password_file or password_env'),
    ]);
  });

  it('never puts a password in an error message', () => {
    const secret = 'correct-horse-battery-staple';
    const text = yaml(
      'pools:',
      '  cache:',
      '    protocol: redis',
      '    listen: 127.0.0.1:7000',
      '    servers:',
      '      - { address: 127.0.0.1:6379, password_env: PW, db: -1, weight: x }',
      '      - { address: 127.0.0.1:6380, password_file: /pw, name: [1] }',
    );
    let message = '';
    try {
      parse(text, { env: { PW: secret }, files: { '/pw': secret } });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message.split('\n')).toHaveLength(3);
    expect(message).not.toContain(secret);
  });
});

describe('parseConfig: client_auth', () => {
  const clientAuth = (...lines: string[]): string => pool('    client_auth:', ...lines.map((l) => `      ${l}`));

  it('is null when absent or written with no value', () => {
    expect(onlyPool(parse(pool())).clientAuth).toBeNull();
    expect(onlyPool(parse(pool('    client_auth:', '      # password_env: POOLSIDE_PASSWORD'))).clientAuth).toBeNull();
  });

  it('reads password_env from the injected environment, username optional', () => {
    const config = parse(clientAuth('password_env: POOLSIDE_PASSWORD'), { env: { POOLSIDE_PASSWORD: 'hunter2' } });
    expect(onlyPool(config).clientAuth).toEqual({ username: null, password: 'hunter2' });
  });

  it('reads username and password_file, relative to the config file, trimming the trailing newline only', () => {
    const text = clientAuth('username: app', 'password_file: secrets/client.pw');
    const config = parse(text, { files: { [resolve('secrets/client.pw')]: ' p w \n' } });
    expect(onlyPool(config).clientAuth).toEqual({ username: 'app', password: ' p w ' });
  });

  it('stores username: default as null, since AUTH <password> authenticates as the default user', () => {
    const config = parse(clientAuth('username: default', 'password_env: PW'), { env: { PW: 'x' } });
    expect(onlyPool(config).clientAuth).toEqual({ username: null, password: 'x' });
  });

  it('refuses both password_file and password_env', () => {
    const text = clientAuth('password_file: /pw', 'password_env: PW');
    expect(problems(text, { env: { PW: 'x' }, files: { '/pw': 'x' } })).toEqual([
      problem('pools.cache.client_auth.password_env', 'give password_file or password_env, not both', at(text, 'PW\n')),
    ]);
  });

  it('refuses neither, at the client_auth key, with or without a username', () => {
    const text = clientAuth('username: app');
    expect(problems(text)).toEqual([
      problem('pools.cache.client_auth', 'needs a password: add password_file or password_env', at(text, 'client_auth')),
    ]);
    expect(problems(pool('    client_auth: {}'))).toEqual([
      problem('pools.cache.client_auth', 'needs a password: add password_file or password_env'),
    ]);
  });

  it('reports an unset or empty variable and a missing or empty file, with file:line:column and path', () => {
    const unset = clientAuth('password_env: POOLSIDE_PASSWORD');
    expect(problems(unset)).toEqual([
      {
        file: 'config.yaml',
        ...at(unset, 'POOLSIDE_PASSWORD'),
        path: 'pools.cache.client_auth.password_env',
        message: 'environment variable POOLSIDE_PASSWORD is not set',
      },
    ]);
    expect(problems(unset, { env: { POOLSIDE_PASSWORD: '' } })).toEqual([
      problem('pools.cache.client_auth.password_env', 'environment variable POOLSIDE_PASSWORD is empty'),
    ]);
    const missing = clientAuth('password_file: /etc/poolside/client.pw');
    expect(problems(missing)).toEqual([
      problem(
        'pools.cache.client_auth.password_file',
        'cannot read password file /etc/poolside/client.pw (ENOENT)',
        at(missing, '/etc/poolside/client.pw'),
      ),
    ]);
    expect(problems(missing, { files: { '/etc/poolside/client.pw': '\r\n' } })).toEqual([
      problem('pools.cache.client_auth.password_file', 'password file /etc/poolside/client.pw is empty'),
    ]);
  });

  it('refuses an empty username and a client_auth that is not a mapping', () => {
    expect(problems(clientAuth('username: ""', 'password_env: PW'), { env: { PW: 'x' } })).toEqual([
      problem('pools.cache.client_auth.username', 'expected a string, got ""'),
    ]);
    expect(problems(pool('    client_auth: hunter2'))).toEqual([
      problem('pools.cache.client_auth', 'expected a mapping with keys username, password_file, password_env, got "hunter2"'),
    ]);
  });

  it('reports unknown keys with the close one, at and under client_auth', () => {
    const text = clientAuth('usrname: app', 'pasword_env: PW');
    expect(problems(text, { env: { PW: 'x' } })).toEqual([
      problem('pools.cache.client_auth', 'needs a password: add password_file or password_env', at(text, 'client_auth')),
      problem('pools.cache.client_auth.usrname', 'unknown key; did you mean username?', at(text, 'usrname')),
      problem('pools.cache.client_auth.pasword_env', 'unknown key; did you mean password_env?', at(text, 'pasword_env')),
    ]);
    expect(problems(pool('    clientAuth: { password_env: PW }'), { env: { PW: 'x' } })).toEqual([
      problem('pools.cache.clientAuth', 'unknown key; did you mean client_auth?'),
    ]);
  });

  it('never puts the password in an error message', () => {
    const secret = 'correct-horse-battery-staple';
    const both = clientAuth('username: [1]', 'password_file: /pw', 'password_env: PW');
    const envOk = clientAuth('password_env: PW', 'user: x');
    const fileOk = pool('    client_auth: { password_file: /pw }', '    routing: nope');
    for (const text of [both, envOk, fileOk]) {
      let message = '';
      try {
        parse(text, { env: { PW: secret }, files: { '/pw': `${secret}\n` } });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).not.toBe('');
      expect(message).not.toContain(secret);
    }
  });
});

describe('parseConfig: listeners', () => {
  const listen = (...lines: string[]): string =>
    yaml('pools:', '  cache:', '    protocol: redis', '    servers: [127.0.0.1:6379]', '    listen:', ...lines.map((l) => `      - ${l}`));

  it('accepts a unix path of 107 bytes and refuses 108, counting UTF-8 bytes', () => {
    const ok = `/tmp/${'a'.repeat(102)}`;
    expect(Buffer.byteLength(ok)).toBe(107);
    expect(onlyPool(parse(listen(`"unix:${ok}"`))).listen).toEqual([{ kind: 'unix', path: ok, mode: 0o660, owner: null, group: null }]);
    const accented = `/tmp/${'é'.repeat(51)}a`;
    expect(accented.length).toBe(57);
    expect(problems(listen(`"unix:${accented}"`))).toEqual([
      expect.objectContaining({
        path: 'pools.cache.listen[0]',
        message: 'unix socket path is 108 bytes long; the limit is 107 bytes (sun_path is 108 bytes including the terminating NUL)',
      }),
    ]);
  });

  it('refuses relative unix paths, bad modes and modes on TCP listeners', () => {
    const text = listen(
      '"unix:run/x.sock"',
      '{ address: "unix:/tmp/y.sock", mode: "0999" }',
      '{ address: 127.0.0.1:6380, mode: "0600" }',
    );
    expect(problems(text)).toEqual([
      problem('pools.cache.listen[0]', 'unix socket paths must be absolute, got "run/x.sock"'),
      problem('pools.cache.listen[1].mode', 'expected a file mode as an octal string such as "0660", got "0999"'),
      problem('pools.cache.listen[2].mode', 'mode applies only to unix: sockets'),
    ]);
  });

  it('refuses two listeners on the same host and port, across pools', () => {
    const text = yaml(
      'pools:',
      '  a: { protocol: redis, listen: 127.0.0.1:6380, servers: [127.0.0.1:6379] }',
      '  b: { protocol: redis, listen: [127.0.0.1:6381, 127.0.0.1:6380], servers: [127.0.0.1:6379] }',
    );
    expect(problems(text)).toEqual([
      {
        file: 'config.yaml',
        ...at(text, '127.0.0.1:6380', 1),
        path: 'pools.b.listen[1]',
        message: '127.0.0.1:6380 is already used by pools.a.listen (line 2:33)',
      },
    ]);
  });

  it('refuses the same unix path twice and a wildcard host that covers another', () => {
    const text = listen('unix:/tmp/s.sock', 'unix:/tmp/s.sock', '127.0.0.1:7000', '0.0.0.0:7000');
    expect(problems(text).map((p) => [p.path, p.message])).toEqual([
      ['pools.cache.listen[1]', 'unix:/tmp/s.sock is already used by pools.cache.listen[0] (line 6:9)'],
      ['pools.cache.listen[3]', '0.0.0.0:7000 is already used by pools.cache.listen[2] (line 8:9)'],
    ]);
  });

  it('lets port 0 repeat, since each gets its own ephemeral port', () => {
    expect(onlyPool(parse(listen('127.0.0.1:0', '127.0.0.1:0'))).listen).toHaveLength(2);
  });

  it('refuses a pool listener on the admin address, explicit or default', () => {
    const explicit = yaml('admin: { listen: "127.0.0.1:7000" }', listen('127.0.0.1:7000'));
    expect(problems(explicit)).toEqual([
      problem('pools.cache.listen[0]', '127.0.0.1:7000 is already used by admin.listen (line 1:18)'),
    ]);
    expect(problems(listen('127.0.0.1:9121'))).toEqual([
      expect.objectContaining({
        path: 'pools.cache.listen[0]',
        message: '127.0.0.1:9121 is already used by admin.listen (the default 127.0.0.1:9121; set admin.listen or admin: false)',
      }),
    ]);
    expect(parse(yaml('admin: false', listen('127.0.0.1:9121'))).admin).toBeNull();
  });

  it('refuses a unix admin listener', () => {
    expect(problems(yaml('admin: { listen: "unix:/tmp/admin.sock" }', listen('127.0.0.1:7000')))).toEqual([
      problem('admin.listen', 'the admin endpoint listens on TCP only; expected host:port'),
    ]);
  });
});

describe('validate: scalar parsers', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['0s', 0],
    [0, 0],
    ['0', 0],
  ])('parseDuration(%j) = %d', (input, ms) => {
    expect(parseDuration(input)).toEqual({ ok: true, value: ms });
  });

  it.each([
    [5, 'add a unit (ms, s, m or h), e.g. "5ms" or "5s"; got the plain number 5'],
    ['250us', 'durations have millisecond resolution (ms, s, m or h), got "250us"'],
    ['1.5ms', 'durations have millisecond resolution, got "1.5ms"'],
    ['5 seconds', 'expected a duration such as "500ms", "5s", "1m" or "1h", got "5 seconds"'],
    ['-1s', 'expected a duration such as "500ms", "5s", "1m" or "1h", got "-1s"'],
    ['1000h', '"1000h" is longer than Node.js timers allow (2147483647ms, ~24.8 days)'],
    [true, 'expected a duration such as "500ms", "5s", "1m" or "1h", got true'],
  ])('parseDuration(%j) fails: %s', (input, message) => {
    expect(parseDuration(input)).toEqual({ ok: false, message });
  });

  it.each([
    [1024, 1024],
    ['64kb', 65_536],
    ['1mb', 1_048_576],
    ['512MB', 536_870_912],
    ['1gb', 1_073_741_824],
    ['100b', 100],
    ['100', 100],
  ])('parseSize(%j) = %d', (input, bytes) => {
    expect(parseSize(input)).toEqual({ ok: true, value: bytes });
  });

  it.each([['1.5mb'], [-1], ['10 parsecs'], [1.5]])('parseSize(%j) fails', (input) => {
    expect(parseSize(input).ok).toBe(false);
  });

  it.each([
    ['20%', 0.2],
    ['0%', 0],
    ['12.5%', 0.125],
    [0.2, 0.2],
    [0, 0],
    [1, 1],
  ])('parsePercent(%j) = %d', (input, fraction) => {
    expect(parsePercent(input)).toEqual({ ok: true, value: fraction });
  });

  it.each([[20], ['101%'], ['20'], [-0.1]])('parsePercent(%j) fails', (input) => {
    expect(parsePercent(input).ok).toBe(false);
  });

  it('parseMode takes octal strings, numbers, and recovers octal from unquoted YAML', () => {
    expect(parseMode('0660')).toEqual({ ok: true, value: 0o660 });
    expect(parseMode('600')).toEqual({ ok: true, value: 0o600 });
    expect(parseMode('0o640')).toEqual({ ok: true, value: 0o640 });
    expect(parseMode(432)).toEqual({ ok: true, value: 0o660 });
    expect(parseMode(660, '0660')).toEqual({ ok: true, value: 0o660 });
    expect(parseMode(660, '660').ok).toBe(false);
    expect(parseMode('rw-rw----').ok).toBe(false);
  });

  it('parseHashTag takes two printable ASCII characters or nothing', () => {
    expect(parseHashTag('{}')).toEqual({ ok: true, value: '{}' });
    expect(parseHashTag('')).toEqual({ ok: true, value: '' });
    expect(parseHashTag('{').ok).toBe(false);
    expect(parseHashTag('«»').ok).toBe(false);
  });

  it('parseTcpAddress allows port 0 only when asked', () => {
    const localhost = { kind: 'tcp', host: 'localhost', port: 0 };
    expect(parseTcpAddress('localhost:0', { allowPortZero: true })).toEqual({ ok: true, value: localhost });
    expect(parseTcpAddress('localhost:0', { allowPortZero: false }).ok).toBe(false);
  });

  it('parseServerString keeps the address text without the weight', () => {
    expect(parseServerString('redis-a.internal:6379:10 shard-1')).toEqual({
      ok: true,
      value: {
        address: { kind: 'tcp', host: 'redis-a.internal', port: 6379 },
        addressText: 'redis-a.internal:6379',
        weight: 10,
        name: 'shard-1',
      },
    });
    expect(parseServerString('a:1:1 two words').ok).toBe(false);
  });

  it('listenersClash compares hosts, wildcards, ports and unix paths', () => {
    const tcp = (host: string, port: number) => ({ kind: 'tcp' as const, host, port });
    const unix = (path: string, mode: number) => ({ kind: 'unix' as const, path, mode, owner: null, group: null });
    expect(listenersClash(tcp('127.0.0.1', 1), tcp('127.0.0.1', 1))).toBe(true);
    expect(listenersClash(tcp('127.0.0.1', 1), tcp('127.0.0.2', 1))).toBe(false);
    expect(listenersClash(tcp('::', 1), tcp('127.0.0.1', 1))).toBe(true);
    expect(listenersClash(tcp('127.0.0.1', 0), tcp('127.0.0.1', 0))).toBe(false);
    expect(listenersClash(unix('/a', 0), unix('/a', 0o600))).toBe(true);
    expect(listenersClash(unix('/a', 0), tcp('127.0.0.1', 1))).toBe(false);
  });

  it('suggest finds a key within edit distance 2, or from camelCase', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(suggest('conections', ['connections', 'connect'])).toBe('connections');
    expect(suggest('maxLifetime', ['max_lifetime'])).toBe('max_lifetime');
    expect(suggest('tls', ['listen', 'servers'])).toBeNull();
  });
});
