/**
 * Clients that mean harm or are broken: a protocol error closes the client at once instead of
 * reading and dropping whatever it sends next; before AUTH a client gets Redis's small request
 * limits; wrong passwords close the client after a few and are logged at most once a second.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, quietLog, startProxy, waitReady } from '../helpers/proxy.js';
import { parseReply, RawClient, RespError, poolsideReason } from '../helpers/resp-client.js';
import { RedisServer, tempDir } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const WRONGPASS = new RespError('WRONGPASS invalid username-password pair or user is disabled.');

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

async function setup(pool: Record<string, unknown> = {}): Promise<{ proxy: Proxy; port: number; log: ReturnType<typeof quietLog> }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const log = quietLog();
  const proxy = cleanup.add(await startProxy([redis.address], pool, { log }), (p) => p.close());
  await waitReady(proxy);
  return { proxy, port: portOf(proxy), log };
}

function rss(): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (match === null) throw new Error('no VmRSS in /proc/self/status');
  return Number(match[1]) * 1024;
}

/**
 * Writes up to `total` bytes of `filler` as fast as the proxy reads them; stops early when the
 * proxy closes the client. Returns how many bytes the socket took.
 */
async function stream(client: RawClient, total: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20, 'x');
  let sent = 0;
  while (sent < total && !client.isClosed) {
    sent += chunk.length;
    if (client.socket.write(chunk)) continue;
    await Promise.race([new Promise((resolve) => client.socket.once('drain', resolve)), client.closed]);
  }
  return sent;
}

/**
 * A client that ignores the FIN and keeps sending, as a flood would: writes `first`, then up to
 * 256 MiB as fast as the proxy reads it. Returns what it received, how much the socket took, and
 * whether the proxy closed it.
 */
async function flood(port: number, first: string): Promise<{ received: Buffer; sent: number; total: number; closed: boolean }> {
  const bad = cleanup.add(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }), (s) => s.destroy());
  let received = Buffer.alloc(0);
  let closed = false;
  bad.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  bad.on('error', () => {});
  const gone = new Promise<void>((resolve) => bad.once('close', () => resolve()));
  void gone.then(() => (closed = true));
  await new Promise((resolve) => bad.once('connect', resolve));
  bad.write(first);
  const total = 256 << 20;
  const chunk = Buffer.alloc(1 << 20, 'x');
  let sent = 0;
  const deadline = performance.now() + 10_000;
  while (sent < total && !closed && performance.now() < deadline) {
    sent += chunk.length;
    if (!bad.write(chunk)) await Promise.race([new Promise((resolve) => bad.once('drain', resolve)), gone]);
  }
  await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 5000))]);
  return { received, sent, total, closed };
}

function password(): Record<string, unknown> {
  const dir = cleanup.add(tempDir('poolside-hostile-'), (d) => fs.rmSync(d, { recursive: true, force: true }));
  const file = path.join(dir, 'pw');
  fs.writeFileSync(file, 's3cret\n');
  return { password_file: file };
}

describe('hostile clients', () => {
  it('closes a client at once after a protocol error, reading nothing more it sends, while others are served', async () => {
    const { proxy, port } = await setup();
    const good = await raw(port);
    const flooding = flood(port, '*1\r\n$4\r\nPING\r\n*x\r\n');
    expect(await good.call('PING')).toBe('PONG');
    const { received, sent, total, closed } = await flooding;
    // Reading and dropping would take it all; without reading, only the kernel's buffers fill.
    expect(closed).toBe(true);
    expect(sent).toBeLessThan(total);
    const pong = parseReply(received, 0);
    expect(pong?.value).toBe('PONG');
    expect(poolsideReason(parseReply(received, pong?.end ?? 0)?.value ?? null)).toBe('PROTOCOL_ERROR');
    expect(await good.call('PING')).toBe('PONG');
    expect(proxy.pools.get('p')?.counters.protocolErrors).toBe(1);
  });

  it('closes a client after QUIT, as Redis does, instead of reading and dropping what it sends next', async () => {
    const { port } = await setup();
    const { received, sent, total, closed } = await flood(port, '*1\r\n$4\r\nQUIT\r\n');
    expect(closed).toBe(true);
    expect(sent).toBeLessThan(total);
    expect(received.toString('latin1')).toBe('+OK\r\n');
  });

  it('refuses, before AUTH, more than 10 arguments or an argument over 16 KiB, as Redis does', async () => {
    const { port } = await setup({ client_auth: password() });
    const many = await raw(port);
    many.send('MSET', ...Array.from({ length: 10 }, (_, k) => `k${k}`));
    const error = await many.reply();
    expect(error).toEqual(new RespError('ERR poolside PROTOCOL_ERROR Protocol error: unauthenticated multibulk length'));
    expect(await many.closesWithin(5000)).toBe(true);

    // The 100 MB request is refused at its length line, not held until it is complete.
    const big = await raw(port);
    big.write('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$104857600\r\n');
    expect(await big.reply()).toEqual(new RespError('ERR poolside PROTOCOL_ERROR Protocol error: unauthenticated bulk length'));
    expect(await big.closesWithin(5000)).toBe(true);

    // Ten arguments and 16 KiB pass (and get NOAUTH); after AUTH the pool's limits apply.
    const client = await raw(port);
    expect(await client.call('AUTH', 'x'.repeat(16384))).toEqual(WRONGPASS);
    expect(await client.call('MSET', ...Array.from({ length: 9 }, () => 'k'))).toEqual(new RespError('NOAUTH Authentication required.'));
    client.send('AUTH', 's3cret');
    client.send('SET', 'big', 'v'.repeat(1 << 20));
    client.send('STRLEN', 'big');
    expect(await client.take(3)).toEqual(['OK', 'OK', 1 << 20]);
  });

  it('holds no large request from clients that have not authenticated (RSS from /proc)', async () => {
    const { port } = await setup({ client_auth: password() });
    const clients = await Promise.all(Array.from({ length: 8 }, () => raw(port)));
    const before = rss();
    const per = 16 << 20;
    await Promise.all(
      clients.map(async (c) => {
        c.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${per}\r\n`);
        await stream(c, per - (1 << 20));
      }),
    );
    // Held, the 8 requests would be 128 MiB; refused at their length lines, nothing is held.
    expect(rss() - before).toBeLessThan(48 << 20);
    for (const c of clients) expect(poolsideReason(await c.reply())).toBe('PROTOCOL_ERROR');
  });

  it('closes a client after its third wrong password, and logs wrong passwords at most once a second', async () => {
    const { proxy, port, log } = await setup({ client_auth: password() });
    const startedAt = performance.now();
    const guesser = await raw(port);
    for (let i = 0; i < 10; i++) guesser.send('AUTH', `guess${i}`);
    expect(await guesser.take(3)).toEqual([WRONGPASS, WRONGPASS, WRONGPASS]);
    expect(await guesser.closesWithin(5000)).toBe(true);
    expect(guesser.pending).toBe(0);

    const guessers = await Promise.all(Array.from({ length: 20 }, () => raw(port)));
    for (const g of guessers) for (let i = 0; i < 3; i++) g.send('AUTH', 'default', `guess${i}`);
    for (const g of guessers) {
      expect(await g.take(3)).toEqual([WRONGPASS, WRONGPASS, WRONGPASS]);
      expect(await g.closesWithin(5000)).toBe(true);
    }
    const counters = proxy.pools.get('p')?.counters;
    expect(counters?.authFailures).toBe(63);
    const lines = log.lines.filter((l) => l.msg === 'client sent wrong credentials');
    const seconds = (performance.now() - startedAt) / 1000;
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    const unlogged = lines.reduce((sum, l) => sum + Number(l.fields.unlogged_since_last), 0);
    expect(unlogged).toBeLessThanOrEqual(63 - lines.length);

    // The right password still works, and a client's one mistake does not close it.
    const client = await raw(port);
    expect(await client.call('AUTH', 'typo')).toEqual(WRONGPASS);
    expect(await client.call('AUTH', 's3cret')).toBe('OK');
    expect(await client.call('PING')).toBe('PONG');
  });
});
