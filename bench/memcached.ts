/**
 * memcached end to end (issue 13): a load generator of our own (memtier is not packaged here)
 * against memcached directly, nutcracker (twemproxy) and poolside, in one run, one table.
 *
 *   npm run bench:memcached                 full run (~3 min)
 *   npm run bench:memcached -- --quick      1 s runs, one repetition: a smoke check
 *   npm run bench                           the Redis bench, then this one
 *   npm run bench:memcached -- --help
 *
 * Workloads: `get` and `set` of one 32-byte value at pipeline 1 and 16 on one memcached, and a
 * multi-key `get` of 10 keys that ketama spreads over 3 memcached servers. The generator is this
 * file run as child processes (`--role gen`, kept alive across runs so they stay JIT-warm): each
 * holds its share of the connections, keeps P requests in flight per connection (like
 * redis-benchmark -P) and counts replies by their exact length, checking the first reply of every
 * connection byte for byte. Targets interleaved, order rotated per repetition, medians reported;
 * CPU of the proxy, of memcached and of the generator from /proc/PID/stat.
 *
 * Prints, never asserts. See bench/README.md.
 */
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { hashFunction } from '../src/router/hash.js';
import { KetamaContinuum } from '../src/router/ketama.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const VALUE = Buffer.from('0123456789abcdef0123456789abcdef'); // 32 bytes
const MGET_KEYS = 10;

// ---------------------------------------------------------------------------------------------
// Workloads: the exact bytes of a request and of its reply.

type WorkloadName = 'get P1' | 'get P16' | 'set P1' | 'set P16' | 'mget10 P1';
const WORKLOADS: readonly WorkloadName[] = ['set P1', 'get P1', 'set P16', 'get P16', 'mget10 P1'];

interface Workload {
  name: WorkloadName;
  pipeline: number;
  /** Runs against the 3-server ketama pools (and memcached A holding every key, for direct). */
  sharded: boolean;
}

function workload(name: WorkloadName): Workload {
  return { name, pipeline: name.endsWith('P16') ? 16 : 1, sharded: name.startsWith('mget') };
}

/** The request and its exact reply for one connection of a workload. */
function exchange(w: Workload, connKey: string, mgetKeys: readonly string[]): { request: Buffer; reply: Buffer } {
  const valueBlock = (key: string): string => `VALUE ${key} 0 ${VALUE.length}\r\n${VALUE.toString('latin1')}\r\n`;
  if (w.name.startsWith('set')) {
    return { request: Buffer.from(`set ${connKey} 0 0 ${VALUE.length}\r\n${VALUE.toString('latin1')}\r\n`), reply: Buffer.from('STORED\r\n') };
  }
  if (w.sharded) {
    return { request: Buffer.from(`get ${mgetKeys.join(' ')}\r\n`), reply: Buffer.from(`${mgetKeys.map(valueBlock).join('')}END\r\n`) };
  }
  return { request: Buffer.from(`get ${connKey}\r\n`), reply: Buffer.from(`${valueBlock(connKey)}END\r\n`) };
}

// ---------------------------------------------------------------------------------------------
// The generator role: a child process holding connections, driven over IPC.

interface GenRun {
  port: number;
  workload: WorkloadName;
  connections: number;
  /** Distinguishes this generator's keys from the others'. */
  id: number;
  mgetKeys: string[];
  startAt: number;
  endAt: number;
}

interface GenResult {
  /** Requests whose reply completed inside [startAt, endAt]. */
  requests: number;
  /** Batch latencies in µs (every batch, capped sample). */
  latencies: number[];
  error: string | null;
  cpuUs: number;
}

async function generatorRun(spec: GenRun): Promise<GenResult> {
  const w = workload(spec.workload);
  const sockets: net.Socket[] = [];
  let requests = 0;
  const latencies: number[] = [];
  let error: string | null = null;
  try {
    for (let c = 0; c < spec.connections; c++) {
      sockets.push(
        await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port: spec.port, noDelay: true });
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        }),
      );
    }
  } catch (err) {
    for (const s of sockets) s.destroy();
    return { requests: 0, latencies: [], error: `connect: ${err instanceof Error ? err.message : String(err)}`, cpuUs: 0 };
  }
  if (w.name.startsWith('get')) {
    // A get workload reads the connection's own key: store it first, unmeasured.
    try {
      await Promise.all(sockets.map((socket, c) => storeKey(socket, `bench:${spec.id}:${c}`)));
    } catch (err) {
      for (const s of sockets) s.destroy();
      return { requests: 0, latencies: [], error: `preparing the keys: ${err instanceof Error ? err.message : String(err)}`, cpuUs: 0 };
    }
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, spec.startAt - Date.now())));
  const cpu0 = process.cpuUsage();
  const finished = sockets.map(
    (socket, c) =>
      new Promise<void>((resolve) => {
        const { request, reply } = exchange(w, `bench:${spec.id}:${c}`, spec.mgetKeys);
        const batch = w.pipeline === 1 ? request : Buffer.concat(Array.from({ length: w.pipeline }, () => request));
        const expectBytes = reply.length * w.pipeline;
        let got = 0;
        let first: Buffer[] | null = [];
        let sentAt = 0;
        const send = (): void => {
          got = 0;
          sentAt = performance.now();
          socket.write(batch);
        };
        const stop = (why: string | null): void => {
          if (why !== null) error ??= why;
          socket.removeAllListeners('data');
          resolve();
        };
        const expected = Buffer.concat(Array.from({ length: w.pipeline }, () => reply));
        socket.on('data', (chunk: Buffer) => {
          if (first !== null) {
            // The first batch is checked byte for byte as it arrives: an error reply (shorter
            // than the expected one) fails the run at once instead of stalling it.
            first.push(chunk);
            const sofar = Buffer.concat(first);
            if (!sofar.equals(expected.subarray(0, sofar.length))) return stop(`unexpected reply: ${JSON.stringify(sofar.toString('latin1', 0, 200))}`);
            if (sofar.length === expected.length) first = null;
          }
          got += chunk.length;
          if (got < expectBytes) return;
          if (got > expectBytes) return stop(`${got - expectBytes} bytes more than the replies`);
          const now = performance.now();
          if (Date.now() > spec.endAt) return stop(null);
          requests += w.pipeline;
          if (latencies.length < 200_000) latencies.push(Math.round((now - sentAt) * 1000));
          send();
        });
        socket.on('error', (err) => stop(`socket: ${err.message}`));
        socket.on('close', () => stop(Date.now() > spec.endAt ? null : 'closed by the target'));
        send();
      }),
  );
  const stalled = new Promise<void>((resolve) =>
    setTimeout(() => {
      error ??= 'a connection got no complete reply for 5 s after the end';
      resolve();
    }, spec.endAt - Date.now() + 5000).unref(),
  );
  await Promise.race([Promise.all(finished), stalled]);
  const cpu = process.cpuUsage(cpu0);
  for (const s of sockets) s.destroy();
  return { requests, latencies, error, cpuUs: cpu.user + cpu.system };
}

/** Sets `key` to VALUE on `socket` and waits for STORED. */
function storeKey(socket: net.Socket, key: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer): void => {
      got += chunk.toString('latin1');
      if (!got.endsWith('\r\n')) return;
      socket.off('data', onData);
      if (got === 'STORED\r\n') resolve();
      else reject(new Error(`set ${key}: ${JSON.stringify(got.slice(0, 200))}`));
    };
    socket.on('data', onData);
    socket.write(`set ${key} 0 0 ${VALUE.length}\r\n${VALUE.toString('latin1')}\r\n`);
  });
}

function generatorRole(): void {
  process.on('message', (message: GenRun) => {
    void generatorRun(message).then((result) => process.send?.(result));
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Options

export interface MemcachedBenchOptions {
  quick: boolean;
  reps: number;
  seconds: number;
  /** Connections in all (split over the generator processes). */
  clients: number;
  generators: number;
  logDir: string | null;
  only: WorkloadName[] | null;
}

const HELP = `usage: npm run bench:memcached -- [options]

  --quick           1 s runs, one repetition (a smoke check, ~30 s)
  --reps K          repetitions, median reported (default 3)
  --seconds S       length of one measured run (default 3)
  --clients C       connections in all (default 50, like redis-benchmark -c 50)
  --generators G    load generator processes sharing them (default 2)
  --only LIST       only these workloads, e.g. 'get P1,mget10 P1'
  --logs DIR        keep configs and process logs in DIR
`;

export function parseMemcachedOptions(argv: string[]): MemcachedBenchOptions | 'help' {
  const o: MemcachedBenchOptions = { quick: false, reps: 3, seconds: 3, clients: 50, generators: 2, logDir: null, only: null };
  let reps: number | null = null;
  let seconds: number | null = null;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} needs a positive number`);
      return v;
    };
    if (flag === '--help' || flag === '-h') return 'help';
    else if (flag === '--quick') o.quick = true;
    else if (flag === '--reps') reps = Math.round(num());
    else if (flag === '--seconds') seconds = num();
    else if (flag === '--clients') o.clients = Math.round(num());
    else if (flag === '--generators') o.generators = Math.round(num());
    else if (flag === '--logs') o.logDir = path.resolve(argv[++i] ?? '');
    else if (flag === '--only') {
      const names = (argv[++i] ?? '').split(',').map((s) => s.trim());
      for (const n of names) if (!(WORKLOADS as readonly string[]).includes(n)) throw new Error(`--only: no workload ${JSON.stringify(n)} (${WORKLOADS.join(', ')})`);
      o.only = names as WorkloadName[];
    } else throw new Error(`unknown option ${flag}\n\n${HELP}`);
  }
  o.reps = reps ?? (o.quick ? 1 : 3);
  o.seconds = seconds ?? (o.quick ? 1 : 3);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Processes

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface Managed {
  name: string;
  proc: ChildProcess;
  log: string;
  exited: string | null;
}

const managed: Managed[] = [];
let stopping = false;
/** The load generators of the run under way (killed with everything else). */
let generators: Generators | null = null;

function startProcess(name: string, command: string, args: string[], logDir: string): Managed {
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const proc = spawn(command, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const m: Managed = { name, proc, log, exited: null };
  proc.on('error', (err) => (m.exited ??= `could not be started: ${err.message}`));
  proc.on('exit', (code, signal) => {
    m.exited ??= signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
    if (!stopping) process.stderr.write(`bench:memcached: ${name} ${m.exited}; see ${log}\n`);
  });
  managed.push(m);
  return m;
}

/** Kills everything this bench started; synchronous, so it also runs on process exit. */
function stopAll(): void {
  stopping = true;
  generators?.stop();
  generators = null;
  for (const m of managed) if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
  managed.length = 0;
}

function cpuUs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1e6;
  } catch {
    return NaN;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Sends `text` on a fresh connection; resolves with the reply once it ends with `until`. */
function mcCommand(port: number, text: string, until: RegExp, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no reply to ${JSON.stringify(text.slice(0, 40))} on port ${port}`));
    }, timeoutMs);
    s.on('connect', () => s.write(text));
    s.on('data', (c: Buffer) => {
      answer += c.toString('latin1');
      if (until.test(answer)) {
        clearTimeout(timer);
        s.destroy();
        resolve(answer);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function waitVersion(m: Managed, port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (m.exited !== null) throw new Error(`${m.name} ${m.exited} before answering version; see ${m.log}`);
    try {
      if ((await mcCommand(port, 'version\r\n', /\r\n$/)).startsWith('VERSION ')) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`${m.name} did not answer version on 127.0.0.1:${port}; see ${m.log}`);
}

/** Is `text` answered with `reply` (e.g. a get through a proxy that has connected its servers)? */
async function waitAnswer(m: Managed, port: number, text: string, reply: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  while (Date.now() < deadline) {
    if (m.exited !== null) throw new Error(`${m.name} ${m.exited}; see ${m.log}`);
    try {
      last = await mcCommand(port, text, /(END|ERROR[^\r]*|STORED|VERSION[^\r]*)\r\n$/);
      if (last === reply) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(100);
  }
  throw new Error(`${m.name} on 127.0.0.1:${port} answered ${JSON.stringify(last.slice(0, 200))} to ${JSON.stringify(text.slice(0, 60))}; see ${m.log}`);
}

// ---------------------------------------------------------------------------------------------
// Runs

type Kind = 'direct' | 'nutcracker' | 'poolside';

interface Target {
  kind: Kind;
  /** Port for the one-server workloads and for the 3-server multi-get. */
  single: number;
  sharded: number;
  pid: number | null;
}

interface Sample {
  opsPerSec: number;
  proxyCpuPerReq: number | null;
  memcachedCpuPerReq: number;
  generatorCpuPerReq: number;
  p50Ms: number;
}

interface Cell {
  samples: Sample[];
  errors: string[];
}

class Generators {
  readonly #children: ChildProcess[];

  constructor(count: number, logDir: string) {
    this.#children = Array.from({ length: count }, (_, i) => {
      const fd = fs.openSync(path.join(logDir, `generator-${i}.log`), 'a');
      const child = fork(SELF, ['--role', 'gen'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', fd, fd, 'ipc'], cwd: ROOT });
      fs.closeSync(fd);
      return child;
    });
  }

  get pids(): number[] {
    return this.#children.map((c) => c.pid ?? -1);
  }

  run(spec: Omit<GenRun, 'connections' | 'id'>, clients: number): Promise<GenResult[]> {
    const n = this.#children.length;
    return Promise.all(
      this.#children.map(
        (child, i) =>
          new Promise<GenResult>((resolve, reject) => {
            const onExit = (): void => reject(new Error(`load generator ${i} exited`));
            child.once('exit', onExit);
            child.once('message', (result: GenResult) => {
              child.off('exit', onExit);
              resolve(result);
            });
            child.send({ ...spec, connections: Math.floor(clients / n) + (i < clients % n ? 1 : 0), id: i } satisfies GenRun);
          }),
      ),
    );
  }

  stop(): void {
    for (const c of this.#children) c.kill('SIGKILL');
  }
}

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 === 1 ? (v[(v.length - 1) / 2] as number) : ((v[v.length / 2 - 1] as number) + (v[v.length / 2] as number)) / 2;
}

function fmt(n: number | null, digits = 0): string {
  if (n === null || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i <= 1 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i <= 1 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Ten keys that fnv1a_64 ketama over servers named `127.0.0.1:<port>` spreads over all three. */
function spreadKeys(ports: number[]): { keys: string[]; homes: number[] } {
  const continuum = new KetamaContinuum(ports.map((port) => ({ name: `127.0.0.1:${port}`, weight: 1 })));
  const hash = hashFunction('fnv1a_64');
  const keys: string[] = [];
  const homes: number[] = [];
  const perServer = [0, 0, 0];
  for (let i = 0; keys.length < MGET_KEYS; i++) {
    const key = `mget:${i}`;
    const bytes = Buffer.from(key);
    const home = continuum.serverFor(hash(bytes, 0, bytes.length));
    // 4 / 3 / 3: every server takes part in every multi-get.
    if ((perServer[home] as number) >= (home === 0 ? 4 : 3)) continue;
    perServer[home] = (perServer[home] as number) + 1;
    keys.push(key);
    homes.push(home);
  }
  return { keys, homes };
}

function version(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || `${command}: ?`;
}

export async function runMemcachedBench(opts: MemcachedBenchOptions): Promise<number> {
  for (const [cmd, pkg] of [
    ['memcached', 'memcached'],
    ['nutcracker', 'nutcracker'],
  ] as const) {
    if (spawnSync(cmd, ['-h'], { stdio: 'ignore' }).error !== undefined) {
      process.stderr.write(`bench:memcached: ${cmd} is missing: apt-get install -y ${pkg}\n`);
      return 1;
    }
  }
  const mainJs = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(mainJs)) throw new Error('dist/main.js missing: npm run build (npm run bench:memcached does)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-mcbench-'));
  const logDir = opts.logDir ?? dir;
  fs.mkdirSync(logDir, { recursive: true });
  stopping = false;
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  try {
    // Three memcached: A serves the one-server workloads; A, B, C the 3-server multi-get.
    const user = process.getuid?.() === 0 ? ['-u', 'root'] : [];
    const mcPorts: number[] = [];
    const memcacheds: Managed[] = [];
    for (const name of ['A', 'B', 'C']) {
      const port = await freePort();
      const m = startProcess(`memcached-${name}`, 'memcached', ['-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', '64', '-t', '2', ...user], logDir);
      await waitVersion(m, port);
      mcPorts.push(port);
      memcacheds.push(m);
    }
    const mcServers = mcPorts.map((p) => `127.0.0.1:${p}`);

    // nutcracker: one process, two pools; server_connections 1 (its default).
    const nut = { single: await freePort(), sharded: await freePort() };
    const nutConf = path.join(logDir, 'nutcracker.yml');
    const nutPool = (name: string, port: number, servers: string[]): string[] => [
      `${name}:`,
      `  listen: 127.0.0.1:${port}`,
      '  hash: fnv1a_64',
      '  distribution: ketama',
      '  server_connections: 1',
      '  auto_eject_hosts: false',
      '  preconnect: true',
      '  timeout: 2000',
      '  servers:',
      ...servers.map((s) => `    - ${s}:1`),
    ];
    fs.writeFileSync(nutConf, [...nutPool('single', nut.single, mcServers.slice(0, 1)), ...nutPool('sharded', nut.sharded, mcServers), ''].join('\n'));
    const nutcracker = startProcess('nutcracker', 'nutcracker', ['-c', nutConf, '-s', String(await freePort()), '-a', '127.0.0.1', '-o', path.join(logDir, 'nutcracker.out')], logDir);

    // poolside: the same two pools, 2 connections per server (the Redis bench's baseline).
    const ps = { single: await freePort(), sharded: await freePort() };
    const psConf = path.join(logDir, 'poolside.yaml');
    fs.writeFileSync(
      psConf,
      [
        '# generated by bench/memcached.ts',
        'admin: false',
        'log: { level: warn }',
        'shutdown_grace: 1s',
        'pools:',
        '  single:',
        '    protocol: memcached',
        `    listen: ['127.0.0.1:${ps.single}']`,
        `    servers: ['${mcServers[0]}']`,
        '    routing: failover',
        '    connections: { min: 2, max: 2 }',
        '  sharded:',
        '    protocol: memcached',
        `    listen: ['127.0.0.1:${ps.sharded}']`,
        `    servers: [${mcServers.map((s) => `'${s}'`).join(', ')}]`,
        '    routing: ketama',
        '    ketama: { hash: fnv1a_64 }',
        '    connections: { min: 2, max: 2 }',
        '',
      ].join('\n'),
    );
    const poolside = startProcess('poolside', process.execPath, [mainJs, '--config', psConf], logDir);

    // Keys: the multi-get keys on their ketama homes, and every key on A for the direct target.
    const { keys: mgetKeys, homes } = spreadKeys(mcPorts);
    const setText = (key: string): string => `set ${key} 0 0 ${VALUE.length}\r\n${VALUE.toString('latin1')}\r\n`;
    for (let i = 0; i < mgetKeys.length; i++) {
      const key = mgetKeys[i] as string;
      await mcCommand(mcPorts[homes[i] as number] as number, setText(key), /STORED\r\n$/);
      await mcCommand(mcPorts[0] as number, setText(key), /STORED\r\n$/);
    }
    const mgetReply = `${mgetKeys.map((k) => `VALUE ${k} 0 ${VALUE.length}\r\n${VALUE.toString('latin1')}\r\n`).join('')}END\r\n`;
    const mgetText = `get ${mgetKeys.join(' ')}\r\n`;
    await waitAnswer(nutcracker, nut.sharded, mgetText, mgetReply);
    await waitAnswer(nutcracker, nut.single, 'get nothing-here\r\n', 'END\r\n');
    // A poolside that cannot serve memcached (yet) leaves its rows empty, with the reason below
    // the table; a multi-get it answers wrongly fails only that workload's runs.
    const notes: string[] = [];
    let poolsideUp = true;
    try {
      await waitAnswer(poolside, ps.single, 'get nothing-here\r\n', 'END\r\n');
      await waitAnswer(poolside, ps.sharded, mgetText, mgetReply);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      poolsideUp = poolside.exited === null && !why.includes('get nothing-here');
      notes.push(`poolside: ${why.split('\n')[0]}`);
      log(`bench:memcached: poolside: ${why}`);
    }

    const targets: Target[] = [
      { kind: 'direct', single: mcPorts[0] as number, sharded: mcPorts[0] as number, pid: null },
      { kind: 'nutcracker', single: nut.single, sharded: nut.sharded, pid: nutcracker.proc.pid ?? null },
      ...(poolsideUp ? [{ kind: 'poolside' as const, single: ps.single, sharded: ps.sharded, pid: poolside.proc.pid ?? null }] : []),
    ];
    generators = new Generators(opts.generators, logDir);
    const chosen = (opts.only ?? WORKLOADS).map(workload);
    const header = [
      `memcached bench: node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
      `${version('memcached', ['-V'])} (-t 2); ${version('nutcracker', ['-V'])} (server_connections 1); poolside connections {min: 2, max: 2} per server`,
      `${opts.clients} connections over ${opts.generators} generator processes, ${VALUE.length}-byte values, ${opts.seconds}s runs, ` +
        `median of ${opts.reps}, targets interleaved and rotated${opts.quick ? ' (QUICK: smoke check only)' : ''}`,
      `mget10: one get of ${MGET_KEYS} keys that ketama (fnv1a_64) puts 4/3/3 on memcached A/B/C; "direct" is memcached A holding all ${MGET_KEYS}`,
    ];
    log(header.join('\n'));

    const cells = new Map<string, Cell>();
    const cellOf = (w: Workload, t: Target): Cell => {
      const key = `${w.name}/${t.kind}`;
      let cell = cells.get(key);
      if (cell === undefined) {
        cell = { samples: [], errors: [] };
        cells.set(key, cell);
      }
      return cell;
    };
    const once = async (w: Workload, t: Target, seconds: number): Promise<{ sample: Sample | null; error: string | null }> => {
      const port = w.sharded ? t.sharded : t.single;
      const startAt = Date.now() + 300;
      const endAt = startAt + seconds * 1000;
      const pids = { proxy: t.pid, mc: memcacheds.map((m) => m.proc.pid), gen: generators?.pids ?? [] };
      const running = generators?.run({ port, workload: w.name, mgetKeys, startAt, endAt }, opts.clients) ?? Promise.resolve([]);
      await sleep(Math.max(0, startAt - Date.now()));
      const proxy0 = t.pid === null ? 0 : cpuUs(t.pid);
      const mc0 = pids.mc.reduce((a: number, pid) => a + cpuUs(pid), 0);
      const results = await running;
      const proxy1 = t.pid === null ? 0 : cpuUs(t.pid);
      const mc1 = pids.mc.reduce((a: number, pid) => a + cpuUs(pid), 0);
      const error = results.find((r) => r.error !== null)?.error ?? null;
      const requests = results.reduce((a, r) => a + r.requests, 0);
      if (error !== null || requests === 0) return { sample: null, error: error ?? 'no request completed' };
      const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
      return {
        sample: {
          opsPerSec: requests / seconds,
          proxyCpuPerReq: t.pid === null ? null : (proxy1 - proxy0) / requests,
          memcachedCpuPerReq: (mc1 - mc0) / requests,
          generatorCpuPerReq: results.reduce((a, r) => a + r.cpuUs, 0) / requests,
          p50Ms: (latencies[Math.floor(latencies.length / 2)] ?? NaN) / 1000,
        },
        error: null,
      };
    };

    // Warm-up: JIT in poolside and the generators, connections opened.
    for (const w of chosen) for (const t of targets) await once(w, t, Math.min(1, opts.seconds));
    const total = opts.reps * chosen.length * targets.length;
    let done = 0;
    for (let rep = 0; rep < opts.reps; rep++) {
      for (const w of chosen) {
        const order = targets.map((_, i) => targets[(i + rep) % targets.length] as Target);
        for (const t of order) {
          const { sample, error } = await once(w, t, opts.seconds);
          const cell = cellOf(w, t);
          if (sample !== null) cell.samples.push(sample);
          if (error !== null) cell.errors.push(error);
          done++;
          log(
            `bench:memcached: [${done}/${total}] rep ${rep + 1} ${w.name} ${t.kind}: ` +
              (sample === null ? `FAILED (${error})` : `${fmt(sample.opsPerSec)} ops/s, proxy ${fmt(sample.proxyCpuPerReq, 2)} µs/req`),
          );
          for (const m of [...memcacheds, nutcracker, ...(poolsideUp ? [poolside] : [])]) if (m.exited !== null) throw new Error(`${m.name} ${m.exited} mid-run; see ${m.log}`);
        }
      }
    }

    const rows: string[][] = [];
    const ratio = new Map<string, number>();
    for (const w of chosen) {
      const nutOps = median(cellOf(w, targets[1] as Target).samples.map((s) => s.opsPerSec));
      for (const t of targets) {
        const cell = cellOf(w, t);
        const m = (f: (s: Sample) => number | null): number => median(cell.samples.map((s) => f(s) ?? NaN));
        const ops = m((s) => s.opsPerSec);
        ratio.set(`${w.name}/${t.kind}`, ops / nutOps);
        rows.push([
          w.name,
          t.kind,
          fmt(ops),
          Number.isFinite(ops / nutOps) ? `${fmt(ops / nutOps, 2)}x` : '-',
          fmt(m((s) => s.proxyCpuPerReq), 2),
          fmt(m((s) => s.memcachedCpuPerReq), 2),
          fmt(m((s) => s.generatorCpuPerReq), 2),
          fmt(m((s) => s.p50Ms), 3),
          `${cell.samples.length}/${opts.reps}`,
        ]);
      }
    }
    const out = [...header, '', table(['workload', 'target', 'ops/s', 'vs nutcracker', 'proxy CPU µs/req', 'memcached CPU µs/req', 'generator CPU µs/req', 'p50 ms', 'runs'], rows)];
    const targetLine = (label: string, key: string, goal: number): string => {
      const r = ratio.get(key);
      return r === undefined ? '' : `  ${label}: poolside ${fmt(r, 2)}x nutcracker (target >= ${goal}x): ${Number.isFinite(r) && r >= goal ? 'MET' : 'MISS'}`;
    };
    const goals = [
      targetLine('P1 get', 'get P1/poolside', 1),
      targetLine('P1 set', 'set P1/poolside', 1),
      targetLine('P16 get', 'get P16/poolside', 2),
      targetLine('P16 set', 'set P16/poolside', 2),
    ].filter((l) => l !== '');
    if (goals.length > 0) out.push('', 'Targets (issue 13):', ...goals);
    const problems = [...cells.entries()].flatMap(([key, cell]) => [...new Set(cell.errors)].map((e) => `  ${key}: ${e}`));
    if (problems.length > 0 || notes.length > 0) out.push('', 'PROBLEMS:', ...notes.map((n) => `  ${n}`), ...problems);
    process.stdout.write(`\n${out.join('\n')}\n`);
    return 0;
  } finally {
    stopAll();
    if (opts.logDir === null) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

process.on('exit', stopAll);
const roleAt = process.argv.indexOf('--role');
if (roleAt >= 0 && process.argv[roleAt + 1] === 'gen') {
  generatorRole();
} else if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === SELF) {
  process.on('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  let parsed: MemcachedBenchOptions | 'help';
  try {
    parsed = parseMemcachedOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:memcached: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  if (parsed === 'help') process.stdout.write(HELP);
  else {
    try {
      process.exitCode = await runMemcachedBench(parsed);
    } catch (err) {
      process.stderr.write(`bench:memcached: ${err instanceof Error ? err.message : String(err)}\n`);
      stopAll();
      process.exitCode = 1;
    }
  }
}
