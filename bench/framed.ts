/**
 * protocol: framed with request ids (a Dubbo-style 16-byte header, replies matched by id): the
 * cost per request through poolside, and what the garbage collector makes of it. K clients each
 * send one request at a time (64-byte body) to an in-bench Node server that answers every frame at
 * once (its own process), through poolside (dist/main.js, its own process, run with --trace-gc-nvp) and, with
 * --compare, through another build's dist/ too, interleaved; straight to the server for the
 * floor of the client side. With --short-lived N each client connects, sends N requests one at a
 * time and closes (the PHP-FPM pattern), K at a time.
 *
 *   npm run bench:framed                                   16 clients, 4 s, 3 reps
 *   npm run bench:framed -- --compare dist-before --short-lived 5
 *
 * Prints one table (medians); never asserts. See bench/README.md.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../test/helpers/servers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HEADER = 16;
const BODY = 64;

interface Options {
  clients: number;
  seconds: number;
  reps: number;
  shortLived: number | null;
  compare: string | null;
}

function parse(argv: string[]): Options {
  const o: Options = { clients: 16, seconds: 4, reps: 3, shortLived: null, compare: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--clients') o.clients = Number(value());
    else if (flag === '--seconds') o.seconds = Number(value());
    else if (flag === '--reps') o.reps = Number(value());
    else if (flag === '--short-lived') o.shortLived = Number(value());
    else if (flag === '--compare') o.compare = path.resolve(value());
    else throw new Error(`unknown option ${flag} (see the comment at the top of bench/framed.ts)`);
  }
  return o;
}

/**
 * The server, in a process of its own (so that "direct" is not the clients' process serving
 * itself): answers each whole frame at once with the same header (id included) and body.
 */
const SERVER = `
const net = require('node:net');
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const replies = [];
    while (pending.length >= ${HEADER}) {
      const total = ${HEADER} + pending.readUInt32BE(12);
      if (pending.length < total) break;
      const reply = Buffer.from(pending.subarray(0, total));
      reply[2] = 0x02;
      replies.push(reply);
      pending = pending.subarray(total);
    }
    if (replies.length > 0) socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
  });
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

async function startServer(): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the bench's server exited (${code})`)));
  });
  return { port, child };
}

/** Until poolside accepts a connection on `port` (or it exits, or 10 s pass). */
async function waitListening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const accepts = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`poolside exited (${child.exitCode}):\n${log()}`);
    return accepts();
  }, `poolside to listen on ${port}`, 10_000, 25);
}

/** user + system CPU of a process so far, in µs (/proc/PID/stat, clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function request(): Buffer {
  const frame = Buffer.alloc(HEADER + BODY, 0x61);
  frame.writeUInt16BE(0xdabb, 0);
  frame[2] = 0xc2; // request, two-way
  frame[3] = 0;
  frame.writeBigUInt64BE(1n, 4); // every client numbers its calls from 1: poolside's ids keep them apart
  frame.writeUInt32BE(BODY, 12);
  return frame;
}

/** K clients at a time for `seconds`; resolves with the requests answered. */
async function drive(port: number, opts: Options): Promise<number> {
  const frame = request();
  let answered = 0;
  const until = performance.now() + opts.seconds * 1000;
  const client = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      let got = 0;
      let sent = 0;
      const next = (): void => {
        if (performance.now() >= until || (opts.shortLived !== null && sent >= opts.shortLived)) {
          socket.end();
          return;
        }
        sent++;
        socket.write(frame);
      };
      socket.on('connect', next);
      socket.on('data', (chunk: Buffer) => {
        got += chunk.length;
        while (got >= frame.length) {
          got -= frame.length;
          answered++;
          next();
        }
      });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
  const lane = async (): Promise<void> => {
    do await client();
    while (opts.shortLived !== null && performance.now() < until);
  };
  await Promise.all(Array.from({ length: opts.clients }, lane));
  return answered;
}

interface Sample {
  reqPerSec: number;
  cpuPerReq: number | null;
  gcPausePerReq: number | null;
  maxPauseMs: number | null;
  promotedKbPerScavenge: number | null;
}

async function runPoolside(dist: string, serverPort: number, dir: string, opts: Options): Promise<Sample> {
  const port = await freePort();
  const config = path.join(dir, `poolside-${port}.yaml`);
  fs.writeFileSync(
    config,
    [
      'admin: false',
      'pools:',
      '  rpc:',
      '    protocol: framed',
      `    listen: 127.0.0.1:${port}`,
      `    servers: [127.0.0.1:${serverPort}]`,
      '    connections: { min: 2, max: 2 }',
      '    framed:',
      '      header_size: 16',
      '      length: { offset: 12, size: 4 }',
      '      request_id: { offset: 4, size: 8 }',
      '    request_timeout: 2s',
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--trace-gc-nvp', path.join(dist, 'main.js'), '--config', config], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await waitListening(port, child, () => out.slice(-4000));
    await drive(port, { ...opts, seconds: 0.5 }); // warm up
    const from = out.length;
    const cpu0 = cpuMicros(child.pid ?? 0);
    const t0 = performance.now();
    const answered = await drive(port, opts);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuMicros(child.pid ?? 0) - cpu0;
    const scavenges = out
      .slice(from)
      .split('\n')
      .filter((line) => line.includes('gc=s '));
    let pause = 0;
    let maxPause = 0;
    let promoted = 0;
    for (const line of scavenges) {
      const ms = Number(/pause=([\d.]+)/.exec(line)?.[1] ?? 0);
      pause += ms;
      maxPause = Math.max(maxPause, ms);
      promoted += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0);
    }
    return {
      reqPerSec: answered / seconds,
      cpuPerReq: cpu / answered,
      gcPausePerReq: (pause * 1000) / answered,
      maxPauseMs: maxPause,
      promotedKbPerScavenge: promoted / 1024 / Math.max(1, scavenges.length),
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
  }
}

async function runDirect(serverPort: number, opts: Options): Promise<Sample> {
  const t0 = performance.now();
  const answered = await drive(serverPort, opts);
  return { reqPerSec: answered / ((performance.now() - t0) / 1000), cpuPerReq: null, gcPausePerReq: null, maxPauseMs: null, promotedKbPerScavenge: null };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const opts = parse(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-framed-'));
  const server = await startServer();
  const serverPort = server.port;
  const targets: { name: string; run: () => Promise<Sample> }[] = [
    { name: 'direct', run: () => runDirect(serverPort, opts) },
    { name: 'poolside', run: () => runPoolside(path.join(ROOT, 'dist'), serverPort, dir, opts) },
  ];
  if (opts.compare !== null) {
    const compare = opts.compare;
    targets.push({ name: path.basename(compare), run: () => runPoolside(compare, serverPort, dir, opts) });
  }
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
  try {
    for (let rep = 0; rep < opts.reps; rep++) {
      // Interleaved, the order turned each repetition: the machine's drift falls on every target.
      const order = rep % 2 === 0 ? targets : [...targets].reverse();
      for (const target of order) samples.get(target.name)?.push(await target.run());
    }
  } finally {
    server.child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const shape = opts.shortLived === null ? 'persistent clients' : `short-lived clients (${opts.shortLived} requests each)`;
  console.log(`framed, request ids: ${opts.clients} ${shape}, one request at a time, ${opts.seconds} s, medians of ${opts.reps}`);
  console.log('| target | req/s | proxy CPU µs/req | scavenge pause µs/req | longest pause ms | promoted KB/scavenge |');
  console.log('|---|--:|--:|--:|--:|--:|');
  const cell = (values: (number | null)[], digits: number): string => {
    const present = values.filter((v): v is number => v !== null);
    return present.length === 0 ? '–' : median(present).toFixed(digits);
  };
  for (const [name, list] of samples) {
    console.log(
      `| ${name} | ${cell(list.map((s) => s.reqPerSec), 0)} | ${cell(list.map((s) => s.cpuPerReq), 1)} | ${cell(list.map((s) => s.gcPausePerReq), 2)} | ${cell(list.map((s) => s.maxPauseMs), 1)} | ${cell(list.map((s) => s.promotedKbPerScavenge), 0)} |`,
    );
  }
}

await main();
