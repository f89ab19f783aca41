/**
 * Shutdown on SIGTERM through the real command line (docs/configuration.md, "Shutdown"): /readyz
 * 503 at once, still accepting for shutdown.delay, then the unix socket is gone, idle clients are
 * closed at once, busy ones get their replies and then DRAINING for anything new, a blocked client
 * is cut at shutdown.timeout with a DRAINING error as its reply, and the process exits 0.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { request } from '../helpers/prometheus.js';
import { poolsideReason, RawClient } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { freePort, RedisServer, tempDir, waitFor } from '../helpers/servers.js';
import { startProxy, portOf } from '../helpers/proxy.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface Worker {
  ok: number;
  drained: number;
  /** Requests sent and never answered: the connection closed under them. */
  lost: number;
  other: RespValue[];
  done: Promise<void>;
}

/** One client sending INCR after INCR (with `pauseMs` between) until poolside refuses or closes it. */
function traffic(client: RawClient, key: string, pauseMs: number): Worker {
  const worker: Worker = { ok: 0, drained: 0, lost: 0, other: [], done: Promise.resolve() };
  worker.done = (async () => {
    for (;;) {
      if (client.isClosed) return;
      client.send('INCR', key);
      let reply: RespValue;
      try {
        reply = await client.reply(10_000);
      } catch {
        worker.lost++;
        return;
      }
      if (typeof reply === 'number') worker.ok++;
      else if (poolsideReason(reply) === 'DRAINING') {
        worker.drained++;
        return;
      } else {
        worker.other.push(reply);
        return;
      }
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  })();
  return worker;
}

describe('SIGTERM drain (the real command line)', () => {
  it('keeps accepting for shutdown.delay, closes idle clients at once, loses no request, cuts a BLPOP at the timeout and exits 0', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const dir = tempDir('poolside-drain-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'p.sock');
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(
      file,
      [
        `admin: { listen: "127.0.0.1:${adminPort}" }`,
        'shutdown: { delay: 400ms, timeout: 2500ms }',
        'pools:',
        '  cache:',
        '    protocol: redis',
        `    listen: ["unix:${socketPath}", "127.0.0.1:${port}"]`,
        `    servers: ["${redis.address}"]`,
        '',
      ].join('\n'),
    );
    const { child, stderr, exited } = spawnPoolside(cleanup, ['--config', file]);
    const admin = { kind: 'tcp' as const, host: '127.0.0.1', port: adminPort };
    await waitFor(async () => (await request(admin, '/readyz').catch(() => ({ status: 0 }))).status === 200, 'poolside ready', 20_000);

    const connect = async (): Promise<RawClient> => {
      const client = await RawClient.connect({ path: socketPath });
      cleanup.defer(() => client.destroy());
      return client;
    };
    const idle = await Promise.all(Array.from({ length: 5 }, () => connect()));
    for (const c of idle) expect(await c.call('PING')).toBe('PONG');
    const blocked = await connect();
    expect(await blocked.call('PING')).toBe('PONG');
    blocked.send('BLPOP', 'drain:never', '0');
    const workers: Worker[] = [];
    for (let i = 0; i < 8; i++) workers.push(traffic(await connect(), 'drain:n', i % 2 === 0 ? 0 : 3));
    await waitFor(() => workers.every((w) => w.ok > 20), 'traffic to flow');

    child.kill('SIGTERM');
    await waitFor(async () => (await request(admin, '/readyz')).status === 503, '/readyz 503');
    // shutdown.delay: a new client is still accepted and served.
    const late = await connect();
    expect(await late.call('PING')).toBe('PONG');
    // Then the socket goes, and the idle clients are closed while the blocked one holds out.
    await waitFor(() => !fs.existsSync(socketPath), 'the unix socket removed', 5000);
    await waitFor(() => idle.every((c) => c.isClosed), 'the idle clients closed', 1000);
    expect(blocked.isClosed).toBe(false);
    expect(child.exitCode).toBe(null);
    expect((await request(admin, '/metrics')).status).toBe(200);
    await expect(new Promise((resolve, reject) => net.connect({ host: '127.0.0.1', port }).once('connect', resolve).once('error', reject))).rejects.toThrow(/ECONNREFUSED/);

    expect(await exited).toBe(0);
    await Promise.all(workers.map((w) => w.done));
    expect(poolsideReason(await blocked.reply())).toBe('DRAINING');
    const total = workers.reduce((sum, w) => sum + w.ok, 0);
    expect(workers.map((w) => ({ lost: w.lost, other: w.other }))).toEqual(workers.map(() => ({ lost: 0, other: [] })));
    // Every INCR the server ran was answered, and every answered one ran.
    expect(Number((await redis.command('GET', 'drain:n')).split('\r\n')[1])).toBe(total);

    const lines = stderr().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'shutdown: clients cut off at shutdown.timeout')).toMatchObject({ clients: 1, blocking: 1 });
    expect(lines.find((l) => l.msg === 'poolside stopped')).toMatchObject({ clients_cut_off: 1 });
    // The BLPOP cut at the end is not a lost server or a lost pinned connection.
    const warnings = lines.filter((l) => (l.level === 'warn' || l.level === 'error') && !(l.msg === 'request failed' && l.reason === 'DRAINING'));
    expect(warnings.map((l) => l.msg)).toEqual(['shutdown: clients cut off at shutdown.timeout']);
  }, 40_000);

  it('answers DRAINING to a request sent after draining began, after the replies already owed', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = await startProxy([redis.address]);
    cleanup.defer(() => proxy.close());
    const client = await RawClient.connect(portOf(proxy));
    cleanup.defer(() => client.destroy());
    // Holds the first client busy: its BLPOP is answered by the LPUSH below.
    client.send('BLPOP', 'drain:list', '5');
    await waitFor(() => proxy.clientList().clients.some((c) => c.holds === 'blocking'), 'the client to block');
    const drained = proxy.drain({ delayMs: 0, timeoutMs: 5000 });
    client.send('GET', 'drain:other');
    await redis.command('LPUSH', 'drain:list', 'v');
    const [popped, refused] = await client.take(2);
    expect(popped).toEqual(['drain:list', 'v']);
    expect(poolsideReason(refused)).toBe('DRAINING');
    expect(await client.closesWithin(1000)).toBe(true);
    expect(await drained).toEqual({ cutOff: 0 });
  });

  it('does not wait queue.timeout for a session still waiting for an exclusive connection', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = await startProxy([redis.address], { exclusive: { max: 1 }, queue: { timeout: '20s' } });
    cleanup.defer(() => proxy.close());
    const holder = await RawClient.connect(portOf(proxy));
    cleanup.defer(() => holder.destroy());
    const waiter = await RawClient.connect(portOf(proxy));
    cleanup.defer(() => waiter.destroy());
    holder.send('BLPOP', 'drain:a', '0');
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.borrowed === 1, 'the first BLPOP to hold the exclusive connection');
    waiter.send('BLPOP', 'drain:b', '0');
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.pending === 1, 'the second BLPOP to wait for it');
    // With the server gone no connection can be made for the waiter: before, close() sat in
    // generic-pool's drain() until the waiter's queue.timeout.
    await redis.kill();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      proxy.drain({ delayMs: 0, timeoutMs: 100 }).then(() => 'closed'),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve('still waiting'), 10_000);
      }),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe('closed');
  }, 20_000);
});
