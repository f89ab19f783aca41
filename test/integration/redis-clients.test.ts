/**
 * What a client can do to poolside, and what poolside does to a client: unix-socket listeners,
 * bad bytes, inline and refused commands, QUIT, leaving with requests in flight, clients.max and
 * the output buffer limits.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { portOf, quietLog, startProxy, waitReady, startRedisAndProxy } from '../helpers/proxy.js';
import { encode, poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { RedisServer, tempDir, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const setup = (pool: Record<string, unknown> = {}): ReturnType<typeof startRedisAndProxy> => startRedisAndProxy(cleanup, pool);

async function raw(target: number | { path: string }): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(target), (c) => c.destroy());
}

function socketDir(): string {
  const dir = tempDir('poolside-sock-');
  cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A proxy from a full YAML document (for listener options the helper's defaults do not cover). */
async function startProxyYaml(doc: Record<string, unknown>): Promise<Proxy> {
  return Proxy.start(parseConfig(YAML.stringify({ admin: false, ...doc }), 'test.yaml'), { log: quietLog() });
}

/** Leaves a unix socket file behind the way a crashed process does: bound, listening, then SIGKILLed. */
function abandonSocket(socketPath: string): void {
  const script = "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))";
  const result = spawnSync(process.execPath, ['-e', script, socketPath], { timeout: 5000 });
  expect(result.signal).toBe('SIGKILL');
  expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
}

function expectReason(value: RespValue, reason: string): void {
  expect(value).toBeInstanceOf(RespError);
  expect(poolsideReason(value), String(value)).toBe(reason);
}

describe('unix-socket listener', () => {
  it('serves ioredis over the unix socket and TCP at once, with socket mode 0660 by default', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const socketPath = path.join(socketDir(), 'p.sock');
    const proxy = cleanup.add(await startProxy([redis.address], { listen: ['127.0.0.1:0', `unix:${socketPath}`] }), (p) => p.close());
    expect(proxy.address('p', 1)).toMatchObject({ kind: 'unix', path: socketPath });
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o660);

    const overUnix = await connectRedis(cleanup, { path: socketPath }, { disableClientInfo: true });
    const overTcp = await connectRedis(cleanup, portOf(proxy), { disableClientInfo: true });
    expect(await overUnix.set('u:k', 'via-unix')).toBe('OK');
    expect(await overTcp.get('u:k')).toBe('via-unix');
    const pipeline = overUnix.pipeline();
    for (let i = 0; i < 100; i++) pipeline.incr('u:n');
    expect((await pipeline.exec())?.map(([, n]) => n)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));

    overUnix.disconnect();
    overTcp.disconnect();
    await waitFor(() => proxy.clients === 0, 'both clients gone');
    await proxy.close();
    expect(fs.existsSync(socketPath)).toBe(false);
  });

  it('applies a configured socket mode', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const socketPath = path.join(socketDir(), 'p.sock');
    cleanup.add(await startProxy([redis.address], { listen: [{ address: `unix:${socketPath}`, mode: '0600' }] }), (p) => p.close());
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
  });

  it('replaces a stale socket file left by a process that died', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const socketPath = path.join(socketDir(), 'p.sock');
    abandonSocket(socketPath);
    cleanup.add(await startProxy([redis.address], { listen: [`unix:${socketPath}`] }), (p) => p.close());
    const client = await raw({ path: socketPath });
    expect(await client.call('PING')).toBe('PONG');
  });

  it('refuses to start, with a clear error, when a regular file is at the socket path, and leaves the file alone', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const socketPath = path.join(socketDir(), 'p.sock');
    fs.writeFileSync(socketPath, 'precious data');
    await expect(startProxy([redis.address], { listen: ['127.0.0.1:0', `unix:${socketPath}`] })).rejects.toThrow(
      `cannot listen on unix:${socketPath}: the path exists and is not a socket`,
    );
    expect(fs.readFileSync(socketPath, 'utf8')).toBe('precious data');
  });

  it('refuses to start when another live process is listening on the socket path', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const socketPath = path.join(socketDir(), 'p.sock');
    cleanup.add(await startProxy([redis.address], { listen: [`unix:${socketPath}`] }), (p) => p.close());
    await expect(
      startProxyYaml({ pools: { q: { protocol: 'redis', listen: [`unix:${socketPath}`], servers: [redis.address] } } }),
    ).rejects.toThrow('another process is listening on it');
    // The first proxy keeps its socket.
    const client = await raw({ path: socketPath });
    expect(await client.call('PING')).toBe('PONG');
  });
});

describe('bad input', () => {
  const garbage: [string, string][] = [
    ['a bulk length that is not a number', '*2\r\n$3\r\nGET\r\n$abc\r\n'],
    ['a negative bulk length', '*2\r\n$3\r\nGET\r\n$-5\r\n'],
    ['a 2 GB bulk length', '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2147483648\r\n'],
    ['a multibulk count that is not a number', '*x\r\n'],
    ['a missing $ before an argument', '*2\r\n$3\r\nGET\r\n:1\r\n'],
  ];

  it.each(garbage)('answers %s with PROTOCOL_ERROR and closes the client', async (_what, bytes) => {
    const { port, proxy } = await setup();
    const client = await raw(port);
    client.send('SET', 'before', 'ok');
    client.write(bytes);
    const [set, error] = await client.take(2);
    expect(set).toBe('OK');
    expectReason(error, 'PROTOCOL_ERROR');
    expect(await client.closesWithin(2000)).toBe(true);
    expect(proxy.pools.get('p')?.counters.protocolErrors).toBe(1);
  });

  it('closes clients that send garbage while other clients’ pipelines continue unaffected, and keeps serving new clients', async () => {
    const { port, proxy } = await setup({ connections: { min: 2, max: 2 } });
    const opened = proxy.stats()[0].servers[0].counters.connectionsOpened;
    const good = await Promise.all(Array.from({ length: 5 }, () => raw(port)));
    let stop = false;
    const rounds = good.map(async (client, c) => {
      let round = 0;
      while (!stop) {
        round++;
        for (let i = 0; i < 50; i++) {
          client.send('SET', `g:${c}`, `${round}:${i}`);
          client.send('GET', `g:${c}`);
        }
        const replies = await client.take(100);
        for (let i = 0; i < 50; i++) expect(replies[i * 2 + 1]).toBe(`${round}:${i}`);
      }
      return round;
    });
    const bad = await Promise.all(Array.from({ length: 20 }, () => raw(port)));
    await Promise.all(
      bad.map(async (client, i) => {
        // A valid request first, then a garbage frame torn in two writes.
        const frame = garbage[i % garbage.length][1];
        const cut = 1 + (i % (frame.length - 1));
        client.write(encode('SET', `bad:${i}`, 'x'));
        client.write(frame.slice(0, cut));
        await new Promise((resolve) => setImmediate(resolve));
        client.write(frame.slice(cut));
      }),
    );
    await Promise.all(bad.map((client) => client.closesWithin(2000)));
    expect(bad.every((client) => client.isClosed)).toBe(true);
    for (const client of bad) {
      const replies = await client.take(client.pending);
      expect(replies).toHaveLength(2);
      expect(replies[0]).toBe('OK');
      expectReason(replies[1], 'PROTOCOL_ERROR');
    }
    stop = true;
    expect(Math.min(...(await Promise.all(rounds)))).toBeGreaterThan(0);
    expect(good.every((client) => !client.isClosed)).toBe(true);

    const late = await raw(port);
    expect(await late.call('PING')).toBe('PONG');
    const [server] = proxy.stats()[0].servers;
    expect(server.counters.connectionsOpened).toBe(opened);
    expect(Object.values(server.counters.connectionsClosed).every((n) => n === 0)).toBe(true);
  });

  it('answers inline commands, quoted arguments included', async () => {
    const { port } = await setup();
    const client = await raw(port);
    client.write('PING\r\n');
    expect(await client.reply()).toBe('PONG');
    client.write('SET a "b c"\r\nGET a\r\n');
    expect(await client.take(2)).toEqual(['OK', 'b c']);
    // Split at every byte, and mixed with a multibulk request.
    const bytes = Buffer.concat([Buffer.from('SET inline "x y z"\r\n'), encode('GET', 'inline'), Buffer.from('ECHO hello\r\n')]);
    for (let i = 0; i < bytes.length; i++) {
      client.write(bytes.subarray(i, i + 1));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await client.take(3)).toEqual(['OK', 'x y z', 'hello']);
  });

  it('refuses unsupported commands with UNSUPPORTED_COMMAND and keeps the client connected', async () => {
    const { port, redis } = await setup();
    const client = await raw(port);
    const refused = [
      ['SHUTDOWN'],
      ['SHUTDOWN', 'NOSAVE'],
      ['DEBUG', 'SLEEP', '0'],
      ['CLIENT', 'KILL', 'ADDR', '127.0.0.1:1'],
      ['CLIENT', 'PAUSE', '1000'],
      ['CLIENT', 'UNPAUSE'],
      ['SLAVEOF', 'NO', 'ONE'],
      ['SYNC'],
    ];
    for (const command of refused) client.send(...command);
    client.send('PING');
    const replies = await client.take(refused.length + 1);
    replies.slice(0, -1).forEach((reply) => expectReason(reply, 'UNSUPPORTED_COMMAND'));
    expect(replies.at(-1)).toBe('PONG');
    expect(client.isClosed).toBe(false);
    expect(await redis.command('PING')).toBe('+PONG\r\n');
  });

  it('answers QUIT with +OK after the replies it owes, runs nothing sent after it, and closes', async () => {
    const { port, redis, proxy } = await setup();
    await waitReady(proxy);
    const client = await raw(port);
    client.send('SET', 'q', 'before');
    client.send('GET', 'q');
    client.send('QUIT');
    client.send('SET', 'q', 'after');
    expect(await client.take(3)).toEqual(['OK', 'before', 'OK']);
    expect(await client.closesWithin(2000)).toBe(true);
    expect(client.pending).toBe(0);
    expect(await redis.command('GET', 'q')).toBe('$6\r\nbefore\r\n');
  });

  // The session stops reading at QUIT as soon as QUIT is framed, not when it is dispatched: a QUIT
  // held behind requests that wait for a connection must not let what follows it run.
  it('runs nothing sent after QUIT even when the requests before it were waiting for a connection', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    // Frozen: poolside's first connection cannot become ready, so requests wait.
    await redis.freeze();
    cleanup.defer(() => redis.signal('SIGCONT'));
    const proxy = cleanup.add(await startProxy([redis.address], { queue: { timeout: '3s' } }), (p) => p.close());
    const client = await raw(portOf(proxy));
    client.send('SET', 'q', 'before');
    client.send('QUIT');
    client.send('SET', 'q', 'after');
    await waitFor(() => proxy.stats()[0].waiting.requests > 0, 'requests waiting for a connection');
    redis.signal('SIGCONT');
    expect(await client.take(2, 3000)).toEqual(['OK', 'OK']);
    expect(await client.closesWithin(2000)).toBe(true);
    expect(client.pending).toBe(0);
    expect(await redis.command('GET', 'q')).toBe('$6\r\nbefore\r\n');
  });
});

describe('client lifecycle', () => {
  it('does not cost a pooled connection when a client leaves with 1000 requests in flight', async () => {
    const { port, proxy, redis } = await setup({ connections: { min: 2, max: 2 }, request_timeout: '5s' });
    const before = structuredClone(proxy.stats()[0].servers[0]);
    const other = await raw(port);
    expect(await other.call('SET', 'big', 'x'.repeat(10_000))).toBe('OK');

    // Freeze the server so the requests are surely in flight when the client leaves.
    await redis.freeze();
    cleanup.defer(() => redis.signal('SIGCONT'));
    const leaving = await raw(port);
    for (let i = 0; i < 1000; i++) leaving.send(i % 2 === 0 ? 'GET' : 'INCR', i % 2 === 0 ? 'big' : 'leaving:n');
    await waitFor(() => proxy.stats()[0].servers[0].inflight >= 1000, '1000 requests in flight');
    leaving.destroy();
    // Its FIN could be a half-close: poolside keeps the session until the replies come, writes
    // them, and learns from the reset that the client is gone.
    redis.signal('SIGCONT');
    await waitFor(() => proxy.clients === 1, 'the client gone');
    await waitFor(() => proxy.stats()[0].servers[0].inflight === 0, 'the orphaned replies read and dropped');

    const after = proxy.stats()[0].servers[0];
    expect(after.counters.connectionsOpened).toBe(before.counters.connectionsOpened);
    expect(after.counters.connectionsClosed).toEqual(before.counters.connectionsClosed);
    expect(after.connections.idle + after.connections.active).toBe(2);
    // The requests ran (they were sent), and the connections carry on in order for everyone else.
    expect(await other.call('GET', 'leaving:n')).toBe('500');
    for (let i = 0; i < 100; i++) other.send('INCR', 'other:n');
    expect(await other.take(100)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  // net.Server.close() calls back only once every accepted connection has ended: drain() must
  // close the sessions at the deadline before it waits for that. A blocked client holds out to it.
  it('cuts a blocked client at shutdown.timeout on drain() and resolves', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = await startProxy([redis.address]);
    cleanup.defer(() => proxy.close());
    const client = await raw(portOf(proxy));
    expect(await client.call('PING')).toBe('PONG');
    client.send('BLPOP', 'drain:never', '0');
    await waitFor(() => proxy.clientList().clients.some((c) => c.holds === 'blocking'), 'the client to block');
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      proxy.drain({ delayMs: 0, timeoutMs: 200 }).then((r) => r),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve('still open'), 2000);
      }),
    ]);
    clearTimeout(timer);
    expect(outcome).toEqual({ cutOff: 1 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    expect(await client.closesWithin(1000)).toBe(true);
  });

  it('resets the exclusive connection of a client that leaves in the middle of a transaction', async () => {
    const { port, proxy } = await setup({ exclusive: { max: 1 } });
    const leaving = await raw(port);
    expect(await leaving.call('SELECT', '5')).toBe('OK');
    expect(await leaving.call('MULTI')).toBe('OK');
    expect(await leaving.call('SET', 'mid:k', 'never')).toBe('QUEUED');
    leaving.destroy();
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.borrowed === 0, 'the exclusive connection returned');
    const next = await raw(port);
    // Not inside the leaver's transaction, not in its database.
    expect(await next.call('MULTI')).toBe('OK');
    expect(await next.call('GET', 'mid:k')).toBe('QUEUED');
    expect(await next.call('EXEC')).toEqual([null]);
    expect(await next.call('SELECT', '5')).toBe('OK');
    expect(await next.call('GET', 'mid:k')).toBeNull();
  });

  it('refuses the third client with TOO_MANY_CLIENTS when clients.max is 2, and admits one again after a client leaves', async () => {
    const { port, proxy } = await setup({ clients: { max: 2 } });
    const first = await raw(port);
    const second = await raw(port);
    expect(await first.call('PING')).toBe('PONG');
    expect(await second.call('PING')).toBe('PONG');
    const third = await raw(port);
    expectReason(await third.reply(), 'TOO_MANY_CLIENTS');
    expect(await third.closesWithin(2000)).toBe(true);
    expect(proxy.pools.get('p')?.counters.clientsRejected).toBe(1);
    // The admitted clients are untouched.
    expect(await first.call('PING')).toBe('PONG');

    first.destroy();
    await waitFor(() => proxy.clients === 1, 'the first client gone');
    const fourth = await raw(port);
    expect(await fourth.call('PING')).toBe('PONG');
  });

  it('closes a client that never reads its replies at clients.output_buffer.hard while another client keeps being answered', async () => {
    const { port, proxy } = await setup({ clients: { output_buffer: { soft: '64kb', hard: '1mb' } } });
    const other = await raw(port);
    expect(await other.call('SET', 'bigkey', 'v'.repeat(1 << 20))).toBe('OK');
    expect(await other.call('SET', 'small', 's')).toBe('OK');

    const stalled = await raw(port);
    stalled.socket.pause();
    for (let i = 0; i < 64; i++) stalled.send('GET', 'bigkey');

    // Meanwhile another client's requests are answered, one round trip at a time (no timing is
    // asserted: the machine may be loaded; that the shared connection never waits is what counts).
    const overflowed = (): boolean => proxy.pools.get('p')?.counters.clientsOverflowed === 1;
    for (let i = 0; i < 100 && !overflowed(); i++) {
      expect(await other.call('GET', 'small')).toBe('s');
    }
    // Judged from poolside's side: a client that is not reading does not read the reset either.
    await waitFor(() => overflowed() && proxy.clients === 1, 'poolside to close the stalled client', 5000);
    stalled.socket.resume();
    await waitFor(() => stalled.isClosed, 'the stalled client to see the reset', 5000);
    expect(proxy.pools.get('p')?.counters.clientsOverflowed).toBe(1);
    expect(await other.call('GET', 'small')).toBe('s');
    const [server] = proxy.stats()[0].servers;
    expect(Object.values(server.counters.connectionsClosed).every((n) => n === 0)).toBe(true);
  });

  it('keeps a client that pauses reading below clients.output_buffer.hard and delivers every reply in order when it resumes', async () => {
    const { port, proxy } = await setup({ clients: { output_buffer: { soft: '64kb', hard: '64mb' } } });
    const writer = await raw(port);
    const values = Array.from({ length: 40 }, (_, i) => `${i}:${'w'.repeat(100_000)}`);
    for (const [i, value] of values.entries()) writer.send('SET', `pause:${i}`, value);
    await writer.take(values.length);

    const reader = await raw(port);
    reader.socket.pause();
    for (let i = 0; i < values.length; i++) reader.send('GET', `pause:${i}`);
    // Let poolside fill the socket and stop reading this client for a while.
    await waitFor(() => proxy.stats()[0].servers[0].inflight === 0, 'the requests answered by the server');
    const other = await raw(port);
    expect(await other.call('PING')).toBe('PONG');
    reader.socket.resume();
    const replies = await reader.take(values.length, 10_000);
    expect(replies).toEqual(values);
    expect(reader.isClosed).toBe(false);
    expect(await reader.call('PING')).toBe('PONG');
    expect(proxy.pools.get('p')?.counters.clientsOverflowed).toBe(0);
  });
});
