/**
 * The --remote network model shared by bench/short-lived.ts and bench/tcp-warm.ts: building
 * bench/delay-relay.c, checking how precise it is, and reading its lateness counters. See the
 * comment at the top of delay-relay.c for what the relay does, and bench/README.md for why it is C.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'delay-relay.c');

/** Compiles delay-relay.c into `dir` with `cc -O2`; throws with the package to install when there is no compiler. */
export function buildDelayRelay(dir: string): string {
  const binary = path.join(dir, 'delay-relay');
  const cc = spawnSync('cc', ['-O2', '-o', binary, SOURCE], { encoding: 'utf8' });
  if (cc.error !== undefined) {
    throw new Error(`the --remote delay relay (bench/delay-relay.c) needs a C compiler, and cc is not on PATH: apt-get install -y gcc`);
  }
  if (cc.status !== 0) throw new Error(`cc -O2 bench/delay-relay.c failed:\n${cc.stderr}`);
  return binary;
}

/** Arguments for the relay: listen on 127.0.0.1:listen, forward to 127.0.0.1:backend, `ms` each way. */
export function delayRelayArgs(listen: number, backend: number, ms: number, statsFile?: string): string[] {
  return [String(listen), String(backend), String(ms), ...(statsFile === undefined ? [] : [statsFile])];
}

interface Quantiles {
  n: number;
  p50?: number;
  p99?: number;
  max?: number;
}

export interface DelayCheck {
  clients: number;
  errors: number;
  /** one request after another on one connection: ms */
  rtt: Quantiles;
  /** connect, request, reply, close: ms */
  connect: Quantiles;
}

/**
 * `clients` processes against 127.0.0.1:port for `seconds`: round trips of `request` on one
 * connection, then connect + first reply (the relay's --check mode, in C so that the measurement
 * adds as little as it can).
 */
export function checkDelay(binary: string, port: number, clients: number, seconds: number, request: string): DelayCheck {
  const run = spawnSync(binary, ['--check', String(port), String(clients), String(seconds), request], { encoding: 'utf8', timeout: (seconds + 10) * 1000 });
  const line = run.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as DelayCheck;
  } catch {
    throw new Error(`delay-relay --check failed (${String(run.status ?? run.signal)}): ${run.stderr}${run.stdout}`);
  }
}

export interface RelayStats {
  seq: number;
  sched: string;
  advance_us: number;
  chunks: number;
  /** how late chunks went out against their due time (negative: early), µs */
  late_us: { min: number; p1: number; p50: number; p90: number; p99: number; max: number };
  /** how long after the kernel received a chunk the relay read it (made up for by the timestamp), µs */
  read_lag_us: { n: number; p50: number; p99: number; max: number };
  accepts: number;
}

function readStats(file: string): RelayStats | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as RelayStats;
  } catch {
    return null;
  }
}

/**
 * The relay's counters since the previous call (SIGUSR1 makes it write them to `file` and start
 * again). Waits up to a second for the new file; null if none came (the relay died).
 */
export async function relayStats(pid: number, file: string): Promise<RelayStats | null> {
  const before = readStats(file)?.seq ?? 0;
  process.kill(pid, 'SIGUSR1');
  const deadline = Date.now() + 1000;
  while (Date.now() < deadline) {
    const now = readStats(file);
    if (now !== null && now.seq > before) return now;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return null;
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(3));

/**
 * The header lines describing the model a run was made against: what the check measured through
 * the relay and straight to the server, next to what the model alone would give.
 */
export function describeModel(delayMs: number, server: string, through: DelayCheck[], direct: DelayCheck[], stats: RelayStats | null): string[] {
  const line = (c: DelayCheck): string =>
    `${c.clients} client${c.clients === 1 ? '' : 's'}: round trip p50 ${ms(c.rtt.p50)} p99 ${ms(c.rtt.p99)} ms (n ${c.rtt.n}), ` +
    `connect + first reply p50 ${ms(c.connect.p50)} p99 ${ms(c.connect.p99)} ms (n ${c.connect.n})${c.errors > 0 ? `, ${c.errors} clients FAILED` : ''}`;
  return [
    `delay model: delay-relay.c, ${delayMs} ms each way; model alone: round trip ${ms(2 * delayMs)} ms, connect + first reply ${ms(4 * delayMs)} ms (+ ${server}'s own time, below)`,
    ...through.map((c) => `  through the relay, ${line(c)}`),
    ...direct.map((c) => `  ${server} alone,     ${line(c)}`),
    ...(stats === null
      ? []
      : [
          `  relay (${stats.sched === 'fifo' ? 'SCHED_FIFO' : 'normal priority'}, waits ending ${stats.advance_us} µs early): ${stats.chunks} deliveries during the check, ` +
            `µs after their due time: p1 ${stats.late_us.p1}, p50 ${stats.late_us.p50}, p99 ${stats.late_us.p99}, max ${stats.late_us.max}`,
        ]),
  ];
}
