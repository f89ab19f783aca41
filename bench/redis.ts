/**
 * End-to-end Redis benchmark: redis-benchmark against redis-server directly, through twemproxy
 * (nutcracker) and through poolside (one or more config variants), all started by this script in
 * one run, so every number in the table was measured on the same machine at the same time.
 *
 *   npm run bench                          full run (~3-4 minutes)
 *   npm run bench -- --quick               smoke check: small N, one repetition
 *   npm run bench -- --pipeline 1          only -P 1
 *   npm run bench -- --variant 'nohb={heartbeat: false}'
 *   npm run bench -- --help
 *
 * Besides ops/s (from redis-benchmark's CSV), it reads each proxy's CPU time (utime + stime in
 * /proc/<pid>/stat) before and after every run and prints CPU µs per request. See bench/README.md.
 *
 * Prints, never asserts: the exit code is 0 unless a process failed to start or the backend
 * redis-server died mid-run (1), or a flag was bad (2).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import {
  addProblem,
  benchmarkProblems,
  cpuMicros,
  fmt,
  fmtInt,
  medianOf,
  OPS,
  parseBenchmark,
  parseList,
  parseRunOptions,
  measuredRow,
  problemSections,
  rowHeader,
  ROW_RIGHT_ALIGN,
  ROOT,
  runMain,
  runRedisBenchmark,
  sleep,
  StartError,
  table,
  tail,
  UsageError,
  version,
} from './redis-benchmark.js';
import type { BenchmarkResult, Measured, Op, RunOptions, Sample as BaseSample } from './redis-benchmark.js';

// ---------------------------------------------------------------------------------------------
// Variants: every entry is one more poolside process in the run, with its own config.

/** A YAML mapping as plain data: what `pool` and `root` fragments are made of. */
export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue };
export type YamlMap = { [key: string]: YamlValue };

/** What a `during` hook learns about the redis-benchmark run it accompanies. */
export interface RunInfo {
  variant: string;
  pipeline: number;
  op: Op;
  requests: number;
  /** poolside's client port. */
  port: number;
  /** http://127.0.0.1:<admin port> (the admin endpoint: /metrics, /healthz, /stats). */
  adminUrl: string;
}

/**
 * Ends a side activity started by `during`; may return a one-line note that is printed under the
 * table (e.g. "12 scrapes, 0 failed").
 */
export type StopActivity = () => Promise<string | void> | string | void;

export interface Variant {
  /** Target name in the table: letters, digits and `+-_.`. */
  name: string;
  /** Merged (deeply) over the base pool section; `heartbeat: false` replaces a mapping. */
  pool?: YamlMap;
  /** Merged over the config's root (admin, log, shutdown_grace). */
  root?: YamlMap;
  /** Started just before each redis-benchmark run against this variant, stopped right after. */
  during?: (run: RunInfo) => StopActivity;
  /** Another build's dist/ directory to run (--compare); default: this checkout's dist/. */
  dist?: string;
}

/** A `during` hook: GET `adminUrl + urlPath` at the start and every `everyMs` while the benchmark runs. */
export function scrapeEvery(everyMs: number, urlPath: string): (run: RunInfo) => StopActivity {
  return (run) => {
    let ok = 0;
    let failed = 0;
    let lastError = '';
    const inFlight = new Set<Promise<void>>();
    const scrape = (): void => {
      const p = fetch(`${run.adminUrl}${urlPath}`)
        .then(async (res) => {
          await res.arrayBuffer();
          if (res.ok) ok++;
          else {
            failed++;
            lastError = `HTTP ${res.status}`;
          }
        })
        .catch((err: unknown) => {
          failed++;
          lastError = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    scrape();
    const timer = setInterval(scrape, everyMs);
    return async () => {
      clearInterval(timer);
      await Promise.all(inFlight);
      return `${urlPath}: ${ok} scrapes ok, ${failed} failed${failed > 0 ? ` (${lastError})` : ''}`;
    };
  };
}

/** Always run. */
const VARIANTS: Variant[] = [
  // The baseline: defaults, except 2 shared connections (twemproxy's server_connections).
  { name: 'poolside' },
  // More comparisons, each one more poolside process in the same run, e.g.:
  // { name: 'poolside-nohb', pool: { heartbeat: false } },
  // { name: 'poolside+hb1s', pool: { heartbeat: { interval: '1s', timeout: '500ms' } } },
  // { name: 'poolside+scrape1s', during: scrapeEvery(1000, '/metrics') },
  // (or pick the presets below with --with nohb,hb1s,scrape1s)
];

/** Run when named in --with. */
const PRESETS: Record<string, Variant> = {
  nohb: { name: 'poolside-nohb', pool: { heartbeat: false } },
  hb1s: { name: 'poolside+hb1s', pool: { heartbeat: { interval: '1s', timeout: '500ms' } } },
  scrape1s: { name: 'poolside+scrape1s', during: scrapeEvery(1000, '/metrics') },
  c1: { name: 'poolside-c1', pool: { connections: { min: 1, max: 1 } } },
  exclusive: { name: 'poolside-exclusive', pool: { lease: 'exclusive', connections: { min: 2, max: 64 } } },
};

/** The pool section every variant starts from. */
function basePool(listenPort: number, redisPort: number): YamlMap {
  return {
    protocol: 'redis',
    listen: [`127.0.0.1:${listenPort}`],
    servers: [`127.0.0.1:${redisPort}`],
    routing: 'failover',
    connections: { min: 2, max: 2 },
  };
}

/** The whole poolside config file for one variant, as YAML text. */
export function poolsideConfig(variant: Variant, ports: { listen: number; admin: number; redis: number }): string {
  const root: YamlMap = {
    admin: { listen: `127.0.0.1:${ports.admin}` },
    log: { level: 'info' },
    shutdown_grace: '1s',
  };
  const merged = deepMerge(root, variant.root ?? {});
  merged.pools = { bench: deepMerge(basePool(ports.listen, ports.redis), variant.pool ?? {}) };
  return `# generated by bench/redis.ts for variant ${variant.name}\n${YAML.stringify(merged)}`;
}

function isMap(v: YamlValue | undefined): v is YamlMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: YamlMap, over: YamlMap): YamlMap {
  const out: YamlMap = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] = isMap(prev) && isMap(value) ? deepMerge(prev, value) : value;
  }
  return out;
}

/** twemproxy's config for one pool in front of the one redis-server. */
function twemproxyConfig(listenPort: number, redisPort: number, serverConnections: number): string {
  return [
    'bench:',
    `  listen: 127.0.0.1:${listenPort}`,
    '  hash: fnv1a_64',
    '  distribution: ketama',
    '  redis: true',
    `  server_connections: ${serverConnections}`,
    '  auto_eject_hosts: false',
    '  preconnect: true',
    '  timeout: 2000',
    '  servers:',
    `    - 127.0.0.1:${redisPort}:1`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Options

interface Options extends RunOptions {
  twemproxyConns: number[];
  extraVariants: Variant[];
  logDir: string | null;
  /** Which benches run: Redis (this file) and memcached (bench/memcached.ts, after it). */
  protocols: ('redis' | 'memcached')[];
  /** Also run the Node floor relay (bench/short-lived.ts --role floor) as a target. */
  floor: boolean;
  /** Measure only these targets (null: all); the others are still started when needed (redis). */
  only: Set<string> | null;
}

const HELP = `usage: npm run bench -- [options]

  --quick                 N/10 and one repetition (a smoke check, ~30 s)
  --pipeline LIST         pipeline depths, e.g. 1,16 (default 1,16)
  --reps K                repetitions per measurement, median reported (default 3; --quick: 1)
  --clients C             redis-benchmark -c (default 50)
  --requests P=N,...      redis-benchmark -n per pipeline depth (default 400000*P capped at
                          2000000: 1=400000,16=2000000; --quick: a tenth)
  --twemproxy-conns LIST  one nutcracker per server_connections value (default 1,2); the first is
                          the baseline of the "vs twem" column
  --with PRESET,...       more poolside variants in the same run: nohb (heartbeat: false),
                          hb1s (heartbeat every 1s), scrape1s (GET /metrics every second during
                          each run), c1 (1 connection), exclusive (lease: exclusive, max 64)
  --variant NAME=YAML     one more poolside process whose pool section is the base merged with
                          YAML (a flow mapping), e.g. --variant 'nohb={heartbeat: false}';
                          repeatable
  --compare DIR           one more poolside, named "before", run from another build's dist/
                          (e.g. cp -r dist dist-before, taken before a change): before and
                          after in one interleaved run, the only comparison worth making here
  --floor                 one more target, "floor": the minimal Node multiplexing relay of
                          bench/short-lived.ts (--role floor: one backend connection, RESP
                          framed by counting, replies in FIFO order): what Node's sockets cost
  --only LIST             measure only these targets, e.g. twemproxy,poolside,before
  --logs DIR              keep configs and process logs in DIR (default: the temp dir, removed
                          at exit; copied out if something went wrong)
  --timeout SECONDS       longest a single redis-benchmark run may take (default 120)
  --protocol LIST         redis, memcached or both (default redis,memcached): the memcached
                          bench (bench/memcached.ts, also npm run bench:memcached) runs after the
                          Redis one with the same --quick, --reps and --clients
`;

function parseOptions(argv: string[]): Options | 'help' {
  const more = {
    twemproxyConns: [1, 2],
    extraVariants: [] as Variant[],
    logDir: null as string | null,
    protocols: ['redis', 'memcached'] as ('redis' | 'memcached')[],
    floor: false,
    only: null as Set<string> | null,
  };
  // ~3-5 s per proxy run on a 2-core machine (~100k ops/s at P1, ~500k at P16 through a proxy).
  const run = parseRunOptions(argv, HELP, { perPipeline: 400_000, cap: 2_000_000 }, (flag, value) => {
    switch (flag) {
      case '--twemproxy-conns':
        more.twemproxyConns = parseList(flag, value());
        return true;
      case '--with':
        for (const name of value().split(',').map((s) => s.trim())) {
          const preset = PRESETS[name];
          if (preset === undefined) throw new UsageError(`--with: no preset ${name} (presets: ${Object.keys(PRESETS).join(', ')})`);
          more.extraVariants.push(preset);
        }
        return true;
      case '--variant': {
        const text = value();
        const eq = text.indexOf('=');
        const name = eq < 0 ? text : text.slice(0, eq);
        if (!/^[A-Za-z0-9+_.-]+$/.test(name)) throw new UsageError(`--variant: bad name ${JSON.stringify(name)} (use letters, digits and +-_.)`);
        const parsed: unknown = eq < 0 ? {} : YAML.parse(text.slice(eq + 1));
        const fragment = (parsed ?? {}) as YamlValue;
        if (!isMap(fragment)) throw new UsageError(`--variant ${name}: the fragment must be a YAML mapping, e.g. '{heartbeat: false}'`);
        more.extraVariants.push({ name, pool: fragment });
        return true;
      }
      case '--logs':
        more.logDir = path.resolve(value());
        return true;
      case '--compare': {
        const dist = path.resolve(value());
        if (!fs.existsSync(path.join(dist, 'main.js'))) throw new UsageError(`--compare: ${dist}/main.js does not exist (cp -r dist dist-before first)`);
        more.extraVariants.push({ name: 'before', dist });
        return true;
      }
      case '--floor':
        more.floor = true;
        return true;
      case '--only':
        more.only = new Set(value().split(',').map((s) => s.trim()));
        return true;
      case '--protocol':
      case '--protocols': {
        const names = value().split(',').map((s) => s.trim());
        for (const n of names) if (n !== 'redis' && n !== 'memcached') throw new UsageError(`--protocol: expected redis and/or memcached, got ${n}`);
        more.protocols = names as ('redis' | 'memcached')[];
        return true;
      }
      default:
        return false;
    }
  });
  return run === 'help' ? 'help' : { ...run, ...more };
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Managed {
  name: string;
  proc: ChildProcess;
  log: string;
  /** Set when the process exits: how it exited. */
  exited: string | null;
  /** Exits we caused (stop()) are not failures. */
  stopping: boolean;
}

const managed: Managed[] = [];
let tempDir: string | null = null;
/** Set by SIGINT/SIGTERM: the loop stops reporting while everything is being stopped. */
let aborting = false;

function startProcess(name: string, command: string, args: string[], log: string): Managed {
  const fd = fs.openSync(log, 'a');
  const proc = spawn(command, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const m: Managed = { name, proc, log, exited: null, stopping: false };
  proc.on('error', (err) => {
    m.exited ??= `could not be started: ${err.message}`;
  });
  proc.on('exit', (code, signal) => {
    m.exited ??= signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
  });
  managed.push(m);
  return m;
}

async function stopProcess(m: Managed): Promise<void> {
  m.stopping = true;
  if (m.exited !== null || m.proc.exitCode !== null || m.proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => m.proc.once('exit', () => resolve()));
  m.proc.kill('SIGTERM');
  const timer = setTimeout(() => m.proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function stopAll(): Promise<void> {
  await Promise.all([...managed].reverse().map((m) => stopProcess(m)));
}

/** Last-resort cleanup on exit (synchronous: kill whatever still runs, remove the temp dir). */
function cleanupSync(): void {
  for (const m of managed) {
    if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
  }
  if (tempDir !== null) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

function freePort(taken: Set<number>): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const info = server.address();
      const port = typeof info === 'object' && info !== null ? info.port : 0;
      server.close(() => {
        if (port === 0 || taken.has(port)) freePort(taken).then(resolve, reject);
        else {
          taken.add(port);
          resolve(port);
        }
      });
    });
  });
}

/** One PING; resolves true on +PONG within timeoutMs. */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

async function waitForPing(m: Managed, port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (m.exited !== null) throw new StartError(`${m.name} ${m.exited} before answering PING\n${tail(m.log, 30)}`);
    if (await ping(port, 1000)) return;
    await sleep(100);
  }
  throw new StartError(`${m.name} did not answer PING on 127.0.0.1:${port} within ${timeoutMs / 1000}s\n${tail(m.log, 30)}`);
}

// ---------------------------------------------------------------------------------------------
// Targets and runs

type Kind = 'redis' | 'twemproxy' | 'poolside' | 'floor';

interface Target {
  name: string;
  kind: Kind;
  port: number;
  /** The proxy process (absent for direct redis). */
  proc: Managed | null;
  variant: Variant | null;
  adminPort: number | null;
}

interface Sample extends BaseSample {
  wallMs: number;
}

interface Measurement extends Measured<Sample> {
  target: Target;
  notes: string[];
}

function runBenchmark(port: number, op: Op, pipeline: number, requests: number, clients: number, timeoutMs: number): Promise<BenchmarkResult> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', op, '-c', String(clients), '-n', String(requests), '-P', String(pipeline), '-q', '--csv'];
  return runRedisBenchmark(args, timeoutMs);
}

/** Expected noise: redis-benchmark asks for CONFIG, which twemproxy does not implement and poolside's default command policy denies. */
const HARMLESS = [/^WARNING: Could not fetch server CONFIG$/];

/** Runs redis-benchmark once for `m`; returns the problems this run added. */
async function measure(m: Measurement, opts: Options, redisPid: number | undefined): Promise<string[]> {
  const { target, pipeline, op } = m;
  if (target.proc?.exited != null) return [`${target.name} is gone (${target.proc.exited}): skipped`];
  const requests = opts.requests.get(pipeline) as number;
  const stopSide: StopActivity | null =
    target.variant?.during?.({
      variant: target.name,
      pipeline,
      op,
      requests,
      port: target.port,
      adminUrl: `http://127.0.0.1:${target.adminPort}`,
    }) ?? null;
  const proxyBefore = cpuMicros(target.proc?.proc.pid);
  const redisBefore = cpuMicros(redisPid);
  const result = await runBenchmark(target.port, op, pipeline, requests, opts.clients, opts.timeoutMs);
  const proxyAfter = cpuMicros(target.proc?.proc.pid);
  const redisAfter = cpuMicros(redisPid);
  if (stopSide !== null) {
    const note = await stopSide();
    if (typeof note === 'string' && note !== '') m.notes.push(note);
  }
  const problems = benchmarkProblems(result, HARMLESS, opts.timeoutMs);
  if (target.proc !== null && target.proc.exited !== null) problems.push(`${target.name} ${target.proc.exited} during this run`);
  for (const line of problems) addProblem(m.problems, line);
  const parsed = parseBenchmark(result.stdout, op);
  // A run that hit an error exits early (redis-benchmark 7): its rate is not a measurement.
  if (parsed === null || result.timedOut || result.code !== 0) return problems;
  const perRequest = (before: number | null, after: number | null): number | null => (before === null || after === null ? null : (after - before) / requests);
  m.samples.push({
    opsPerSec: parsed.rps,
    p50Ms: parsed.p50Ms,
    proxyCpuUs: target.proc === null ? null : perRequest(proxyBefore, proxyAfter),
    redisCpuUs: perRequest(redisBefore, redisAfter),
    wallMs: result.wallMs,
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Report

function report(measurements: Measurement[], opts: Options, baselineName: string): { text: string; problems: boolean } {
  const find = (name: string, p: number, op: Op): Measurement | undefined => measurements.find((m) => m.target.name === name && m.pipeline === p && m.op === op);
  const ops = (m: Measurement | undefined): number | null => (m === undefined ? null : medianOf(m.samples, (s) => s.opsPerSec));
  const out: string[] = [];
  const rows: string[][] = [];
  for (const p of opts.pipelines) {
    for (const op of OPS) {
      const base = ops(find(baselineName, p, op));
      for (const m of measurements.filter((x) => x.pipeline === p && x.op === op)) rows.push(measuredRow(m, base, opts.reps));
    }
  }
  out.push(table(rowHeader(baselineName, 'proxy'), rows, ROW_RIGHT_ALIGN));

  // Problems and notes.
  const problemLines = problemSections(measurements);
  out.push(...problemLines);
  const problems = problemLines.length > 0;
  const notes = measurements.filter((m) => m.notes.length > 0);
  if (notes.length > 0) {
    out.push('', 'Side activities:');
    for (const m of notes) out.push(`  ${m.target.name} P${m.pipeline} ${m.op.toUpperCase()}: ${m.notes.join('; ')}`);
  }

  // Targets.
  out.push('', `Targets (vs ${baselineName}; printed, not asserted):`);
  const poolsides = [...new Set(measurements.filter((m) => m.target.kind === 'poolside').map((m) => m.target.name))];
  const mark = (ok: boolean | null): string => (ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS');
  for (const name of poolsides) {
    for (const p of opts.pipelines) {
      for (const op of OPS) {
        const m = find(name, p, op);
        const o = ops(m);
        const base = ops(find(baselineName, p, op));
        const cpu = m === undefined ? null : medianOf(m.samples, (s) => s.proxyCpuUs);
        const ratio = o === null || base === null ? null : o / base;
        const baseCpu = (() => {
          const b = find(baselineName, p, op);
          return b === undefined ? null : medianOf(b.samples, (s) => s.proxyCpuUs);
        })();
        const cpuNote = `CPU ${fmt(cpu, 2)} µs/req (${baselineName} ${fmt(baseCpu, 2)})`;
        if (p === 1) {
          out.push(`  [${mark(ratio === null ? null : ratio >= 1)}] ${name} P1 ${op.toUpperCase()}: throughput ${fmt(ratio, 2, 'x')} ${baselineName} (target >= 1.00x)`);
          out.push(`  [${mark(cpu === null ? null : cpu <= 8)}] ${name} P1 ${op.toUpperCase()}: ${cpuNote} (target <= ~8)`);
        } else if (p === 16) {
          out.push(`  [${mark(ratio === null ? null : ratio >= 2.5)}] ${name} P16 ${op.toUpperCase()}: throughput ${fmt(ratio, 2, 'x')} ${baselineName} (target >= 2.5x); ${cpuNote}`);
        } else {
          out.push(`  [info] ${name} P${p} ${op.toUpperCase()}: throughput ${fmt(ratio, 2, 'x')} ${baselineName}; ${cpuNote}`);
        }
      }
    }
  }
  return { text: out.join('\n'), problems };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(opts: Options): Promise<number> {
  if (!opts.protocols.includes('redis')) return memcachedBench(opts);
  const variants = [...VARIANTS, ...opts.extraVariants];
  const measured = (name: string): boolean => opts.only === null || opts.only.has(name);
  const names = new Set<string>();
  for (const v of variants) {
    if (names.has(v.name)) throw new UsageError(`two variants are named ${v.name}`);
    names.add(v.name);
  }

  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-'));
  const logDir = opts.logDir ?? tempDir;
  fs.mkdirSync(logDir, { recursive: true });
  const taken = new Set<number>();
  const targets: Target[] = [];

  const log = (s: string): void => {
    if (!aborting) process.stderr.write(`${s}\n`);
  };

  log(`bench: temp dir ${tempDir}${opts.logDir !== null ? `, logs in ${logDir}` : ''}`);

  // 1. redis-server
  const redisPort = await freePort(taken);
  const redisDir = path.join(tempDir, 'redis');
  fs.mkdirSync(redisDir);
  const redis = startProcess(
    'redis-server',
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir, '--daemonize', 'no', '--logfile', ''],
    path.join(logDir, 'redis.log'),
  );
  await waitForPing(redis, redisPort);
  if (measured('redis')) targets.push({ name: 'redis', kind: 'redis', port: redisPort, proc: null, variant: null, adminPort: null });
  log(`bench: redis-server pid ${redis.proc.pid} on 127.0.0.1:${redisPort}`);

  // 2. twemproxy, one per server_connections value
  for (const conns of opts.twemproxyConns) {
    const name = conns === opts.twemproxyConns[0] ? 'twemproxy' : `twemproxy-c${conns}`;
    if (!measured(name)) continue;
    const port = await freePort(taken);
    const statsPort = await freePort(taken);
    const conf = path.join(logDir, `${name}.yml`);
    fs.writeFileSync(conf, twemproxyConfig(port, redisPort, conns));
    const m = startProcess(
      name,
      'nutcracker',
      ['-c', conf, '-s', String(statsPort), '-a', '127.0.0.1', '-o', path.join(logDir, `${name}.log`), '-p', path.join(tempDir, `${name}.pid`)],
      path.join(logDir, `${name}.stdio.log`),
    );
    // nutcracker logs to -o; point `log` there so failures show its messages.
    m.log = path.join(logDir, `${name}.log`);
    await waitForPing(m, port);
    targets.push({ name, kind: 'twemproxy', port, proc: m, variant: null, adminPort: statsPort });
    log(`bench: ${name} (server_connections ${conns}) pid ${m.proc.pid} on 127.0.0.1:${port}`);
  }

  // 3. poolside, one per variant
  for (const variant of variants) {
    if (!measured(variant.name)) continue;
    const mainJs = path.join(variant.dist ?? path.join(ROOT, 'dist'), 'main.js');
    if (!fs.existsSync(mainJs)) throw new StartError(`${mainJs} does not exist: run npm run build first (npm run bench does)`);
    const port = await freePort(taken);
    const adminPort = await freePort(taken);
    const conf = path.join(logDir, `${variant.name}.yaml`);
    fs.writeFileSync(conf, poolsideConfig(variant, { listen: port, admin: adminPort, redis: redisPort }));
    const m = startProcess(variant.name, process.execPath, [mainJs, '--config', conf], path.join(logDir, `${variant.name}.log`));
    await waitForPing(m, port);
    targets.push({ name: variant.name, kind: 'poolside', port, proc: m, variant, adminPort });
    log(`bench: ${variant.name} pid ${m.proc.pid} on 127.0.0.1:${port} (admin ${adminPort})`);
  }

  // 4. the Node floor: a minimal relay (one backend connection, FIFO), what Node's sockets cost
  if (opts.floor && measured('floor')) {
    const port = await freePort(taken);
    const m = startProcess(
      'floor',
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'bench', 'short-lived.ts'), '--role', 'floor', String(port), path.join(tempDir, 'floor.sock'), String(redisPort)],
      path.join(logDir, 'floor.log'),
    );
    await waitForPing(m, port);
    targets.push({ name: 'floor', kind: 'floor', port, proc: m, variant: null, adminPort: null });
    log(`bench: floor relay pid ${m.proc.pid} on 127.0.0.1:${port}`);
  }

  const baselineName = targets.find((t) => t.kind === 'twemproxy')?.name ?? 'redis';
  const header = [
    `poolside bench: node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    `${version('redis-server', ['--version'])}; ${version('nutcracker', ['--version'])}; ${version('redis-benchmark', ['--version'])}`,
    `redis-benchmark -c ${opts.clients} ${opts.pipelines.map((p) => `-P ${p} -n ${opts.requests.get(p)}`).join(' / ')}, -t set then get; ` +
      `median of ${opts.reps} interleaved run${opts.reps === 1 ? '' : 's'}${opts.quick ? ' (QUICK: smoke check only)' : ''}`,
    `twemproxy: server_connections ${opts.twemproxyConns.join(' and ')}; poolside: connections {min: 2, max: 2} unless a variant says otherwise`,
  ];
  log(header.join('\n'));

  // Warm-up (JIT, connection growth): a short unmeasured run per target and depth.
  for (const t of targets) {
    for (const p of opts.pipelines) {
      const n = Math.min(opts.requests.get(p) as number, opts.quick ? 5_000 * p : 20_000 * p);
      await runBenchmark(t.port, 'set', p, n, opts.clients, opts.timeoutMs);
      await runBenchmark(t.port, 'get', p, n, opts.clients, opts.timeoutMs);
    }
  }

  const measurements: Measurement[] = [];
  for (const p of opts.pipelines) {
    for (const op of OPS) {
      for (const target of targets) measurements.push({ target, pipeline: p, op, samples: [], problems: new Map(), notes: [] });
    }
  }
  const total = opts.reps * opts.pipelines.length * targets.length * OPS.length;
  let done = 0;
  const started = Date.now();
  let backendDied = false;
  measuring: for (let rep = 0; rep < opts.reps; rep++) {
    for (const p of opts.pipelines) {
      // Rotate the order each repetition so no target always runs first (or right after another).
      const order = targets.map((_, i) => targets[(i + rep) % targets.length] as Target);
      for (const target of order) {
        for (const op of OPS) {
          const m = measurements.find((x) => x.target === target && x.pipeline === p && x.op === op) as Measurement;
          const before = m.samples.length;
          const newProblems = await measure(m, opts, redis.proc.pid);
          done++;
          const last = m.samples.length > before ? m.samples.at(-1) : undefined;
          log(
            `bench: [${String(done).padStart(String(total).length)}/${total}] rep ${rep + 1} P${p} ${op.toUpperCase()} ${target.name}: ` +
              (last === undefined ? 'FAILED' : `${fmtInt(last.opsPerSec)} ops/s, proxy ${fmt(last.proxyCpuUs, 2)} µs/req, ${(last.wallMs / 1000).toFixed(1)}s`) +
              (newProblems.length > 0 ? ` (problems: ${newProblems.join(' | ').slice(0, 300)})` : ''),
          );
          if (redis.exited !== null) {
            // Every later number would be meaningless (and some proxies retry in a loop).
            backendDied = true;
            break measuring;
          }
        }
      }
    }
  }
  log(`bench: measured in ${((Date.now() - started) / 1000).toFixed(0)}s`);

  const crashed = managed.filter((m) => m.exited !== null && !m.stopping);
  const { text, problems } = report(measurements, opts, baselineName);
  process.stdout.write(`\n${header.join('\n')}\n\n${text}\n`);
  for (const m of crashed) process.stdout.write(`\nCRASH: ${m.name} ${m.exited}; last lines of ${path.basename(m.log)}:\n${tail(m.log, 40)}\n`);
  if (backendDied) {
    process.stdout.write(
      `\nABORTED: the backend redis-server ${redis.exited} (not stopped by this script: another process on this machine?). ` +
        `The table holds only the runs before that.\n`,
    );
  }

  await stopAll();
  if ((problems || crashed.length > 0) && opts.logDir === null) {
    const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-logs-'));
    for (const f of fs.readdirSync(logDir)) {
      const from = path.join(logDir, f);
      if (fs.statSync(from).isFile()) fs.copyFileSync(from, path.join(keep, f));
    }
    process.stdout.write(`\nSomething went wrong: configs and logs kept in ${keep}\n`);
  }
  const redisCode = backendDied ? 1 : 0;
  return opts.protocols.includes('memcached') ? Math.max(redisCode, await memcachedBench(opts)) : redisCode;
}

/** bench/memcached.ts with this run's --quick, --reps and --clients (its own flags: npm run bench:memcached). */
async function memcachedBench(opts: Options): Promise<number> {
  const { runMemcachedBench } = await import('./memcached.js');
  process.stdout.write('\n');
  return runMemcachedBench({
    quick: opts.quick,
    reps: opts.reps,
    seconds: opts.quick ? 1 : 3,
    clients: opts.clients,
    generators: 2,
    logDir: opts.logDir === null ? null : path.join(opts.logDir, 'memcached'),
    only: null,
  });
}

await runMain({ parse: parseOptions, help: HELP, main }, {
  stopAll,
  cleanupSync,
  onAbort: () => {
    aborting = true;
  },
});
