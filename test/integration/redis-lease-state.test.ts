/**
 * What a pinned session owns and how it ends: transaction and watch state tracked from the server's
 * replies, SELECT inside MULTI adopted only from a committed EXEC, every exclusive slot given back
 * exactly once (a refused or unanswered RESET included), and a session whose state lived on a
 * connection that died closed rather than continued as somebody else. Against a real redis-server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, startRedisAndProxy, waitReady } from '../helpers/proxy.js';
import { RawClient, RespError, poolsideReason } from '../helpers/resp-client.js';
import { RedisServer, rawCommand, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

function exclusive(proxy: Proxy): { borrowed: number; idle: number; pending: number } {
  return proxy.stats()[0].servers[0].exclusive;
}

/** Writes `db<n>` under db-marker in databases 0..n-1, straight to the server. */
async function markDatabases(redis: RedisServer, n: number): Promise<void> {
  const c = await RawClient.connect(redis.port);
  for (let db = 0; db < n; db++) {
    c.send('SELECT', db);
    c.send('SET', 'db-marker', `db${db}`);
  }
  await c.take(2 * n);
  c.destroy();
}

async function startRedis(args: string[] = []): Promise<RedisServer> {
  const server = cleanup.add(await RedisServer.start(args), (s) => s.stop());
  cleanup.defer(() => server.signal('SIGCONT'));
  return server;
}

describe('SELECT inside MULTI', () => {
  it('queues the client’s SELECT without adding one of its own, and adopts the database only from the committed EXEC', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    await markDatabases(redis, 2);
    const a = await raw(port);
    // phpredis's multi()->select(1)->set()->get()->exec(), pipelined.
    for (const cmd of [['MULTI'], ['SELECT', '1'], ['SET', 'k', 'v'], ['GET', 'db-marker'], ['EXEC']]) a.send(...cmd);
    expect(await a.take(5)).toEqual(['OK', 'QUEUED', 'QUEUED', 'QUEUED', ['OK', 'OK', 'db1']]);
    expect(await a.call('GET', 'db-marker')).toBe('db1');
    expect(await a.call('GET', 'k')).toBe('v');
  });

  it('stays in its database after MULTI; SELECT 1; DISCARD', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    await markDatabases(redis, 2);
    const a = await raw(port);
    for (const cmd of [['MULTI'], ['SELECT', '1'], ['DISCARD']]) a.send(...cmd);
    expect(await a.take(3)).toEqual(['OK', 'QUEUED', 'OK']);
    expect(await a.call('GET', 'db-marker')).toBe('db0');
    a.send('SET', 'after-discard', 'x');
    expect(await a.reply()).toBe('OK');
    expect(await rawCommand(redis.port, ['EXISTS', 'after-discard'])).toBe(':1\r\n');
  });

  it('stays in its database after a transaction with a SELECT ends in EXECABORT', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    await markDatabases(redis, 2);
    const a = await raw(port);
    for (const cmd of [['MULTI'], ['SELECT', '1'], ['SET', 'only-one-arg'], ['EXEC']]) a.send(...cmd);
    const [multi, select, bad, exec] = await a.take(4);
    expect([multi, select]).toEqual(['OK', 'QUEUED']);
    expect(bad).toBeInstanceOf(RespError);
    expect(String(exec)).toMatch(/EXECABORT/);
    expect(await a.call('GET', 'db-marker')).toBe('db0');
  });

  it('answers EXECABORT for a transaction with a command poolside refused, and nothing of it runs', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    for (const cmd of [['MULTI'], ['SET', 'tx-refused', '1'], ['SHUTDOWN'], ['EXEC']]) a.send(...cmd);
    const [multi, queued, refused, exec] = await a.take(4);
    expect([multi, queued]).toEqual(['OK', 'QUEUED']);
    expect(poolsideReason(refused)).toBe('UNSUPPORTED_COMMAND');
    expect(String(exec)).toMatch(/EXECABORT/);
    expect(await rawCommand(redis.port, ['EXISTS', 'tx-refused'])).toBe(':0\r\n');
    expect(await a.call('PING')).toBe('PONG');
  });
});

describe('WATCH', () => {
  it('keeps a WATCH that a failed DISCARD did not release, and the next client never inherits it', async () => {
    const { port, redis, proxy } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 } });
    const a = await raw(port);
    expect(await a.call('WATCH', 'watched')).toBe('OK');
    expect(await a.call('DISCARD')).toEqual(new RespError('ERR DISCARD without MULTI'));
    // The key changes under the watch; the watching client then leaves.
    await rawCommand(redis.port, ['SET', 'watched', 'changed']);
    a.destroy();
    await waitFor(() => exclusive(proxy).borrowed === 0, 'the watching client’s connection back in the pool');
    const b = await raw(port);
    for (const cmd of [['MULTI'], ['SET', 'b-key', '1'], ['EXEC']]) b.send(...cmd);
    expect(await b.take(3)).toEqual(['OK', 'QUEUED', ['OK']]);
  });

  it('holds the connection while a WATCH is in place and gives it back after EXEC', async () => {
    const { port, proxy } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 } });
    const a = await raw(port);
    expect(await a.call('WATCH', 'w')).toBe('OK');
    expect(exclusive(proxy).borrowed).toBe(1);
    for (const cmd of [['MULTI'], ['SET', 'w', '1'], ['EXEC']]) a.send(...cmd);
    expect(await a.take(3)).toEqual(['OK', 'QUEUED', ['OK']]);
    await waitFor(() => exclusive(proxy).borrowed === 0, 'the connection given back after EXEC');
  });
});

describe('exclusive slots', () => {
  it('gives the slot back when the release RESET is refused, so later transactions still get a connection', async () => {
    const redis = await startRedis(['--rename-command', 'RESET', '']);
    const proxy = cleanup.add(await startProxy([redis.address], { exclusive: { max: 1 }, queue: { timeout: '1s' } }), (p) => p.close());
    const port = portOf(proxy);
    for (let i = 0; i < 3; i++) {
      const a = await raw(port);
      expect(await a.call('MULTI')).toBe('OK');
      expect(await a.call('SET', 'k', String(i))).toBe('QUEUED');
      a.destroy(); // leaves mid-MULTI: the connection must be reset, and RESET is refused
      await waitFor(() => exclusive(proxy).borrowed === 0, 'the refused reset’s slot freed');
    }
    const b = await raw(port);
    for (const cmd of [['MULTI'], ['SET', 'k', 'b'], ['EXEC']]) b.send(...cmd);
    expect(await b.take(3)).toEqual(['OK', 'QUEUED', ['OK']]);
    await proxy.close();
  });

  it('gives the slot back when the release RESET gets no answer from a frozen server, and shutdown finishes', async () => {
    const redis = await startRedis();
    const proxy = cleanup.add(
      await startProxy([redis.address], { exclusive: { max: 1 }, connect: { timeout: '300ms' }, heartbeat: { interval: '10s' } }),
      (p) => p.close(),
    );
    await waitReady(proxy);
    const a = await raw(portOf(proxy));
    expect(await a.call('MULTI')).toBe('OK');
    redis.signal('SIGSTOP');
    a.destroy();
    await waitFor(() => exclusive(proxy).borrowed === 0, 'the unanswered reset’s slot freed', 5000);
    await proxy.close(); // would wait forever for the borrowed slot before
    redis.signal('SIGCONT');
  });
});

describe('a pinned connection that dies', () => {
  it('closes a client authenticated as a read-only ACL user rather than carry on with poolside’s credentials', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    expect(await rawCommand(redis.port, ['ACL', 'SETUSER', 'ro', 'on', '>ropass', '~*', '+@read', '+@connection', '+acl|whoami'])).toBe('+OK\r\n');
    const a = await raw(port);
    expect(await a.call('AUTH', 'ro', 'ropass')).toBe('OK');
    expect(await a.call('ACL', 'WHOAMI')).toBe('ro');
    expect(String(await a.call('SET', 'k', 'v'))).toMatch(/NOPERM/);
    await rawCommand(redis.port, ['CLIENT', 'KILL', 'USER', 'ro']);
    expect(await a.closesWithin(3000)).toBe(true);
    expect(await rawCommand(redis.port, ['EXISTS', 'k'])).toBe(':0\r\n');
  });

  it('closes a subscriber whose connection was killed, so its library resubscribes', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    expect(await a.call('SUBSCRIBE', 'ch')).toEqual(['subscribe', 'ch', 1]);
    await rawCommand(redis.port, ['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    expect(await a.closesWithin(3000)).toBe(true);
  });

  it('closes a client mid-transaction whose connection was killed, failing what it had in flight', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('CLIENT', 'SETNAME', 'in-tx')).toBe('QUEUED');
    await rawCommand(redis.port, ['CLIENT', 'KILL', 'SKIPME', 'yes', 'TYPE', 'normal']);
    expect(await a.closesWithin(3000)).toBe(true);
  });

  it('lets a client whose blocking pop lost its connection carry on (nothing but the pop lived there)', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    a.send('BLPOP', 'never', '10');
    await waitFor(async () => (await rawCommand(redis.port, ['CLIENT', 'LIST'])).includes('cmd=blpop'), 'BLPOP blocking on the server');
    const list = await rawCommand(redis.port, ['CLIENT', 'LIST']);
    const id = /id=(\d+) [^\n]*cmd=blpop/.exec(list)?.[1];
    expect(id).toBeDefined();
    await rawCommand(redis.port, ['CLIENT', 'KILL', 'ID', id as string]);
    expect(poolsideReason(await a.reply(3000))).toBe('SERVER_ERROR');
    expect(await a.call('PING')).toBe('PONG');
  });
});

describe('pipelines longer than queue.max', () => {
  it('runs a pipelined transaction of 1,500 commands whole with queue.max 1000', async () => {
    const { port } = await startRedisAndProxy(cleanup, { queue: { max: 1000 } });
    const a = await raw(port);
    a.send('MULTI');
    for (let i = 0; i < 1500; i++) a.send('SET', `t${i}`, String(i));
    a.send('EXEC');
    const replies = await a.take(1502, 10_000);
    expect(replies[0]).toBe('OK');
    expect(replies.slice(1, 1501).every((r) => r === 'QUEUED')).toBe(true);
    expect((replies[1501] as unknown[]).length).toBe(1500);
    expect(await a.call('GET', 't1499')).toBe('1499');
    expect(await a.call('GET', 'missing')).toBeNull();
  });

  it('runs SELECT 1 then 2,000 pipelined SETs, every one', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup, { queue: { max: 1000 } });
    const a = await raw(port);
    a.send('SELECT', '1');
    for (let i = 0; i < 2000; i++) a.send('SET', `s${i}`, String(i));
    const replies = await a.take(2001, 10_000);
    expect(replies.every((r) => r === 'OK')).toBe(true);
    expect(await rawCommand(redis.port, ['SELECT', '1'])).toBe('+OK\r\n');
    const c = await RawClient.connect(redis.port);
    c.send('SELECT', '1');
    c.send('DBSIZE');
    expect(await c.take(2)).toEqual(['OK', 2000]);
    c.destroy();
  });
});

describe('lease: exclusive (session mode)', () => {
  it('gives each client a connection of its own for its life, reset before the next client gets it', async () => {
    const { port, redis, proxy } = await startRedisAndProxy(cleanup, { lease: 'exclusive', exclusive: { max: 1 } });
    const a = await raw(port);
    expect(await a.call('CLIENT', 'SETNAME', 'worker-a')).toBe('OK');
    expect(await a.call('SELECT', '2')).toBe('OK');
    expect(await a.call('CLIENT', 'GETNAME')).toBe('worker-a');
    expect(exclusive(proxy).borrowed).toBe(1);
    a.destroy();
    await waitFor(() => exclusive(proxy).borrowed === 0 && exclusive(proxy).idle === 1, 'the connection reset and back');
    const b = await raw(port);
    expect(await b.call('CLIENT', 'GETNAME')).toBeNull();
    expect(await b.call('SET', 'where', 'b')).toBe('OK');
    expect(await rawCommand(redis.port, ['GET', 'where'])).toBe('$1\r\nb\r\n');
    expect(proxy.pools.get('p')?.counters.pins.get('session_mode')).toBe(2);
  });
});
