/**
 * The PHP-FPM workload (issue 12): K client PROCESSES (php-cli + phpredis, like FPM workers), each
 * looping connect → GET, GET, GET, SET EX, INCR (each waiting for its reply) → close, against
 * redis-server directly (TCP, unix), nutcracker (TCP, unix), poolside (TCP, unix) and the Node
 * floor: a minimal multiplexing relay written below (accept, frame RESP by counting, one backend
 * connection, replies back in FIFO order; nothing else). Targets interleaved, order rotated on each
 * repetition, medians reported; proxy, redis-server and load-generator CPU from /proc and getrusage.
 *
 *   npm run bench:short-lived                      local (~2 min)
 *   npm run bench:short-lived -- --remote          a 1 ms each way delay relay (bench/delay-relay.c, needs cc)
 *                                                  in front of redis
 *   npm run bench:short-lived -- --memory          RSS with 1,000 / 10,000 idle clients, after a burst
 *   npm run bench:short-lived -- --protocol memcached   the same with memcached and PHP's Memcached
 *                                                       extension (connect, 3 get, set, increment, quit)
 *   npm run bench:short-lived -- --help
 *
 * Prints, never asserts. See bench/README.md.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDelayRelay, checkDelay, delayRelayArgs, describeModel, relayStats } from './delay-relay.js';
import type { DelayCheck, RelayStats } from './delay-relay.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Roles run as separate processes from this same file: the floor relays. (The --remote delay relay
// is C: bench/delay-relay.c, built and checked by bench/delay-relay.ts.)

/** Length of the RESP value starting at `from` in `buf`, or -1 if it is not complete yet. */
function respLength(buf: Buffer, from: number): number {
  const end = buf.indexOf(13, from);
  if (end < 0 || end + 1 >= buf.length) return -1;
  const type = buf[from];
  const head = end + 2;
  if (type === 0x24 /* $ */) {
    const n = Number(buf.toString("latin1", from + 1, end));
    if (n < 0) return head - from;
    return head + n + 2 <= buf.length ? head + n + 2 - from : -1;
  }
  if (type === 0x2a /* * */) {
    const n = Number(buf.toString("latin1", from + 1, end));
    let at = head;
    for (let i = 0; i < n; i++) {
      const len = respLength(buf, at);
      if (len < 0) return -1;
      at += len;
    }
    return at - from;
  }
  return head - from; // + - : and inline
}

/**
 * The Node floor: what any Node relay pays for its sockets. One backend connection, requests
 * framed by counting and forwarded as read (one write per client read), replies framed and written
 * to their client (consecutive replies for one client in one write).
 */
function floorRelay(listenTcp: number, listenUnix: string, backendPort: number): void {
  const fifo: net.Socket[] = [];
  const backend = net.connect({ host: '127.0.0.1', port: backendPort });
  backend.setNoDelay(true);
  let pending: Buffer | null = null;
  backend.on('data', (chunk: Buffer) => {
    const buf: Buffer = pending === null ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    let runStart = 0;
    let runClient: net.Socket | null = null;
    for (;;) {
      const len = respLength(buf, at);
      if (len < 0) break;
      const client = fifo.shift() as net.Socket;
      if (client !== runClient) {
        if (runClient !== null && !runClient.destroyed) runClient.write(buf.subarray(runStart, at));
        runClient = client;
        runStart = at;
      }
      at += len;
    }
    if (runClient !== null && !runClient.destroyed) runClient.write(buf.subarray(runStart, at));
    pending = at < buf.length ? buf.subarray(at) : null;
  });
  backend.on('error', (err) => {
    process.stderr.write(`floor: backend ${err.message}\n`);
    process.exit(1);
  });
  const onClient = (socket: net.Socket): void => {
    let partial: Buffer | null = null;
    socket.on('data', (chunk: Buffer) => {
      const buf: Buffer = partial === null ? chunk : Buffer.concat([partial, chunk]);
      let at = 0;
      for (;;) {
        const len = respLength(buf, at);
        if (len < 0) break;
        fifo.push(socket);
        at += len;
      }
      if (at > 0) backend.write(at === buf.length ? buf : buf.subarray(0, at));
      partial = at < buf.length ? buf.subarray(at) : null;
    });
    socket.on('error', () => socket.destroy());
  };
  const tcp = net.createServer({ noDelay: true }, onClient);
  tcp.listen(listenTcp, '127.0.0.1');
  try {
    fs.unlinkSync(listenUnix);
  } catch {
    // not there
  }
  net.createServer(onClient).listen(listenUnix);
}

/**
 * Length of the memcached text request at `from` and whether a reply comes back: 'retrieval'
 * (VALUE blocks up to END), 'line' (one line), 'none' (quit). null if it is not complete yet. Enough
 * for what PHP's Memcached sends in this bench: get, set (with its data block), incr, version, quit.
 */
function mcRequest(buf: Buffer, from: number): { len: number; reply: 'retrieval' | 'line' | 'none' } | null {
  const end = buf.indexOf(10, from);
  if (end < 0) return null;
  const head = end + 1 - from;
  const c0 = buf[from];
  if (c0 === 0x67 /* g */) return { len: head, reply: 'retrieval' };
  if (c0 === 0x71 /* q */) return { len: head, reply: 'none' };
  if (c0 === 0x73 /* s: set key flags exptime bytes */) {
    const words = buf.toString('latin1', from, end).trim().split(' ');
    const total = head + Number(words[4]) + 2;
    return from + total <= buf.length ? { len: total, reply: 'line' } : null;
  }
  return { len: head, reply: 'line' };
}

/** Length of the memcached reply at `from` (VALUE blocks up to END, or one line), or -1. */
function mcReplyLength(buf: Buffer, from: number, retrieval: boolean): number {
  let at = from;
  for (;;) {
    const end = buf.indexOf(10, at);
    if (end < 0) return -1;
    if (!retrieval || buf[at] !== 0x56 /* V */) return end + 1 - from;
    const bytes = Number(buf.toString('latin1', buf.lastIndexOf(32, end) + 1, end - 1));
    at = end + 1 + bytes + 2;
    if (at > buf.length) return -1;
  }
}

/** The Node floor for memcached: floorRelay's design, memcached's framing, `quit` closes the client. */
function mcFloorRelay(listenTcp: number, listenUnix: string, backendPort: number): void {
  const fifo: { client: net.Socket; retrieval: boolean }[] = [];
  const backend = net.connect({ host: '127.0.0.1', port: backendPort });
  backend.setNoDelay(true);
  let pending: Buffer | null = null;
  backend.on('data', (chunk: Buffer) => {
    const buf: Buffer = pending === null ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    let runStart = 0;
    let runClient: net.Socket | null = null;
    for (;;) {
      const head = fifo[0];
      if (head === undefined) break;
      const len = mcReplyLength(buf, at, head.retrieval);
      if (len < 0) break;
      fifo.shift();
      if (head.client !== runClient) {
        if (runClient !== null && !runClient.destroyed) runClient.write(buf.subarray(runStart, at));
        runClient = head.client;
        runStart = at;
      }
      at += len;
    }
    if (runClient !== null && !runClient.destroyed) runClient.write(buf.subarray(runStart, at));
    pending = at < buf.length ? buf.subarray(at) : null;
  });
  backend.on('error', (err) => {
    process.stderr.write(`floor: backend ${err.message}\n`);
    process.exit(1);
  });
  const onClient = (socket: net.Socket): void => {
    let partial: Buffer | null = null;
    socket.on('data', (chunk: Buffer) => {
      const buf: Buffer = partial === null ? chunk : Buffer.concat([partial, chunk]);
      let at = 0;
      let quit = false;
      for (;;) {
        const request = at < buf.length ? mcRequest(buf, at) : null;
        if (request === null) break;
        if (request.reply === 'none') {
          quit = true;
          break;
        }
        fifo.push({ client: socket, retrieval: request.reply === 'retrieval' });
        at += request.len;
      }
      if (at > 0) backend.write(at === buf.length ? buf : buf.subarray(0, at));
      partial = at < buf.length ? buf.subarray(at) : null;
      if (quit) socket.end();
    });
    socket.on('error', () => socket.destroy());
  };
  const tcp = net.createServer({ noDelay: true }, onClient);
  tcp.listen(listenTcp, '127.0.0.1');
  try {
    fs.unlinkSync(listenUnix);
  } catch {
    // not there
  }
  net.createServer(onClient).listen(listenUnix);
}

// ---------------------------------------------------------------------------------------------
// The PHP client (one per process)

const PHP_CLIENT = String.raw`<?php
// args: target mode startAtMs endAtMs id
[$self, $target, $mode, $startAt, $endAt, $id] = $argv;
$startAt = (float)$startAt / 1000; $endAt = (float)$endAt / 1000;
$isUnix = str_starts_with($target, 'unix:');
$host = $isUnix ? substr($target, 5) : explode(':', $target)[0];
$port = $isUnix ? 0 : (int)explode(':', $target)[1];
$reqLat = []; $cmdLat = []; $errors = 0; $lastError = ''; $done = 0;
$k1 = "sl:$id:a"; $k2 = "sl:$id:b"; $k3 = "sl:$id:c"; $ks = "sl:$id:s"; $kc = "sl:$id:n";
if (microtime(true) < $startAt) time_sleep_until($startAt);
$ru0 = getrusage();
while (microtime(true) < $endAt) {
  $t0 = hrtime(true);
  try {
    $r = new Redis();
    if ($isUnix) $r->connect($host); else $r->connect($host, $port, 2.0);
    if ($mode === 'req') {
      $t = hrtime(true);
      $r->get($k1); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
      $r->get($k2); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
      $r->get($k3); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
      $ok = $r->setex($ks, 60, 'value-' . $done); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
      $v = $r->incr($kc); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000);
      if ($ok !== true || !is_int($v)) { $errors++; $lastError = 'bad reply'; }
    } else {
      $ok = $r->set($ks, 'v'); $g = $r->get($ks);
      if ($ok !== true || $g !== 'v') { $errors++; $lastError = 'bad reply'; }
    }
    $r->close();
    $done++;
    $reqLat[] = intdiv(hrtime(true) - $t0, 1000);
  } catch (Throwable $e) {
    $errors++; $lastError = $e->getMessage();
    usleep(1000);
  }
}
$ru1 = getrusage();
$cpu = ($ru1['ru_utime.tv_sec'] - $ru0['ru_utime.tv_sec']) * 1e6 + ($ru1['ru_utime.tv_usec'] - $ru0['ru_utime.tv_usec'])
     + ($ru1['ru_stime.tv_sec'] - $ru0['ru_stime.tv_sec']) * 1e6 + ($ru1['ru_stime.tv_usec'] - $ru0['ru_stime.tv_usec']);
echo json_encode(['done' => $done, 'errors' => $errors, 'lastError' => $lastError, 'cpuUs' => $cpu,
  'req' => implode(',', $reqLat), 'cmd' => implode(',', $cmdLat)]), "\n";
`;

/** The same loop with PHP's Memcached extension (libmemcached, text protocol): 3 get, set with an expiry, increment, quit. */
const PHP_MC_CLIENT = String.raw`<?php
// args: target mode startAtMs endAtMs id
[$self, $target, $mode, $startAt, $endAt, $id] = $argv;
$startAt = (float)$startAt / 1000; $endAt = (float)$endAt / 1000;
$isUnix = str_starts_with($target, 'unix:');
$host = $isUnix ? substr($target, 5) : explode(':', $target)[0];
$port = $isUnix ? 0 : (int)explode(':', $target)[1];
$reqLat = []; $cmdLat = []; $errors = 0; $lastError = ''; $done = 0;
$k1 = "sl:$id:a"; $k2 = "sl:$id:b"; $k3 = "sl:$id:c"; $ks = "sl:$id:s"; $kc = "sl:$id:n";
$open = function () use ($host, $port) {
  $m = new Memcached();
  $m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 2000);
  $m->addServer($host, $port);
  return $m;
};
// The counter must exist: increment does not create it in the text protocol.
$m = $open(); $m->set($kc, 0); $m->quit();
$hit = fn ($m) => in_array($m->getResultCode(), [Memcached::RES_SUCCESS, Memcached::RES_NOTFOUND], true);
if (microtime(true) < $startAt) time_sleep_until($startAt);
$ru0 = getrusage();
while (microtime(true) < $endAt) {
  $t0 = hrtime(true);
  $m = $open();
  if ($mode === 'req') {
    $t = hrtime(true);
    $m->get($k1); $ok = $hit($m); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
    $m->get($k2); $ok = $ok && $hit($m); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
    $m->get($k3); $ok = $ok && $hit($m); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
    $ok = $m->set($ks, 'value-' . $done, 60) && $ok; $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000); $t = $n;
    $v = $m->increment($kc); $n = hrtime(true); $cmdLat[] = intdiv($n - $t, 1000);
    $ok = $ok && is_int($v);
  } else {
    $ok = $m->set($ks, 'v') === true && $m->get($ks) === 'v';
  }
  $why = $m->getResultMessage();
  $m->quit();
  if ($ok) { $done++; $reqLat[] = intdiv(hrtime(true) - $t0, 1000); }
  else { $errors++; $lastError = $why; usleep(1000); }
}
$ru1 = getrusage();
$cpu = ($ru1['ru_utime.tv_sec'] - $ru0['ru_utime.tv_sec']) * 1e6 + ($ru1['ru_utime.tv_usec'] - $ru0['ru_utime.tv_usec'])
     + ($ru1['ru_stime.tv_sec'] - $ru0['ru_stime.tv_sec']) * 1e6 + ($ru1['ru_stime.tv_usec'] - $ru0['ru_stime.tv_usec']);
echo json_encode(['done' => $done, 'errors' => $errors, 'lastError' => $lastError, 'cpuUs' => $cpu,
  'req' => implode(',', $reqLat), 'cmd' => implode(',', $cmdLat)]), "\n";
`;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  clients: number;
  seconds: number;
  churnSeconds: number;
  reps: number;
  remote: boolean;
  delayMs: number;
  memory: boolean;
  churn: boolean;
  only: string[] | null;
  logs: string | null;
  /** Another build's dist/ to run beside this one (targets "<label> TCP/unix"), e.g. the code before a change. */
  compare: string | null;
  /** Node flags for this build's poolside only (not --compare's, not the floor's): `--compare dist --node-options …` measures a flag. */
  nodeOptions: string[];
  /** redis: phpredis against redis-server; memcached: PHP's Memcached extension against memcached. */
  protocol: 'redis' | 'memcached';
}

const HELP = `usage: npm run bench:short-lived -- [options]

  --clients K       client processes (php-cli + phpredis), default 8
  --seconds S       length of one measured run, default 3
  --reps N          repetitions (median reported), default 3
  --remote          put a delay relay (bench/delay-relay.c, compiled with cc: --delay-ms each way,
                    connect modelled) in front of redis; the header shows its measured precision
  --delay-ms MS     default 1 (fractional allowed)
  --no-churn        skip the connection-churn section (connect, SET, GET, close)
  --churn-seconds S default 2
  --memory          also measure RSS with 1,000 and 10,000 idle clients and after a burst
  --only LIST       only these targets (comma separated names from the table)
  --logs DIR        keep configs and process logs in DIR
  --compare DIR     also run another build's dist/ (e.g. a copy taken before a change) as
                    targets "before TCP" and "before unix", interleaved with the rest
  --node-options F  node flags for this build's poolside only (space separated), e.g.
                    --compare dist --node-options --max-semi-space-size=32 measures a V8 flag
  --protocol P      redis (default: php-redis, redis-server) or memcached (PHP's Memcached
                    extension: connect, 3 get, set with expiry, increment, quit; memcached)
`;

function parseOptions(argv: string[]): Options | 'help' {
  const o: Options = { clients: 8, seconds: 3, churnSeconds: 2, reps: 3, remote: false, delayMs: 1, memory: false, churn: true, only: null, logs: null, compare: null, nodeOptions: [], protocol: 'redis' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} needs a positive number`);
      return v;
    };
    if (flag === '--help' || flag === '-h') return 'help';
    else if (flag === '--clients') o.clients = num();
    else if (flag === '--seconds') o.seconds = num();
    else if (flag === '--churn-seconds') o.churnSeconds = num();
    else if (flag === '--reps') o.reps = num();
    else if (flag === '--remote') o.remote = true;
    else if (flag === '--delay-ms') o.delayMs = num();
    else if (flag === '--memory') o.memory = true;
    else if (flag === '--no-churn') o.churn = false;
    else if (flag === '--only') o.only = (argv[++i] ?? '').split(',');
    else if (flag === '--logs') o.logs = argv[++i] ?? null;
    else if (flag === '--compare') o.compare = path.resolve(argv[++i] ?? '');
    else if (flag === '--node-options') o.nodeOptions = (argv[++i] ?? '').split(' ').filter((f) => f !== '');
    else if (flag === '--protocol') {
      const p = argv[++i];
      if (p !== 'redis' && p !== 'memcached') throw new Error(`--protocol: redis or memcached, not ${String(p)}`);
      o.protocol = p;
    }
    else throw new Error(`unknown option ${flag}\n${HELP}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Processes

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const children: ChildProcess[] = [];

function start(name: string, command: string, args: string[], logDir: string): ChildProcess {
  const fd = fs.openSync(path.join(logDir, `${name}.log`), 'a');
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`short-lived: ${name} exited (${signal ?? code}); see ${logDir}/${name}.log\n`);
  });
  return child;
}

let stopping = false;
function stopAll(): void {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
}

function cpuUs(pid: number): number {
  const fields = (fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] as string).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1e6;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]);
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

function connectTo(target: string): net.Socket {
  return target.startsWith('unix:') ? net.connect({ path: target.slice(5) }) : net.connect({ host: '127.0.0.1', port: Number(target.split(':')[1]) });
}

/** What a target is asked to show it serves (PING, or memcached's version) and how the answer starts. */
const HELLO = {
  redis: { request: '*1\r\n$4\r\nPING\r\n', answer: '+PONG' },
  memcached: { request: 'version\r\n', answer: 'VERSION ' },
} as const;
let hello: { request: string; answer: string } = HELLO.redis;

function ping(target: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connectTo(target);
    let text = '';
    const t = setTimeout(() => done(false), 1000);
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    s.on('connect', () => s.write(hello.request));
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (text.includes('\r\n')) done(text.startsWith(hello.answer));
    });
    s.on('error', () => done(false));
  });
}

async function waitPing(target: string, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (await ping(target)) return;
    await sleep(100);
  }
  throw new Error(`${what} did not answer PING on ${target}`);
}

// ---------------------------------------------------------------------------------------------
// Runs

interface Target {
  name: string;
  address: string;
  /** The process whose CPU is charged to this target: the proxy, or null for direct. */
  proxyPid: number | null;
  kind: 'direct' | 'nutcracker' | 'poolside' | 'floor';
  /** The backend server process, when it is not the main one (memcached's unix socket needs its own). */
  serverPid?: number;
}

/** The --remote delay relay: its process, and the file its counters are written to on SIGUSR1. */
interface Relay {
  pid: number;
  statsFile: string;
}

interface RunResult {
  reqPerSec: number;
  errors: number;
  lastError: string;
  reqP50: number;
  reqP99: number;
  cmdP50: number;
  cmdP99: number;
  proxyCpuPerReq: number | null;
  redisCpuPerReq: number;
  relayCpuPerReq: number | null;
  /** The delay relay's deliveries during the run: µs after their due time (negative: early). */
  relayLate: RelayStats['late_us'] | null;
  genCpuPerReq: number;
  done: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number;
}

interface PhpOut {
  done: number;
  errors: number;
  lastError: string;
  cpuUs: number;
  req: string;
  cmd: string;
}

async function runOnce(
  target: Target,
  mode: 'req' | 'churn',
  clients: number,
  seconds: number,
  phpFile: string,
  redisPid: number,
  relay: Relay | null,
): Promise<RunResult> {
  const startAt = Date.now() + 400 + clients * 30;
  const endAt = startAt + seconds * 1000;
  const outs: Promise<string>[] = [];
  for (let i = 0; i < clients; i++) {
    outs.push(
      new Promise((resolve) => {
        const p = spawn('php', [phpFile, target.address, mode, String(startAt), String(endAt), String(i)], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
        p.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
        p.on('close', () => resolve(out));
      }),
    );
  }
  const pids = [target.proxyPid, target.serverPid ?? redisPid, relay?.pid ?? null];
  let cpuStart: (number | null)[] = [];
  let cpuEnd: (number | null)[] = [];
  const read = (): (number | null)[] => pids.map((pid) => (pid === null ? null : cpuUs(pid)));
  if (relay !== null) await relayStats(relay.pid, relay.statsFile); // counts from here
  await sleep(startAt - Date.now());
  cpuStart = read();
  await sleep(endAt - Date.now());
  cpuEnd = read();
  const late = relay === null ? null : ((await relayStats(relay.pid, relay.statsFile))?.late_us ?? null);
  const texts = await Promise.all(outs);
  let done = 0;
  let errors = 0;
  let lastError = '';
  let gen = 0;
  const req: number[] = [];
  const cmd: number[] = [];
  for (const text of texts) {
    let o: PhpOut;
    try {
      o = JSON.parse(text.trim().split('\n').pop() as string) as PhpOut;
    } catch {
      errors++;
      lastError = text.slice(0, 200);
      continue;
    }
    done += o.done;
    errors += o.errors;
    if (o.lastError !== '') lastError = o.lastError;
    gen += o.cpuUs;
    if (o.req !== '') for (const v of o.req.split(',')) req.push(Number(v));
    if (o.cmd !== '') for (const v of o.cmd.split(',')) cmd.push(Number(v));
  }
  req.sort((a, b) => a - b);
  cmd.sort((a, b) => a - b);
  const delta = (i: number): number | null => {
    const a = cpuStart[i];
    const b = cpuEnd[i];
    return a === null || a === undefined || b === null || b === undefined || done === 0 ? null : (b - a) / done;
  };
  return {
    reqPerSec: done / seconds,
    errors,
    lastError,
    reqP50: percentile(req, 50) / 1000,
    reqP99: percentile(req, 99) / 1000,
    cmdP50: percentile(cmd, 50) / 1000,
    cmdP99: percentile(cmd, 99) / 1000,
    proxyCpuPerReq: delta(0),
    redisCpuPerReq: delta(1) ?? 0,
    relayCpuPerReq: delta(2),
    relayLate: late,
    genCpuPerReq: done === 0 ? 0 : gen / done,
    done,
  };
}

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

async function measureAll(
  targets: Target[],
  mode: 'req' | 'churn',
  opts: Options,
  seconds: number,
  phpFile: string,
  redisPid: number,
  relay: Relay | null,
): Promise<Map<string, RunResult[]>> {
  const results = new Map<string, RunResult[]>(targets.map((t) => [t.name, []]));
  // Warm-up (JIT, connections): one short unmeasured run per target.
  for (const t of targets) await runOnce(t, mode, opts.clients, 1, phpFile, redisPid, relay);
  for (let rep = 0; rep < opts.reps; rep++) {
    const order = targets.map((_, i) => targets[(i + rep) % targets.length] as Target);
    for (const t of order) {
      const r = await runOnce(t, mode, opts.clients, seconds, phpFile, redisPid, relay);
      (results.get(t.name) as RunResult[]).push(r);
      process.stderr.write(`  ${mode} rep ${rep + 1} ${t.name}: ${r.reqPerSec.toFixed(0)}/s, proxy ${r.proxyCpuPerReq?.toFixed(0) ?? '-'} µs/req, errors ${r.errors}\n`);
    }
  }
  return results;
}

function fmt(n: number | null, digits = 0): string {
  if (n === null || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Memory: idle clients held open by this process.

async function openIdle(address: string, n: number, into: net.Socket[]): Promise<void> {
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        () =>
          new Promise<void>((resolve, reject) => {
            const s = connectTo(address);
            s.once('connect', () => s.write(hello.request));
            s.once('data', () => resolve());
            s.once('error', reject);
            into.push(s);
          }),
      ),
    );
  }
}

async function memory(targets: Target[], opts: Options, phpFile: string, redisPid: number, redisAddress: string): Promise<string> {
  const rows: string[][] = [];
  for (const t of targets) {
    const pid = t.proxyPid ?? t.serverPid ?? redisPid;
    const base = rssKb(pid);
    const held: net.Socket[] = [];
    await openIdle(t.address, 1000, held);
    await sleep(500);
    const r1k = rssKb(pid);
    await openIdle(t.address, 9000, held);
    await sleep(500);
    const r10k = rssKb(pid);
    for (const s of held) s.destroy();
    await sleep(1000);
    const afterIdle = rssKb(pid);
    await runOnce(t, 'req', opts.clients, opts.seconds, phpFile, redisPid, null);
    await sleep(2000);
    const afterBurst = rssKb(pid);
    rows.push([t.name, fmt(base / 1024, 1), fmt(r1k / 1024, 1), fmt(r10k / 1024, 1), fmt((r10k - base) / 10000, 1), fmt(afterIdle / 1024, 1), fmt(afterBurst / 1024, 1)]);
    process.stderr.write(`  memory ${t.name} done\n`);
  }
  void redisAddress;
  return table(['target (process)', 'RSS base MB', '1,000 idle', '10,000 idle', 'KB per client', 'after close', `after ${opts.seconds}s burst`], rows);
}

// ---------------------------------------------------------------------------------------------

/** What the bench runs that may not be installed: php-cli with phpredis (or memcached), the server, nutcracker. */
function missingTools(protocol: 'redis' | 'memcached'): string[] {
  const missing: string[] = [];
  const works = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  const extension = protocol === 'redis' ? 'redis' : 'memcached';
  if (!works('php', ['-r', `exit(extension_loaded("${extension}") ? 0 : 1);`])) missing.push(`php-cli with the ${extension} extension`);
  if (protocol === 'redis' && !works('redis-server', ['--version'])) missing.push('redis-server');
  if (protocol === 'memcached' && !works('memcached', ['-V'])) missing.push('memcached');
  if (!works('nutcracker', ['--version'])) missing.push('nutcracker');
  return missing;
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const opts = parsed;
  const memcached = opts.protocol === 'memcached';
  hello = HELLO[opts.protocol];
  const missing = missingTools(opts.protocol);
  if (missing.length > 0) {
    const packages = memcached ? 'php-cli php-memcached memcached nutcracker' : 'php-cli php-redis redis-server nutcracker';
    process.stderr.write(`short-lived bench: missing ${missing.join(', ')}: apt-get install -y ${packages}\n`);
    return 1;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-sl-'));
  const logDir = opts.logs ?? dir;
  fs.mkdirSync(logDir, { recursive: true });
  const phpFile = path.join(dir, 'client.php');
  fs.writeFileSync(phpFile, memcached ? PHP_MC_CLIENT : PHP_CLIENT);
  const mainJs = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(mainJs)) throw new Error('dist/main.js missing: npm run build');

  try {
    const redisPort = await freePort();
    const redisSock = path.join(dir, memcached ? 'memcached.sock' : 'redis.sock');
    // memcached listens on TCP or on a unix socket, not both: "direct unix" gets a second one.
    const mcUser = process.getuid?.() === 0 ? ['-u', 'root'] : [];
    const mcArgs = ['-U', '0', '-m', '64', '-t', '2', '-c', '15000', ...mcUser];
    const redis = memcached
      ? start('memcached', 'memcached', ['-p', String(redisPort), '-l', '127.0.0.1', ...mcArgs], logDir)
      : start('redis-server', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--unixsocket', redisSock, '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', '15000'], logDir);
    await waitPing(`127.0.0.1:${redisPort}`, memcached ? 'memcached' : 'redis-server');
    let unixServerPid: number | undefined;
    if (memcached && !opts.remote) {
      const unixServer = start('memcached-unix', 'memcached', ['-s', redisSock, '-a', '0666', ...mcArgs], logDir);
      await waitPing(`unix:${redisSock}`, 'memcached (unix socket)');
      unixServerPid = unixServer.pid;
    }
    let backendPort = redisPort;
    let relay: Relay | null = null;
    let model: string[] = [];
    if (opts.remote) {
      const binary = buildDelayRelay(dir);
      backendPort = await freePort();
      const statsFile = path.join(dir, 'delay-relay.stats');
      const child = start('delay-relay', binary, delayRelayArgs(backendPort, redisPort, opts.delayMs, statsFile), logDir);
      relay = { pid: child.pid as number, statsFile };
      await waitPing(`127.0.0.1:${backendPort}`, 'delay relay');
      // The model this run is made against, measured: through the relay and straight to the server.
      process.stderr.write('checking the delay model\n');
      const counts = [...new Set([1, opts.clients])];
      checkDelay(binary, backendPort, opts.clients, 1, hello.request); // warm-up: the relay's early arming settles
      await relayStats(relay.pid, statsFile);
      const through: DelayCheck[] = counts.map((k) => checkDelay(binary, backendPort, k, 2, hello.request));
      const stats = await relayStats(relay.pid, statsFile);
      const direct: DelayCheck[] = counts.map((k) => checkDelay(binary, redisPort, k, 2, hello.request));
      model = describeModel(opts.delayMs, memcached ? 'memcached' : 'redis-server', through, direct, stats);
    }
    const targets: Target[] = [];
    targets.push({ name: 'direct TCP', address: `127.0.0.1:${backendPort}`, proxyPid: null, kind: 'direct' });
    if (!opts.remote) targets.push({ name: 'direct unix', address: `unix:${redisSock}`, proxyPid: null, kind: 'direct', serverPid: unixServerPid });

    // nutcracker: one process, two pools (TCP and unix listeners), server_connections 1 (its default)
    const nutPort = await freePort();
    const nutSock = path.join(dir, 'nut.sock');
    const nutConf = path.join(logDir, 'nutcracker.yml');
    const pool = (listen: string): string[] => [`  listen: ${listen}`, '  hash: fnv1a_64', '  distribution: ketama', `  redis: ${!memcached}`, '  server_connections: 1', '  auto_eject_hosts: false', '  preconnect: true', '  timeout: 2000', '  servers:', `    - 127.0.0.1:${backendPort}:1`];
    fs.writeFileSync(nutConf, ['tcp:', ...pool(`127.0.0.1:${nutPort}`), 'unix:', ...pool(`${nutSock} 0666`), ''].join('\n'));
    const nut = start('nutcracker', 'nutcracker', ['-c', nutConf, '-s', String(await freePort()), '-a', '127.0.0.1', '-o', path.join(logDir, 'nutcracker.out'), '-p', path.join(dir, 'nut.pid')], logDir);
    await waitPing(`127.0.0.1:${nutPort}`, 'nutcracker');
    await waitPing(`unix:${nutSock}`, 'nutcracker unix');
    targets.push({ name: 'nutcracker TCP', address: `127.0.0.1:${nutPort}`, proxyPid: nut.pid as number, kind: 'nutcracker' });
    targets.push({ name: 'nutcracker unix', address: `unix:${nutSock}`, proxyPid: nut.pid as number, kind: 'nutcracker' });

    // poolside: the example config's defaults, one failover pool, TCP and unix listeners
    const psPort = await freePort();
    const psSock = path.join(dir, 'poolside.sock');
    const psConf = path.join(logDir, 'poolside.yaml');
    fs.writeFileSync(
      psConf,
      [
        'admin: false',
        'log: { level: warn }',
        'pools:',
        '  bench:',
        `    protocol: ${opts.protocol}`,
        `    listen: ['127.0.0.1:${psPort}', 'unix:${psSock}']`,
        `    servers: ['127.0.0.1:${backendPort}']`,
        '    clients: { max: 12000 }',
        '',
      ].join('\n'),
    );
    const ps = start('poolside', process.execPath, [...opts.nodeOptions, mainJs, '--config', psConf], logDir);
    await waitPing(`127.0.0.1:${psPort}`, 'poolside');
    targets.push({ name: 'poolside TCP', address: `127.0.0.1:${psPort}`, proxyPid: ps.pid as number, kind: 'poolside' });
    targets.push({ name: 'poolside unix', address: `unix:${psSock}`, proxyPid: ps.pid as number, kind: 'poolside' });

    if (opts.compare !== null) {
      const cmpPort = await freePort();
      const cmpSock = path.join(dir, 'before.sock');
      const cmpConf = path.join(logDir, 'before.yaml');
      fs.writeFileSync(cmpConf, fs.readFileSync(psConf, 'utf8').replace(`127.0.0.1:${psPort}`, `127.0.0.1:${cmpPort}`).replace(psSock, cmpSock));
      const cmp = start('before', process.execPath, [path.join(opts.compare, 'main.js'), '--config', cmpConf], logDir);
      await waitPing(`127.0.0.1:${cmpPort}`, 'poolside (--compare)');
      targets.push({ name: 'before TCP', address: `127.0.0.1:${cmpPort}`, proxyPid: cmp.pid as number, kind: 'poolside' });
      targets.push({ name: 'before unix', address: `unix:${cmpSock}`, proxyPid: cmp.pid as number, kind: 'poolside' });
    }

    // the Node floor relay
    const flPort = await freePort();
    const flSock = path.join(dir, 'floor.sock');
    const fl = start('floor', process.execPath, ['--import', 'tsx', SELF, '--role', memcached ? 'mc-floor' : 'floor', String(flPort), flSock, String(backendPort)], logDir);
    await waitPing(`127.0.0.1:${flPort}`, 'floor relay');
    await waitPing(`unix:${flSock}`, 'floor relay unix');
    targets.push({ name: 'floor TCP', address: `127.0.0.1:${flPort}`, proxyPid: fl.pid as number, kind: 'floor' });
    targets.push({ name: 'floor unix', address: `unix:${flSock}`, proxyPid: fl.pid as number, kind: 'floor' });

    const chosen = opts.only === null ? targets : targets.filter((t) => (opts.only as string[]).includes(t.name));
    const redisPid = redis.pid as number;
    const header = [
      (memcached
        ? `short-lived bench (memcached): ${opts.clients} php-cli processes (Memcached ${execFileSync('php', ['-r', 'echo phpversion("memcached");'], { encoding: 'utf8' })}, text protocol), ` +
          `connect → 3 get, set with expiry, increment → quit`
        : `short-lived bench: ${opts.clients} php-cli processes (phpredis ${execFileSync('php', ['-r', 'echo phpversion("redis");'], { encoding: 'utf8' })}), ` +
          `connect → 3 GET, SET EX, INCR → close`) +
        `; ${opts.seconds}s runs, median of ${opts.reps}, targets interleaved and rotated` +
        (opts.remote ? `; REMOTE: ${opts.delayMs} ms each way in front of ${memcached ? 'memcached' : 'redis-server'} (connect: one RTT + one way)` : '; local'),
      `node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; nutcracker server_connections 1; poolside example defaults (connections min 2 max 8)${opts.nodeOptions.length > 0 ? `; poolside (not before) runs with node ${opts.nodeOptions.join(' ')}` : ''}`,
      ...model,
    ];
    process.stderr.write(`${header.join('\n')}\n`);
    const results = await measureAll(chosen, 'req', opts, opts.seconds, phpFile, redisPid, relay);
    const med = (name: string, f: (r: RunResult) => number | null): number => median((results.get(name) ?? []).map((r) => f(r) ?? NaN));
    const direct = med('direct TCP', (r) => r.reqPerSec);
    const nutFor = (t: Target): number => med(t.address.startsWith('unix:') && !opts.remote ? 'nutcracker unix' : t.address.startsWith('unix:') ? 'nutcracker unix' : 'nutcracker TCP', (r) => r.reqPerSec);
    const floorFor = (t: Target): number => med(t.address.startsWith('unix:') ? 'floor unix' : 'floor TCP', (r) => r.proxyCpuPerReq);
    const rows = chosen.map((t) => {
      const rps = med(t.name, (r) => r.reqPerSec);
      const cpu = med(t.name, (r) => r.proxyCpuPerReq);
      const errs = (results.get(t.name) ?? []).reduce((a, r) => a + r.errors, 0);
      return [
        t.name,
        fmt(rps),
        `${fmt(rps / direct, 2)}x`,
        t.kind === 'direct' ? '-' : `${fmt(rps / nutFor(t), 2)}x`,
        fmt(med(t.name, (r) => r.reqP50), 2),
        fmt(med(t.name, (r) => r.reqP99), 2),
        fmt(med(t.name, (r) => r.cmdP50), 3),
        fmt(med(t.name, (r) => r.cmdP99), 3),
        String(errs),
        fmt(cpu),
        t.kind === 'direct' ? '-' : `${fmt(cpu / floorFor(t), 2)}x`,
        fmt(med(t.name, (r) => r.redisCpuPerReq)),
        ...(opts.remote
          ? [fmt(med(t.name, (r) => r.relayCpuPerReq)), `${fmt(med(t.name, (r) => r.relayLate?.p50 ?? null))} / ${fmt(med(t.name, (r) => r.relayLate?.p99 ?? null))}`]
          : []),
        fmt(med(t.name, (r) => r.genCpuPerReq)),
      ];
    });
    const out: string[] = [...header, ''];
    out.push(
      table(
        ['target', 'req/s', 'vs direct TCP', 'vs nutcracker', 'req p50 ms', 'req p99 ms', 'cmd p50 ms', 'cmd p99 ms', 'errors', 'proxy CPU µs/req', 'vs floor', `${memcached ? 'memcached' : 'redis'} CPU µs/req`, ...(opts.remote ? ['delay relay µs/req', 'relay late p50 / p99 µs'] : []), 'generator CPU µs/req'],
        rows,
      ),
    );
    if (opts.remote) {
      const d = opts.delayMs;
      out.push(
        '',
        `the model's ceiling: a direct request waits ${fmt(4 * d, 1)} ms for its connect and first reply (one round trip for the handshake, then one for the command) ` +
          `and ${fmt(2 * d, 1)} ms for each of the other 4 commands, ${fmt(12 * d, 1)} ms in all; through a proxy whose connections are open, 5 round trips, ${fmt(10 * d, 1)} ms: ` +
          `vs direct TCP ≤ 1.20x, less what the local hops cost ("relay late": how far the relay's deliveries were from their due time during the runs).`,
      );
    }
    const errorNotes = chosen.flatMap((t) => (results.get(t.name) ?? []).filter((r) => r.errors > 0).map((r) => `  ${t.name}: ${r.errors} errors, last: ${r.lastError}`));
    if (errorNotes.length > 0) out.push('', 'errors:', ...new Set(errorNotes));

    if (opts.churn) {
      const churnTargets = chosen.filter((t) => !opts.remote || t.name !== 'direct unix');
      process.stderr.write(memcached ? 'churn: connect, set, get, quit\n' : 'churn: connect, SET, GET, close\n');
      const churn = await measureAll(churnTargets, 'churn', opts, opts.churnSeconds, phpFile, redisPid, relay);
      const cm = (name: string, f: (r: RunResult) => number | null): number => median((churn.get(name) ?? []).map((r) => f(r) ?? NaN));
      const redisRate = (t: Target): number => cm(t.address.startsWith('unix:') && !opts.remote ? 'direct unix' : 'direct TCP', (r) => r.reqPerSec);
      out.push('', `connection churn (${memcached ? 'connect, set, get, quit' : 'connect, SET, GET, close'}; ${opts.clients} processes, ${opts.churnSeconds}s runs, median of ${opts.reps}):`, '');
      out.push(
        table(
          ['target', 'clients/s', `vs ${memcached ? 'memcached' : 'redis-server'} (same transport)`, 'errors', 'proxy CPU µs/client', 'generator CPU µs/client'],
          churnTargets.map((t) => [
            t.name,
            fmt(cm(t.name, (r) => r.reqPerSec)),
            `${fmt(cm(t.name, (r) => r.reqPerSec) / redisRate(t), 2)}x`,
            String((churn.get(t.name) ?? []).reduce((a, r) => a + r.errors, 0)),
            fmt(cm(t.name, (r) => r.proxyCpuPerReq)),
            fmt(cm(t.name, (r) => r.genCpuPerReq)),
          ]),
        ),
      );
    }
    if (opts.memory) {
      process.stderr.write('memory: idle clients\n');
      const memTargets = chosen.filter((t) => t.address.startsWith('unix:'));
      out.push('', 'memory (RSS of the process behind each target; idle clients each sent one PING):', '');
      out.push(await memory(memTargets, opts, phpFile, redisPid, `unix:${redisSock}`));
    }
    process.stdout.write(`${out.join('\n')}\n`);
    return 0;
  } finally {
    stopAll();
    if (opts.logs === null) fs.rmSync(dir, { recursive: true, force: true });
  }
}

const roleAt = process.argv.indexOf('--role');
if (roleAt >= 0) {
  const [role, a, b, c] = process.argv.slice(roleAt + 1);
  if (role === 'floor') floorRelay(Number(a), b as string, Number(c));
  else if (role === 'mc-floor') mcFloorRelay(Number(a), b as string, Number(c));
  else throw new Error(`unknown role ${role}`);
} else {
  process.on('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  main()
    .then((code) => {
      process.exitCode = code;
    })
    .catch((err: unknown) => {
      process.stderr.write(`short-lived: ${err instanceof Error ? err.message : String(err)}\n`);
      stopAll();
      process.exitCode = 1;
    });
}
