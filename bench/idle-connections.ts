/**
 * What an idle pool costs: poolside holding 10,000 pooled connections across 4 redis-servers,
 * with no client traffic, for each heartbeat setting. Prints the proxy's CPU as a share of one
 * core and the heartbeats the servers answered per second. A benchmark, not a test.
 *
 *   npm run bench:idle [-- --connections 10000 --servers 4 --seconds 20]
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLK_TCK = 100; // Linux USER_HZ; /proc/PID/stat times are in these ticks

interface Options {
  connections: number;
  servers: number;
  seconds: number;
}

function parseOptions(argv: string[]): Options {
  const opts: Options = { connections: 10_000, servers: 4, seconds: 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], Number(argv[i + 1])];
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${flag} takes a positive whole number`);
    if (flag === '--connections') opts.connections = value;
    else if (flag === '--servers') opts.servers = value;
    else if (flag === '--seconds') opts.seconds = value;
    else throw new Error(`unknown option ${flag}`);
  }
  return opts;
}

const children: ChildProcess[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'poolside-idle-'));

function start(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  return child;
}

function stopAll(): void {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

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

/** One command on a new connection; resolves with the reply text (enough for INFO and PING). */
function command(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      const m = /^\$(\d+)\r\n/.exec(reply);
      if ((m !== null && reply.length >= m[0].length + Number(m[1]) + 2) || (m === null && reply.endsWith('\r\n'))) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', reject);
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

async function info(port: number, field: string): Promise<number> {
  const text = await command(port, 'INFO');
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

async function sum(ports: number[], field: string): Promise<number> {
  return (await Promise.all(ports.map((p) => info(p, field)))).reduce((a, b) => a + b, 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

interface Row {
  heartbeat: string;
  connections: number;
  cpuPercent: number;
  beatsPerSecond: number;
}

async function measure(opts: Options, redisPorts: number[], heartbeat: string): Promise<Row> {
  const perServer = Math.ceil(opts.connections / opts.servers);
  const listen = await freePort();
  const config = path.join(dir, `poolside-${heartbeat.replace(/\W/g, '')}.yaml`);
  writeFileSync(
    config,
    [
      'admin: false',
      'log: { level: warn }',
      'pools:',
      '  idle:',
      '    protocol: redis',
      `    listen: [127.0.0.1:${listen}]`,
      `    servers: [${redisPorts.map((p) => `127.0.0.1:${p}`).join(', ')}]`,
      `    connections: { min: ${perServer}, max: ${perServer} }`,
      '    connect: { timeout: 10s }',
      `    heartbeat: ${heartbeat}`,
      '    idle_timeout: 0',
      '    max_lifetime: 0',
      '',
    ].join('\n'),
  );
  const before = await sum(redisPorts, 'connected_clients');
  const proxy = start(process.execPath, [path.join(ROOT, 'dist/main.js'), '--config', config]);
  try {
    const target = before + perServer * opts.servers;
    await until(async () => (await sum(redisPorts, 'connected_clients')) >= target, `${target} connections`, 60_000);
    await sleep(2000); // let the connect storm's garbage be collected before measuring
    const pid = proxy.pid as number;
    const commandsBefore = await sum(redisPorts, 'total_commands_processed');
    const cpuBefore = cpuSeconds(pid);
    const started = Date.now();
    await sleep(opts.seconds * 1000);
    const elapsed = (Date.now() - started) / 1000;
    const cpu = cpuSeconds(pid) - cpuBefore;
    const commands = (await sum(redisPorts, 'total_commands_processed')) - commandsBefore;
    return {
      heartbeat,
      connections: perServer * opts.servers,
      cpuPercent: (cpu / elapsed) * 100,
      // INFO itself is a command: subtract the two INFO rounds.
      beatsPerSecond: Math.max(0, commands - 2 * redisPorts.length) / elapsed,
    };
  } finally {
    proxy.kill('SIGKILL');
    await until(async () => (await sum(redisPorts, 'connected_clients')) <= before + redisPorts.length, 'connections to close', 30_000);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const redisPorts: number[] = [];
  for (let i = 0; i < opts.servers; i++) {
    const port = await freePort();
    start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', '20000']);
    redisPorts.push(port);
  }
  for (const port of redisPorts) await until(async () => (await command(port, 'PING').catch(() => '')) === '+PONG\r\n', `redis on ${port}`, 10_000);

  const settings = ['false', '{ interval: 5s, timeout: 1s }', '{ interval: 1s, timeout: 500ms }'];
  const rows: Row[] = [];
  for (const heartbeat of settings) rows.push(await measure(opts, redisPorts, heartbeat));

  console.log(`poolside idle pool: ${opts.connections} pooled connections over ${opts.servers} redis-servers, ${opts.seconds}s each, node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('');
  console.log('heartbeat                           connections   proxy CPU (% of a core)   heartbeats/s');
  for (const row of rows) {
    console.log(`${row.heartbeat.padEnd(36)}${String(row.connections).padStart(11)}${row.cpuPercent.toFixed(2).padStart(26)}${row.beatsPerSecond.toFixed(0).padStart(15)}`);
  }
  console.log('');
  console.log('Target (issue: heartbeats and timers): under 2% of a core for 10,000 idle pooled connections.');
}

process.on('SIGINT', () => {
  stopAll();
  process.exit(130);
});
main()
  .then(() => stopAll())
  .catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    stopAll();
    process.exitCode = 1;
  });
