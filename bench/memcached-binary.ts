/**
 * What the binary protocol's translation costs (issue 13 §5), in two numbers:
 *
 * 1. CPU per request of the translation alone (framing not included): translateBinary of a binary
 *    request into meta, and the reply map of the server's answer back into a binary response, for
 *    a GETKQ hit, a SETQ and an INCREMENT, in a tight loop.
 * 2. End to end: C binary clients each sending `GETKQ ×10 + NOOP` (PHP's getMulti) and single GETs
 *    (pipeline 1), against memcached itself (binary) and through a poolside process (binary
 *    translated to meta on its shared text connections), interleaved, medians of 3.
 *
 *   npm run bench:memcached-binary [-- --seconds 3 --clients 8]
 *
 * Both run the compiled code (dist/, built first), as poolside runs in production: under tsx every
 * exported constant is read through a getter, which triples the translation's cost.
 *
 * Prints, never asserts. Needs memcached on PATH.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Op, binaryRequest, parseResponses } from '../src/codec/memcached/binary-protocol.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const TRANSLATE = path.join(ROOT, 'dist', 'codec', 'memcached', 'binary-translate.js');

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, clients: { type: 'string', default: '8' } } });
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);

function setExtras(): Buffer {
  return Buffer.alloc(8);
}

async function translationCost(): Promise<string> {
  const { translateBinary } = (await import(TRANSLATE)) as typeof import('../src/codec/memcached/binary-translate.js');
  const cases: [string, Buffer, Buffer][] = [
    ['GETKQ hit', binaryRequest({ opcode: Op.GETKQ, opaque: 1, key: 'memc.sess.key.abcdef0123456789' }), Buffer.from('VA 32 f0 c12345\r\n' + 'x'.repeat(32) + '\r\n')],
    ['SETQ', binaryRequest({ opcode: Op.SETQ, opaque: 2, key: 'memc.sess.key.abcdef0123456789', extras: setExtras(), value: 'x'.repeat(32) }), Buffer.from('HD c12346\r\n')],
    ['INCREMENT', binaryRequest({ opcode: Op.INCREMENT, opaque: 3, key: 'counter', extras: Buffer.alloc(20) }), Buffer.from('VA 2 c12347\r\n42\r\n')],
  ];
  const lines: string[] = [];
  for (const [name, request, reply] of cases) {
    const n = 300_000;
    let sink = 0;
    const run = (count: number): number => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < count; i++) {
        const intake = translateBinary(request);
        if (intake.kind === 'send') sink += intake.reply(reply)?.length ?? 0;
      }
      return Number(process.hrtime.bigint() - start) / count;
    };
    run(20_000);
    const ns = [run(n), run(n), run(n)].sort((a, b) => a - b)[1];
    lines.push(`  ${name.padEnd(10)} ${(ns / 1000).toFixed(2)} µs per request (translate + map)${sink < 0 ? '!' : ''}`);
  }
  return lines.join('\n');
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** One client: sends `batch`, waits for the packet that ends it (NOOP, or the one reply), repeats until the deadline. */
function client(port: number, batch: Buffer, endsWith: number, deadline: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    let buf: Buffer = Buffer.alloc(0);
    let done = 0;
    socket.on('connect', () => socket.write(batch));
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const { packets, rest } = parseResponses(buf);
      buf = Buffer.from(rest);
      for (const p of packets) {
        if (p.opcode !== endsWith) continue;
        done++;
        if (performance.now() > deadline) {
          socket.destroy();
          resolve(done);
          return;
        }
        socket.write(batch);
      }
    });
  });
}

async function measure(port: number, batch: Buffer, endsWith: number): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  const counts = await Promise.all(Array.from({ length: CLIENTS }, () => client(port, batch, endsWith, deadline)));
  return counts.reduce((a, b) => a + b, 0) / SECONDS;
}

async function main(): Promise<void> {
  if (!fs.existsSync(TRANSLATE)) {
    process.stderr.write('memcached-binary bench: no dist/: run it as npm run bench:memcached-binary (builds first)\n');
    process.exit(1);
  }
  if (spawnSync('sh', ['-c', 'command -v memcached']).status !== 0) {
    process.stderr.write('memcached-binary bench: memcached is not installed: apt-get install -y memcached\n');
    process.exit(1);
  }
  console.log('translation alone:');
  console.log(await translationCost());

  const children: ChildProcess[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-bench-'));
  try {
    const mcPort = await freePort();
    children.push(spawn('memcached', ['-p', String(mcPort), '-l', '127.0.0.1', '-U', '0', '-t', '1', ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : [])], { stdio: 'ignore' }));
    await waitListening(mcPort);
    const psPort = await freePort();
    const config = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(config, `admin: false\npools:\n  p:\n    protocol: memcached\n    listen: ["127.0.0.1:${psPort}"]\n    servers: ["127.0.0.1:${mcPort}"]\n    connections: { min: 2, max: 2 }\n`);
    children.push(spawn(process.execPath, [path.join(ROOT, 'dist', 'main.js'), '--config', config], { stdio: 'ignore' }));
    await waitListening(psPort);

    // Ten keys of 100 bytes.
    const keys = Array.from({ length: 10 }, (_, i) => `memc.sess.key.${i}`);
    await measureOnce(mcPort, Buffer.concat(keys.map((key, i) => binaryRequest({ opcode: Op.SETQ, opaque: i, key, extras: setExtras(), value: 'v'.repeat(100) })).concat(binaryRequest({ opcode: Op.NOOP }))));
    const multi = Buffer.concat([...keys.map((key, i) => binaryRequest({ opcode: Op.GETKQ, opaque: i, key })), binaryRequest({ opcode: Op.NOOP, opaque: 99 })]);
    const single = binaryRequest({ opcode: Op.GET, opaque: 1, key: keys[0] });

    const results: Record<string, number[]> = {};
    for (let round = 0; round < 3; round++) {
      for (const [target, port] of [['memcached', mcPort], ['poolside', psPort]] as const) {
        (results[`${target} GET`] ??= []).push(await measure(port, single, Op.GET));
        (results[`${target} GETKQ×10+NOOP`] ??= []).push(await measure(port, multi, Op.NOOP));
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1];
    console.log(`\nend to end, ${CLIENTS} binary clients, ${SECONDS}s per run, median of 3 (load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs):`);
    console.log('  workload          memcached/s  poolside/s  ratio');
    for (const load of ['GET', 'GETKQ×10+NOOP']) {
      const direct = median(results[`memcached ${load}`]);
      const proxied = median(results[`poolside ${load}`]);
      console.log(`  ${load.padEnd(16)} ${direct.toFixed(0).padStart(11)} ${proxied.toFixed(0).padStart(11)}  ${(proxied / direct).toFixed(2)}`);
    }
  } finally {
    for (const child of children) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends one batch that ends with a NOOP and waits for it. */
async function measureOnce(port: number, batch: Buffer): Promise<void> {
  await client(port, batch, Op.NOOP, 0);
}

await main();
