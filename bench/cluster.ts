/**
 * Redis Cluster benchmark (issue 10): redis-benchmark through poolside (`routing: cluster`, one
 * local port, a plain client) against `redis-benchmark --cluster` straight to the cluster's
 * primaries, all in one run on a real 3 + 3 cluster started by this script
 * (test/helpers/cluster.ts), so every number in the table was measured on the same machine at the
 * same time.
 *
 *   npm run bench:cluster                  full run (~3-5 minutes)
 *   npm run bench:cluster -- --quick       smoke check: small N, one repetition
 *   npm run bench:cluster -- --single      + poolside in front of one standalone redis-server
 *   npm run bench:cluster -- --help
 *
 * Besides ops/s (redis-benchmark's CSV), it reads poolside's CPU time and the cluster nodes'
 * (utime + stime in /proc/<pid>/stat) before and after every run and prints CPU µs per request.
 * See bench/README.md.
 *
 * Prints, never asserts: exit code 0 unless a process failed to start or a cluster node died
 * mid-run (1), or a flag was bad (2).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { RedisCluster } from '../test/helpers/cluster.js';
import { RawClient, RespError } from '../test/helpers/resp-client.js';
import { freePort, RedisServer } from '../test/helpers/servers.js';
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
  sumCpu,
  table,
  tail,
  version,
} from './redis-benchmark.js';
import type { BenchmarkResult, Measured, Op, RunOptions } from './redis-benchmark.js';

/** direct: redis-benchmark --cluster; poolside: through a cluster pool; single: through a pool on one standalone redis-server. */
type Kind = 'direct' | 'poolside' | 'single';

interface Options extends RunOptions {
  keyspace: number;
  /** Also poolside in front of one standalone redis-server: what the cluster path adds to poolside's own cost. */
  single: boolean;
}

const HELP = `usage: npm run bench:cluster -- [options]

  --quick            N/10 and one repetition (a smoke check, ~30 s)
  --pipeline LIST    pipeline depths, e.g. 1,16 (default 1,16)
  --reps K           repetitions per measurement, median reported (default 3; --quick: 1)
  --clients C        redis-benchmark -c (default 50)
  --requests P=N,... redis-benchmark -n per pipeline depth (default 1=200000,16=1000000;
                     --quick: a tenth)
  --keyspace R       redis-benchmark -r: keys spread over R random names, so over every slot
                     and every primary (default 100000)
  --timeout SECONDS  longest a single redis-benchmark run may take (default 120)
  --single           one more target: poolside (routing: failover) in front of one standalone
                     redis-server, so the table also shows what cluster routing adds to
                     poolside's CPU per request
`;

function parseOptions(argv: string[]): Options | 'help' {
  const more = { keyspace: 100_000, single: false };
  // ~2-4 s per run on a 2-core machine.
  const run = parseRunOptions(argv, HELP, { perPipeline: 200_000, cap: 1_000_000 }, (flag, value) => {
    switch (flag) {
      case '--single':
        more.single = true;
        return true;
      case '--keyspace':
        more.keyspace = parseList(flag, value())[0] as number;
        return true;
      default:
        return false;
    }
  });
  return run === 'help' ? 'help' : { ...run, ...more };
}

// ---------------------------------------------------------------------------------------------
// Processes

let cluster: RedisCluster | null = null;
let standalone: RedisServer | null = null;
const poolsides: ChildProcess[] = [];
let tempDir: string | null = null;

function cleanupSync(): void {
  for (const proc of poolsides) proc.kill('SIGKILL');
  // The cluster's redis-servers are killed by test/helpers/servers.ts's own exit hook.
  if (tempDir !== null) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

async function stopAll(): Promise<void> {
  await Promise.all(
    poolsides.map(async (proc) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }),
  );
  await cluster?.stop();
  cluster = null;
  await standalone?.stop();
  standalone = null;
}

/**
 * Waits until poolside answers a GET for keys on every primary without an error: it has found
 * the cluster's slot map (and connected to every node), not only its listener.
 */
async function waitForPoolside(proc: ChildProcess, port: number, log: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not tried';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new StartError(`poolside exited before it was ready\n${tail(log, 30)}`);
    try {
      const client = await RawClient.connect(port);
      try {
        for (let i = 0; i < 32; i++) client.send('GET', `ready:${i}`);
        const replies = await client.take(32, 2000);
        const error = replies.find((r) => r instanceof RespError);
        if (error === undefined) return;
        last = String(error);
      } finally {
        client.destroy();
      }
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new StartError(`poolside did not serve its servers within ${timeoutMs / 1000}s (last: ${last})\n${tail(log, 30)}`);
}

// ---------------------------------------------------------------------------------------------
// Runs

interface Target {
  name: string;
  kind: Kind;
  /** What redis-benchmark connects to: poolside's port, or one seed node (with --cluster). */
  port: number;
  /** The poolside process measured (null for direct). */
  poolsidePid: number | null;
  /** The redis-servers behind the target: the cluster's six, or the standalone one. */
  backendPids: number[];
}

interface Measurement extends Measured {
  target: Target;
}

function runBenchmark(target: Target, op: Op, pipeline: number, requests: number, opts: Options): Promise<BenchmarkResult> {
  const args = [
    ...(target.kind === 'direct' ? ['--cluster'] : []),
    '-h', '127.0.0.1', '-p', String(target.port),
    '-t', op, '-c', String(opts.clients), '-n', String(requests), '-P', String(pipeline), '-r', String(opts.keyspace), '-q', '--csv',
  ];
  return runRedisBenchmark(args, opts.timeoutMs);
}

/**
 * Expected noise: poolside's default command policy denies CONFIG (redis-benchmark asks for it),
 * and --cluster prints the primaries it found.
 */
const HARMLESS = [/^WARNING: Could not fetch server CONFIG$/, /^Cluster has \d+ master nodes:$/, /^Master \d+: [0-9a-f]{40} \S+$/];

async function measure(m: Measurement, opts: Options): Promise<string[]> {
  const requests = opts.requests.get(m.pipeline) ?? 0;
  const { poolsidePid, backendPids } = m.target;
  const pBefore = poolsidePid === null ? null : cpuMicros(poolsidePid);
  const cBefore = sumCpu(backendPids);
  const result = await runBenchmark(m.target, m.op, m.pipeline, requests, opts);
  const pAfter = poolsidePid === null ? null : cpuMicros(poolsidePid);
  const cAfter = sumCpu(backendPids);
  const problems = benchmarkProblems(result, HARMLESS, opts.timeoutMs);
  for (const line of problems) addProblem(m.problems, line);
  const parsed = parseBenchmark(result.stdout, m.op);
  if (parsed === null || result.timedOut || result.code !== 0) return problems;
  const per = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : (b - a) / requests);
  m.samples.push({
    opsPerSec: parsed.rps,
    p50Ms: parsed.p50Ms,
    proxyCpuUs: per(pBefore, pAfter),
    redisCpuUs: per(cBefore, cAfter),
  });
  return problems;
}

function report(measurements: Measurement[], opts: Options): { text: string; problems: boolean } {
  const rows: string[][] = [];
  for (const p of opts.pipelines) {
    for (const op of OPS) {
      const direct = measurements.find((m) => m.target.kind === 'direct' && m.pipeline === p && m.op === op);
      const base = direct === undefined ? null : medianOf(direct.samples, (s) => s.opsPerSec);
      for (const m of measurements.filter((x) => x.pipeline === p && x.op === op)) rows.push(measuredRow(m, base, opts.reps));
    }
  }
  const problems = problemSections(measurements);
  return { text: [table(rowHeader('direct', 'poolside'), rows, ROW_RIGHT_ALIGN, 'markdown'), ...problems].join('\n'), problems: problems.length > 0 };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(opts: Options): Promise<number> {
  const log = (s: string): void => {
    process.stderr.write(`${s}\n`);
  };
  const mainJs = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(mainJs)) throw new StartError(`${mainJs} does not exist: run npm run build first (npm run bench:cluster does)`);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-cluster-'));

  // 1. The cluster: 3 primaries + 3 replicas (replication is part of what a write costs).
  const started = performance.now();
  cluster = await RedisCluster.start({ primaries: 3, replicasPerPrimary: 1 });
  const nodePids = cluster.nodes.map((n) => n.pid);
  log(`bench: cluster of ${cluster.nodes.length} nodes up in ${((performance.now() - started) / 1000).toFixed(1)}s: ${cluster.nodes.map((n) => n.address).join(' ')}`);

  // 2. poolside: one cluster pool, every node a seed, otherwise the defaults.
  const dir = tempDir;
  const startPoolside = async (name: string, pool: Record<string, unknown>): Promise<{ port: number; pid: number }> => {
    const port = await freePort();
    const config = {
      admin: { listen: `127.0.0.1:${await freePort()}` },
      log: { level: 'info' },
      pools: { bench: { protocol: 'redis', listen: [`127.0.0.1:${port}`], ...pool } },
    };
    const conf = path.join(dir, `${name}.yaml`);
    const logFile = path.join(dir, `${name}.log`);
    fs.writeFileSync(conf, `# generated by bench/cluster.ts\n${YAML.stringify(config)}`);
    const fd = fs.openSync(logFile, 'a');
    const proc = spawn(process.execPath, [mainJs, '--config', conf], { cwd: ROOT, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    poolsides.push(proc);
    if (proc.pid === undefined) throw new StartError(`${name} could not be started`);
    await waitForPoolside(proc, port, logFile);
    log(`bench: ${name} pid ${proc.pid} on 127.0.0.1:${port}`);
    return { port, pid: proc.pid };
  };
  const viaCluster = await startPoolside('poolside', { servers: cluster.nodes.map((n) => n.address), routing: 'cluster' });
  const targets: Target[] = [
    { name: 'direct --cluster', kind: 'direct', port: cluster.nodes[0].port, poolsidePid: null, backendPids: nodePids },
    { name: 'poolside', kind: 'poolside', port: viaCluster.port, poolsidePid: viaCluster.pid, backendPids: nodePids },
  ];
  if (opts.single) {
    // 3. --single: one standalone redis-server (no replica) and poolside's plain pool on it.
    standalone = await RedisServer.start();
    const viaSingle = await startPoolside('poolside-single', { servers: [standalone.address] });
    targets.push({ name: 'poolside single redis', kind: 'single', port: viaSingle.port, poolsidePid: viaSingle.pid, backendPids: [standalone.pid] });
  }
  const header = [
    `poolside cluster bench: node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `${version('redis-server', ['--version'])}; ${version('redis-benchmark', ['--version'])}; cluster of 3 primaries + 3 replicas on loopback`,
    `redis-benchmark -c ${opts.clients} -r ${opts.keyspace} ${opts.pipelines.map((p) => `-P ${p} -n ${opts.requests.get(p)}`).join(' / ')}, -t set then get; ` +
      `median of ${opts.reps} interleaved run${opts.reps === 1 ? '' : 's'}${opts.quick ? ' (QUICK: smoke check only)' : ''}`,
    `direct: redis-benchmark --cluster (each client on one primary); poolside: routing: cluster, one local port, a plain client, defaults (connections {min: 2, max: 8} per node)` +
      (opts.single ? '; poolside single redis: the same defaults, routing: failover, one standalone redis-server' : ''),
    'redis CPU µs/req: the six cluster nodes together (replication included), or the standalone redis-server',
  ];
  log(header.join('\n'));

  // Warm-up: JIT, connections, and a value behind every GET.
  for (const t of targets) {
    for (const p of opts.pipelines) {
      const n = Math.min(opts.requests.get(p) ?? 0, opts.quick ? 5_000 * p : 20_000 * p);
      await runBenchmark(t, 'set', p, n, opts);
      await runBenchmark(t, 'get', p, n, opts);
    }
  }

  const measurements: Measurement[] = [];
  for (const p of opts.pipelines) for (const op of OPS) for (const target of targets) measurements.push({ target, pipeline: p, op, samples: [], problems: new Map() });
  const total = opts.reps * opts.pipelines.length * targets.length * OPS.length;
  let done = 0;
  let nodeDied = false;
  measuring: for (let rep = 0; rep < opts.reps; rep++) {
    for (const p of opts.pipelines) {
      const order = targets.map((_, i) => targets[(i + rep) % targets.length]);
      for (const target of order) {
        for (const op of OPS) {
          const m = measurements.find((x) => x.target === target && x.pipeline === p && x.op === op);
          if (m === undefined) continue;
          const before = m.samples.length;
          const problems = await measure(m, opts);
          done++;
          const last = m.samples.length > before ? m.samples.at(-1) : undefined;
          log(
            `bench: [${done}/${total}] rep ${rep + 1} P${p} ${op.toUpperCase()} ${target.name}: ` +
              (last === undefined ? 'FAILED' : `${fmtInt(last.opsPerSec)} ops/s, poolside ${fmt(last.proxyCpuUs, 2)} µs/req, redis ${fmt(last.redisCpuUs, 2)} µs/req`) +
              (problems.length > 0 ? ` (problems: ${problems.join(' | ').slice(0, 300)})` : ''),
          );
          if (sumCpu(targets.flatMap((t) => t.backendPids)) === null) {
            nodeDied = true;
            break measuring;
          }
        }
      }
    }
  }

  const { text, problems } = report(measurements, opts);
  process.stdout.write(`\n${header.join('\n')}\n\n${text}\n`);
  if (nodeDied) process.stdout.write('\nABORTED: a redis-server died mid-run (not stopped by this script). The table holds only the runs before that.\n');
  if (problems) {
    const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-cluster-logs-'));
    for (const f of fs.readdirSync(tempDir)) fs.copyFileSync(path.join(tempDir, f), path.join(keep, f));
    process.stdout.write(`\nSomething went wrong: poolside's configs and logs kept in ${keep}\n`);
  }
  await stopAll();
  return nodeDied ? 1 : 0;
}

await runMain({ parse: parseOptions, help: HELP, main }, { stopAll, cleanupSync });
