/**
 * `npm run demo`: poolside's job in one command. Starts a throwaway redis-server on a free loopback
 * port and poolside (from dist/) in front of it on a unix socket, both in a temp dir; runs a few
 * hundred short-lived clients through poolside (connect, a few commands, close, several at once,
 * like PHP-FPM workers), then prints what pooling did: clients served, connections redis-server
 * saw (its INFO total_connections_received), req/s and latency, beside the same clients run straight
 * against redis-server for comparison. Stops everything it started, also on Ctrl-C.
 *
 *   npm run demo                       # 400 clients, 16 at a time
 *   npm run demo -- --clients 1000 --concurrency 50
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Clients run before timing starts. */
const WARM_UP = 50;

const children: ChildProcess[] = [];
let workDir: string | null = null;

function cleanup(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (workDir !== null) fs.rmSync(workDir, { recursive: true, force: true });
  workDir = null;
}

function die(message: string): never {
  process.stderr.write(`demo: ${message}\n`);
  cleanup();
  process.exit(1);
}

process.on('SIGINT', () => die('interrupted; stopped redis-server and poolside'));
process.on('SIGTERM', () => die('terminated; stopped redis-server and poolside'));
process.on('exit', cleanup);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A minimal RESP client over one socket: one command at a time, replies read whole. */
class Client {
  #buffer = Buffer.alloc(0);
  #waiting: ((reply: string) => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      const end = replyEnd(this.#buffer);
      if (end < 0 || this.#waiting === null) return;
      const reply = this.#buffer.subarray(0, end).toString();
      this.#buffer = this.#buffer.subarray(end);
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting(reply);
    });
  }

  static connect(target: net.NetConnectOpts): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(target, () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  call(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#waiting = resolve;
      this.socket.once('error', reject);
      this.socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Where the first complete simple reply (+ - : or a bulk string) ends, or -1. */
function replyEnd(buf: Buffer): number {
  const lf = buf.indexOf('\r\n');
  if (lf < 0) return -1;
  if (buf[0] !== 0x24 /* $ */) return lf + 2;
  const length = Number(buf.subarray(1, lf).toString());
  if (length < 0) return lf + 2;
  const end = lf + 2 + length + 2;
  return buf.length >= end ? end : -1;
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) die(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function answers(target: net.NetConnectOpts): Promise<boolean> {
  try {
    const client = await Client.connect(target);
    const reply = await client.call('PING');
    client.close();
    return reply === '+PONG\r\n';
  } catch {
    return false;
  }
}

function httpGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function redisStat(port: number, field: string): Promise<number> {
  const client = await Client.connect({ host: '127.0.0.1', port });
  const info = await client.call('INFO', 'stats');
  client.close();
  const match = new RegExp(`^${field}:(\\d+)`, 'm').exec(info);
  if (match === null) die(`redis-server's INFO has no ${field}`);
  return Number(match[1]);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const ms = (value: number): string => `${value.toFixed(value < 1 ? 3 : 2)} ms`;

interface Run {
  served: number;
  latencies: number[];
  sessions: number[];
  seconds: number;
}

/** `clients` short-lived clients against `target`, `concurrency` at a time; the first WARM_UP are not timed. */
async function runClients(target: net.NetConnectOpts, clients: number, concurrency: number): Promise<Run> {
  const latencies: number[] = [];
  const sessions: number[] = [];
  let next = 0;
  let served = 0;
  let started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < clients) {
      const n = next++;
      if (n === WARM_UP) started = performance.now();
      const begin = performance.now();
      const client = await Client.connect(target);
      for (const args of [['SET', `demo:${n}`, 'x'], ['GET', `demo:${n}`], ['INCR', 'demo:counter']]) {
        const t = performance.now();
        const reply = await client.call(...args);
        if (n >= WARM_UP) latencies.push(performance.now() - t);
        if (reply.startsWith('-')) die(`${args[0]} got ${reply.trim()}`);
      }
      client.close();
      if (n >= WARM_UP) sessions.push(performance.now() - begin);
      served++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  sessions.sort((a, b) => a - b);
  return { served, latencies, sessions, seconds };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { clients: { type: 'string', default: '400' }, concurrency: { type: 'string', default: '16' } },
  });
  const clients = Number(values.clients);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(clients) || clients <= WARM_UP || !Number.isInteger(concurrency) || concurrency < 1) die(`--clients takes a whole number above ${WARM_UP}, --concurrency one of at least 1`);

  if (spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status !== 0) {
    die('redis-server is not installed; install it with: apt-get install -y redis-server');
  }
  const main = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(main)) die('dist/main.js is missing: run npm run build');

  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-demo-'));
  const redisPort = await freePort();
  const adminPort = await freePort();
  const socketPath = path.join(workDir, 'poolside.sock');

  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workDir], { stdio: 'ignore' });
  children.push(redis);
  await waitUntil(() => answers({ host: '127.0.0.1', port: redisPort }), `redis-server on 127.0.0.1:${redisPort}`);

  const config = path.join(workDir, 'poolside.yaml');
  fs.writeFileSync(
    config,
    [
      `admin: { listen: "127.0.0.1:${adminPort}" }`,
      'log: { level: warn }',
      'pools:',
      '  demo:',
      '    protocol: redis',
      `    listen: "unix:${socketPath}"`,
      `    servers: ["127.0.0.1:${redisPort}"]`,
      '    connections: { min: 2, max: 4 }',
      '',
    ].join('\n'),
  );
  // Connections redis-server received, by INFO total_connections_received; each INFO's own
  // connection counts too, hence the - 1 below.
  const received = (): Promise<number> => redisStat(redisPort, 'total_connections_received');
  const beforePoolside = await received();
  const poolside = spawn(process.execPath, [main, '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(poolside);
  poolside.once('exit', (code) => {
    if (workDir !== null) die(`poolside exited early (${code})`);
  });
  await waitUntil(async () => (await httpGet(adminPort, '/readyz').catch(() => ({ status: 0 }))).status === 200, 'poolside to be ready (/readyz)');

  process.stdout.write(
    `redis-server on 127.0.0.1:${redisPort}, poolside on unix:${socketPath}\n` +
      `running ${clients} short-lived clients, ${concurrency} at a time: connect, SET, GET, INCR, close\n`,
  );
  const pooled = await runClients({ path: socketPath }, clients, concurrency);
  const afterPooled = await received();
  const stats = JSON.parse((await httpGet(adminPort, '/stats')).body) as { pools: { servers: { counters: { connectionsOpened: number } }[] }[] };
  const opened = stats.pools[0].servers[0].counters.connectionsOpened;
  process.stdout.write(`the same clients straight to redis-server, for comparison\n`);
  const direct = await runClients({ host: '127.0.0.1', port: redisPort }, clients, concurrency);
  const connections = { pooled: afterPooled - beforePoolside - 1, direct: (await received()) - afterPooled - 1 };

  const row = (name: string, a: string, b: string): string => `${name.padEnd(31)}${a.padEnd(24)}${b}`;
  const rate = (r: Run): string => `${Math.round(r.latencies.length / r.seconds)} req/s`;
  const pct = (xs: number[]): string => `${ms(percentile(xs, 50))} / ${ms(percentile(xs, 99))}`;
  process.stdout.write(
    [
      '',
      row('', 'through poolside', 'direct to redis-server'),
      row('clients served', String(pooled.served), String(direct.served)),
      row('connections redis-server saw', String(connections.pooled), String(connections.direct)),
      row('requests per second', rate(pooled), rate(direct)),
      row('request p50 / p99', pct(pooled.latencies), pct(direct.latencies)),
      row('connect..close p50 / p99', pct(pooled.sessions), pct(direct.sessions)),
      '',
      `poolside served ${pooled.served} clients over the ${connections.pooled} connection(s) of its pool (${opened} opened, by its /stats; redis-server's`,
      `INFO total_connections_received counts the same). Timings leave out ${WARM_UP} warm-up clients; on localhost a direct`,
      'connect is cheap, so the gain shows against a remote server, with TLS or AUTH, or with many short-lived clients.',
      '',
    ].join('\n'),
  );
  poolside.removeAllListeners('exit');
  const exited = new Promise((resolve) => poolside.once('exit', resolve));
  poolside.kill('SIGTERM');
  await exited;
  cleanup();
}

await main();
