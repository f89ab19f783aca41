/**
 * protocol: tcp, the warm pool's connect saving (issue 9 §2): one short-lived client after another
 * connects, sends one request, reads its reply and closes, straight to a "remote" server and
 * through poolside. Straight, each client pays TCP's handshake (and TLS's) to the server;
 * through poolside it pays a local accept, and the relay uses a connection poolside warmed before
 * the client came. The server is redis-server used as an opaque service (PING → +PONG), behind
 * the delay relay (bench/delay-relay.c, compiled with cc: --delay-ms each way, the connect modelled
 * too), plain and with TLS (redis-server's own). poolside runs as its own process (dist/main.js).
 *
 *   npm run bench:tcp                        1 ms each way, 300 clients per target
 *   npm run bench:tcp -- --delay-ms 5 --clients 200
 *
 * Prints one table (medians of connect + first reply, per client); never asserts. See bench/README.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { makeCertificates } from '../test/helpers/tls.js';
import { buildDelayRelay, checkDelay, delayRelayArgs } from './delay-relay.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const children: ChildProcess[] = [];

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

function need(binary: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${binary}`]).status !== 0) {
    process.stderr.write(`bench:tcp needs ${binary}: apt-get install -y ${pkg}\n`);
    process.exit(1);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function start(command: string, args: string[], log: string): ChildProcess {
  const fd = fs.openSync(log, 'a');
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  children.push(child);
  return child;
}

interface Target {
  name: string;
  /** One client: connect, PING, read +PONG, close; resolves with the milliseconds it took. */
  once(): Promise<number>;
}

function client(connect: () => net.Socket, event: 'connect' | 'secureConnect'): () => Promise<number> {
  return () =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const socket = connect();
      let got = '';
      socket.once(event, () => socket.write('PING\r\n'));
      socket.on('data', (chunk: Buffer) => {
        got += chunk.toString('latin1');
        if (got.includes('\r\n')) {
          const ms = performance.now() - t0;
          socket.destroy();
          if (got.startsWith('+PONG')) resolve(ms);
          else reject(new Error(`unexpected reply ${JSON.stringify(got)}`));
        }
      });
      socket.on('error', reject);
    });
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not come up`);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function measure(target: Target, clients: number): Promise<number[]> {
  for (let i = 0; i < 10; i++) await target.once(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < clients; i++) {
    times.push(await target.once());
    // A short-lived worker does other work between its connections; 2 ms here lets the pool refill.
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return times.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  need('redis-server', 'redis-server');
  need('openssl', 'openssl');
  need('cc', 'gcc');
  const mainJs = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(mainJs)) throw new Error('dist/main.js missing: npm run build');
  const delayMs = option('--delay-ms', 1);
  const clients = option('--clients', 300);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poolside-tcp-bench-'));
  try {
    const certs = makeCertificates(dir);
    const [plainPort, tlsPort, plainRelay, tlsRelay] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const redisArgs = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxclients', '10000'];
    start('redis-server', ['--port', String(plainPort), ...redisArgs], path.join(dir, 'redis.log'));
    start('redis-server', ['--port', '0', '--tls-port', String(tlsPort), '--tls-cert-file', certs.serverCertFile, '--tls-key-file', certs.serverKeyFile, '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no', ...redisArgs], path.join(dir, 'redis-tls.log'));
    const relayBinary = buildDelayRelay(dir);
    const relay = (listen: number, backend: number): void => {
      start(relayBinary, delayRelayArgs(listen, backend, delayMs), path.join(dir, 'relay.log'));
    };
    relay(plainRelay, plainPort);
    relay(tlsRelay, tlsPort);
    const direct = client(() => net.connect({ host: '127.0.0.1', port: plainRelay, noDelay: true }), 'connect');
    const directTls = client(() => tls.connect({ host: '127.0.0.1', port: tlsRelay, ca: fs.readFileSync(certs.caFile), servername: 'localhost' }), 'secureConnect');
    await waitFor('redis behind the delay relay', async () => (await direct()) > 0);
    await waitFor('redis with TLS behind the delay relay', async () => (await directTls()) > 0);
    const check = checkDelay(relayBinary, plainRelay, 1, 2, 'PING\r\n');
    const model =
      `delay model, measured (one client, PING through the plain relay): round trip p50 ${check.rtt.p50?.toFixed(3) ?? '-'} ms, p99 ${check.rtt.p99?.toFixed(3) ?? '-'}; ` +
      `connect + first reply p50 ${check.connect.p50?.toFixed(3) ?? '-'} ms, p99 ${check.connect.p99?.toFixed(3) ?? '-'} (the model alone: ${(2 * delayMs).toFixed(3)} and ${(4 * delayMs).toFixed(3)})`;

    // One poolside, four tcp pools: plain and TLS servers, each without and with a reset exchange.
    const ports = { plain: await freePort(), plainReset: await freePort(), tls: await freePort(), tlsReset: await freePort() };
    const reset = '    tcp: { reset: { send: "50494e470d0a", expect: "2b504f4e470d0a" } }';
    const tlsLine = `    tls: { ca_file: ${certs.caFile}, servername: localhost }`;
    const pool = (name: string, port: number, server: number, extra: string[]): string[] => [
      `  ${name}:`,
      '    protocol: tcp',
      `    listen: 127.0.0.1:${port}`,
      `    servers: [127.0.0.1:${server}]`,
      '    connections: { min: 8, max: 64 }',
      ...extra,
    ];
    const config = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(
      config,
      [
        'admin: false',
        'log: { level: warn }',
        'pools:',
        ...pool('plain', ports.plain, plainRelay, []),
        ...pool('plain_reset', ports.plainReset, plainRelay, [reset]),
        ...pool('tls', ports.tls, tlsRelay, [tlsLine]),
        ...pool('tls_reset', ports.tlsReset, tlsRelay, [tlsLine, reset]),
        '',
      ].join('\n'),
    );
    start(process.execPath, [mainJs, '--config', config], path.join(dir, 'poolside.log'));
    const via = (port: number): (() => Promise<number>) => client(() => net.connect({ host: '127.0.0.1', port, noDelay: true }), 'connect');
    for (const port of Object.values(ports)) await waitFor('poolside', async () => (await via(port)()) > 0);

    const targets: Target[] = [
      { name: 'direct TCP', once: direct },
      { name: 'poolside → TCP (destroy + warm)', once: via(ports.plain) },
      { name: 'poolside → TCP (tcp.reset, reused)', once: via(ports.plainReset) },
      { name: 'direct TLS', once: directTls },
      { name: 'poolside → TLS (destroy + warm)', once: via(ports.tls) },
      { name: 'poolside → TLS (tcp.reset, reused)', once: via(ports.tlsReset) },
    ];
    const rows: string[] = [];
    for (const target of targets) {
      const t = await measure(target, clients);
      rows.push(`| ${target.name} | ${quantile(t, 0.5).toFixed(2)} | ${quantile(t, 0.9).toFixed(2)} | ${quantile(t, 0.99).toFixed(2)} |`);
    }
    process.stdout.write(
      [
        `tcp relay: ${clients} sequential clients per target, each connect → PING → +PONG → close; server ${delayMs} ms away each way (delay relay, connect modelled)`,
        model,
        '',
        '| target | p50 ms | p90 ms | p99 ms |',
        '|---|---|---|---|',
        ...rows,
        '',
      ].join('\n'),
    );
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

process.on('SIGINT', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  process.exit(130);
});
main().catch((err: unknown) => {
  process.stderr.write(`bench:tcp: ${String((err as Error).stack ?? err)}\n`);
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  process.exit(1);
});
