/**
 * What the redis-benchmark driven benches (bench/redis.ts, bench/cluster.ts) share: running
 * redis-benchmark and reading its CSV, CPU time from /proc, medians, the report table, and the
 * script's life cycle (exit codes, SIGINT/SIGTERM, last-resort cleanup). Not a bench itself.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Op = 'set' | 'get';
export const OPS: readonly Op[] = ['set', 'get'];

/** A bad flag: exit code 2. */
export class UsageError extends Error {}
/** A process did not start or did not become ready: exit code 1, message only. */
export class StartError extends Error {}

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function parseList(flag: string, text: string): number[] {
  const values = text.split(',').map((s) => Number(s.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1)) throw new UsageError(`${flag}: expected positive integers separated by commas, got ${text}`);
  return values;
}

/** The flags every redis-benchmark bench takes. */
export interface RunOptions {
  quick: boolean;
  pipelines: number[];
  /** Repetitions per measurement, the median reported. */
  reps: number;
  /** redis-benchmark -c. */
  clients: number;
  /** redis-benchmark -n per pipeline depth. */
  requests: Map<number, number>;
  /** Longest a single redis-benchmark run may take. */
  timeoutMs: number;
}

/**
 * Parses --help, --quick, --pipeline, --reps, --clients, --requests and --timeout, and hands
 * every other flag to `more` (false: unknown, a UsageError with `help`). Without --requests, -n
 * is perPipeline * P capped at cap, a tenth of that (at least 10,000) with --quick.
 */
export function parseRunOptions(
  argv: string[],
  help: string,
  sizing: { perPipeline: number; cap: number },
  more: (flag: string, value: () => string) => boolean,
): RunOptions | 'help' {
  const opts: RunOptions = { quick: false, pipelines: [1, 16], reps: 3, clients: 50, requests: new Map(), timeoutMs: 120_000 };
  let reps: number | null = null;
  const explicitRequests = new Map<number, number>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        return 'help';
      case '--quick':
        opts.quick = true;
        break;
      case '--pipeline':
      case '--pipelines':
        opts.pipelines = parseList(flag, value());
        break;
      case '--reps':
        reps = parseList(flag, value())[0] as number;
        break;
      case '--clients':
        opts.clients = parseList(flag, value())[0] as number;
        break;
      case '--timeout':
        opts.timeoutMs = (parseList(flag, value())[0] as number) * 1000;
        break;
      case '--requests':
        for (const part of value().split(',')) {
          const m = /^\s*(\d+)\s*=\s*(\d+)\s*$/.exec(part);
          if (m === null) throw new UsageError(`--requests: expected P=N pairs, got ${part}`);
          explicitRequests.set(Number(m[1]), Number(m[2]));
        }
        break;
      default:
        if (!more(flag, value)) throw new UsageError(`unknown option ${flag}\n\n${help}`);
    }
  }
  opts.reps = reps ?? (opts.quick ? 1 : 3);
  for (const p of opts.pipelines) {
    const full = Math.min(sizing.perPipeline * p, sizing.cap);
    opts.requests.set(p, explicitRequests.get(p) ?? (opts.quick ? Math.max(10_000, full / 10) : full));
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Processes

const CLK_TCK = readClockTicks();

function readClockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** utime + stime of a process, in microseconds; null once it is gone. */
export function cpuMicros(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime (14) and stime (15) are fields[11] and fields[12].
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / CLK_TCK;
  } catch {
    return null;
  }
}

/** cpuMicros summed over several processes; null as soon as one of them is gone. */
export function sumCpu(pids: number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    const us = cpuMicros(pid);
    if (us === null) return null;
    total += us;
  }
  return total;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The last `lines` lines of a log file, indented for a report. */
export function tail(file: string, lines: number): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd();
    if (text === '') return `  (${path.basename(file)} is empty)`;
    return text
      .split('\n')
      .slice(-lines)
      .map((l) => `  | ${l}`)
      .join('\n');
  } catch {
    return `  (no ${path.basename(file)})`;
  }
}

/** The first line of `command --version` (or whatever args say). */
export function version(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || `${command}: ?`;
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark

export interface BenchmarkResult {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  wallMs: number;
}

/** The redis-benchmark running now, so that a signal or an error can kill it. */
let running: ChildProcess | null = null;

export function killRunningBenchmark(): void {
  running?.kill('SIGKILL');
}

/** Runs `redis-benchmark ...args`, killed after timeoutMs; output kept up to 1 MiB a stream. */
export function runRedisBenchmark(args: string[], timeoutMs: number): Promise<BenchmarkResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const proc = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running = proc;
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    proc.stdout.setEncoding('utf8').on('data', (s: string) => {
      if (stdout.length < 1 << 20) stdout += s;
    });
    proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      if (stderr.length < 1 << 20) stderr += s;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.on('error', (err) => {
      stderr += `redis-benchmark: ${err.message}\n`;
    });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      if (running === proc) running = null;
      resolve({ code, signal, timedOut, stdout, stderr, wallMs: Date.now() - started });
    });
  });
}

/** The CSV row for `op` ("SET","12345.67","0.123",...). */
export function parseBenchmark(out: string, op: Op): { rps: number; p50Ms: number } | null {
  for (const line of out.split(/\r?\n/)) {
    const cells = line.split(',').map((c) => c.replace(/^"|"$/g, ''));
    if ((cells[0] ?? '').toLowerCase() === op && cells.length >= 2) {
      const rps = Number(cells[1]);
      // 7.x columns: test, rps, avg, min, p50, p95, p99, max
      const p50Ms = Number(cells[4] ?? NaN);
      if (Number.isFinite(rps)) return { rps, p50Ms };
    }
  }
  return null;
}

/** Every line that is neither CSV nor known noise (`harmless`): errors ("Error from server: ...", "Server closed the connection"). */
function otherLines(out: string, harmless: readonly RegExp[]): string[] {
  return out
    .split(/\r?\n/)
    .map((l) => l.replace(/\r/g, '').trim())
    .filter((l) => l !== '' && !l.startsWith('"') && !harmless.some((re) => re.test(l)));
}

/** What went wrong in one run: unexpected output, a timeout, a non-zero exit. */
export function benchmarkProblems(result: BenchmarkResult, harmless: readonly RegExp[], timeoutMs: number): string[] {
  const problems = [...otherLines(result.stdout, harmless), ...otherLines(result.stderr, harmless)];
  if (result.timedOut) problems.push(`redis-benchmark did not finish within ${timeoutMs / 1000}s (killed)`);
  else if (result.code !== 0) problems.push(`redis-benchmark exited with ${result.signal ?? `code ${result.code}`}`);
  return problems;
}

/** Counts a problem line; identical lines (redis-benchmark -e repeats an error at most once a second) are counted, not repeated. */
export function addProblem(problems: Map<string, number>, text: string): void {
  const key = text.length > 300 ? `${text.slice(0, 300)}...` : text;
  problems.set(key, (problems.get(key) ?? 0) + 1);
}

// ---------------------------------------------------------------------------------------------
// Numbers and the report

export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The median of `pick` over the samples, leaving out nulls and NaNs. */
export function medianOf<S>(samples: S[], pick: (s: S) => number | null): number | null {
  return median(samples.map(pick).filter((v): v is number => v !== null && Number.isFinite(v)));
}

/** One redis-benchmark run's numbers. */
export interface Sample {
  opsPerSec: number;
  p50Ms: number;
  /** CPU per request of the proxy measured; null without one, or when /proc could not be read. */
  proxyCpuUs: number | null;
  /** CPU per request of the redis-server(s) behind the target. */
  redisCpuUs: number | null;
}

/** One row of the report: a target at one pipeline depth and op, over the repetitions. */
export interface Measured<S extends Sample = Sample> {
  target: { name: string };
  pipeline: number;
  op: Op;
  samples: S[];
  /** Non-CSV output, non-zero exits, timeouts, with counts. */
  problems: Map<string, number>;
}

/** The header of the report table of measuredRow()s, naming the baseline and the proxy measured. */
export function rowHeader(baseline: string, proxy: string): string[] {
  return ['target', 'P', 'op', 'ops/s', `vs ${baseline}`, `${proxy} CPU µs/req`, 'redis CPU µs/req', 'p50 ms', 'runs'];
}
export const ROW_RIGHT_ALIGN = [false, true, false, true, true, true, true, true, true];

/** A measurement's row: medians, and its ops/s against the baseline's (`base`). */
export function measuredRow(m: Measured, base: number | null, reps: number): string[] {
  const ops = medianOf(m.samples, (s) => s.opsPerSec);
  return [
    m.target.name,
    String(m.pipeline),
    m.op.toUpperCase(),
    fmtInt(ops),
    ops === null || base === null ? '-' : `${(ops / base).toFixed(2)}x`,
    fmt(medianOf(m.samples, (s) => s.proxyCpuUs), 2),
    fmt(medianOf(m.samples, (s) => s.redisCpuUs), 2),
    fmt(medianOf(m.samples, (s) => s.p50Ms), 3),
    `${m.samples.length}/${reps}`,
  ];
}

/** The report's PROBLEMS sections: for each measurement that had any, the first 8 distinct lines, with counts. */
export function problemSections(measurements: Measured[]): string[] {
  const out: string[] = [];
  for (const m of measurements) {
    if (m.problems.size === 0) continue;
    out.push('', `PROBLEMS ${m.target.name} P${m.pipeline} ${m.op.toUpperCase()}:`);
    let shown = 0;
    for (const [text, count] of m.problems) {
      if (shown++ >= 8) {
        out.push(`  ... ${m.problems.size - 8} more distinct lines`);
        break;
      }
      out.push(`  ${count > 1 ? `${count}x ` : ''}${text}`);
    }
  }
  return out;
}

export function fmtInt(n: number | null): string {
  return n === null ? '-' : Math.round(n).toLocaleString('en-US');
}

export function fmt(n: number | null, digits: number, suffix = ''): string {
  return n === null ? '-' : `${n.toFixed(digits)}${suffix}`;
}

/** A table of columns padded to width: `plain` (space separated) or `markdown` (pipes, alignment row). */
export function table(header: string[], rows: string[][], rightAlign: boolean[], style: 'plain' | 'markdown' = 'plain'): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const cells = (row: string[]): string[] => row.map((c, i) => (rightAlign[i] ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)));
  if (style === 'markdown') {
    const line = (row: string[]): string => `| ${cells(row).join(' | ')} |`;
    const rule = `|${widths.map((w, i) => (rightAlign[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
    return [line(header), rule, ...rows.map(line)].join('\n');
  }
  const line = (row: string[]): string => cells(row).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Life cycle

/**
 * Parses the flags (--help: prints `help`, exit code 0) and runs a bench's main(): exit code from main (2 for a UsageError, 1 for any other error, the
 * stack only for unexpected ones); on SIGINT/SIGTERM stops everything and exits 130/143;
 * cleanupSync on every exit. onAbort is told first, so the bench can stop reporting.
 */
export async function runMain<O>(
  bench: { parse: (argv: string[]) => O | 'help'; help: string; main: (opts: O) => Promise<number> },
  hooks: { stopAll: () => Promise<void>; cleanupSync: () => void; onAbort?: () => void },
): Promise<void> {
  const cleanupSync = (): void => {
    killRunningBenchmark();
    hooks.cleanupSync();
  };
  const stopAll = async (): Promise<void> => {
    killRunningBenchmark();
    await hooks.stopAll();
  };
  let aborting = false;
  process.on('exit', cleanupSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (aborting) return;
      aborting = true;
      hooks.onAbort?.();
      process.stderr.write(`\nbench: ${signal}, stopping everything\n`);
      void stopAll().finally(() => {
        cleanupSync();
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
    });
  }
  try {
    const opts = bench.parse(process.argv.slice(2));
    if (opts === 'help') process.stdout.write(bench.help);
    process.exitCode = opts === 'help' ? 0 : await bench.main(opts);
  } catch (err) {
    if (err instanceof StartError || err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    } else {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    }
    await stopAll();
  } finally {
    cleanupSync();
  }
}
