/**
 * What a pinned session owns and how it ends: transaction and watch state tracked from the server's
 * replies, SELECT inside MULTI adopted only from a committed EXEC, every exclusive slot given back
 * exactly once (a refused or unanswered RESET included), and a session whose state lived on a
 * connection that died closed rather than continued as somebody else. Against a real redis-server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, startRedisAndProxy, waitReady, exclusiveStats } from '../helpers/proxy.js';
import { RawClient, RespError, poolsideReason } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { RedisServer, rawCommand, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

const exclusive = exclusiveStats;

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
    await redis.freeze();
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

describe('internal faults', () => {
  it('closes only the client whose reply handling threw, counts it as an internal error, and keeps the shared connection for everyone else', async () => {
    const { port, proxy } = await startRedisAndProxy(cleanup, { connections: { min: 1, max: 1 } });
    const pool = proxy.pools.get('p');
    if (pool === undefined) throw new Error('no pool');
    // Inject a bug: the session's handling of one SELECT reply throws.
    const codec = pool.codec as { isErrorResponse: (bytes: Buffer) => boolean };
    const original = codec.isErrorResponse.bind(codec);
    let armed = false;
    codec.isErrorResponse = (bytes) => {
      if (armed && bytes.toString('latin1') === '+OK\r\n') {
        armed = false;
        throw new Error('injected fault');
      }
      return original(bytes);
    };
    const a = await raw(port);
    const b = await raw(port);
    expect(await b.call('SET', 'k', 'v')).toBe('OK');
    armed = true;
    a.send('SELECT', '1');
    expect(await a.closesWithin(3000)).toBe(true);
    expect(pool.counters.internalErrors).toBe(1);
    expect(pool.counters.protocolErrors).toBe(0);
    expect(await b.call('GET', 'k')).toBe('v');
    const [server] = proxy.stats()[0].servers;
    expect(Object.values(server.counters.connectionsClosed).every((n) => n === 0)).toBe(true);
  });
});

/** Runs `cmds` pipelined on a fresh connection to `port` and returns every reply. */
async function pipeline(port: number, cmds: string[][]): Promise<RespValue[]> {
  const c = await RawClient.connect(port);
  for (const cmd of cmds) c.send(...cmd);
  const out = await c.take(cmds.length);
  c.destroy();
  return out;
}

/** The databases holding `key`, straight from the server. */
async function databasesOf(redis: RedisServer, key: string): Promise<number[]> {
  const c = await RawClient.connect(redis.port);
  for (let db = 0; db < 16; db++) {
    c.send('SELECT', db);
    c.send('EXISTS', key);
  }
  const replies = await c.take(32);
  c.destroy();
  return Array.from({ length: 16 }, (_, db) => db).filter((db) => replies[2 * db + 1] === 1);
}

describe('RESET, refusals and CLIENT commands around transactions', () => {
  it.each([
    ['MULTI; RESET; SELECT 3; EXEC; SET', [['MULTI'], ['RESET'], ['SELECT', '3'], ['EXEC'], ['SET', 'rk', 'v']]],
    ['MULTI; SET; RESET; MULTI; SELECT 2; EXEC; SET', [['MULTI'], ['SET', 'a', '1'], ['RESET'], ['MULTI'], ['SELECT', '2'], ['EXEC'], ['SET', 'rk', 'v']]],
  ])('writes where Redis writes after a client RESET inside a transaction (%s)', async (_name, seq) => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const direct = await pipeline(redis.port, seq);
    const directDbs = await databasesOf(redis, 'rk');
    await rawCommand(redis.port, ['FLUSHALL']);
    expect(await pipeline(port, seq)).toEqual(direct);
    expect(await databasesOf(redis, 'rk')).toEqual(directDbs);
  });

  it('refuses a CLIENT command poolside answers itself inside MULTI, and the transaction aborts whole', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const victim = await raw(port);
    const victimId = (await victim.call('CLIENT', 'ID')) as number;
    const [multi, id, kill, set, exec] = await pipeline(port, [['MULTI'], ['CLIENT', 'ID'], ['CLIENT', 'KILL', 'ID', String(victimId)], ['SET', 'tx', '1'], ['EXEC']]);
    expect(multi).toBe('OK');
    expect(poolsideReason(id)).toBe('UNSUPPORTED_COMMAND');
    expect(poolsideReason(kill)).toBe('UNSUPPORTED_COMMAND');
    expect(set).toBe('QUEUED');
    expect(String(exec)).toMatch(/EXECABORT/);
    expect(await rawCommand(redis.port, ['EXISTS', 'tx'])).toBe(':0\r\n');
    expect(await victim.call('PING')).toBe('PONG');
  });

  it('aborts a transaction whose CLIENT TRACKING REDIRECT names no client', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const replies = await pipeline(port, [['MULTI'], ['CLIENT', 'TRACKING', 'ON', 'REDIRECT', '999999'], ['SET', 'r9', 'v'], ['EXEC']]);
    expect(String(replies[3])).toMatch(/EXECABORT/);
    expect(await rawCommand(redis.port, ['EXISTS', 'r9'])).toBe(':0\r\n');
  });

  it('runs the commands after a WATCH that poolside refused (ketama), as Redis runs them', async () => {
    const servers = [await RedisServer.start(), await RedisServer.start()];
    for (const s of servers) cleanup.add(s, (x) => x.stop());
    const proxy = cleanup.add(await startProxy(servers.map((s) => s.address), { routing: 'ketama' }), (p) => p.close());
    await waitReady(proxy);
    const a = await raw(portOf(proxy));
    expect(poolsideReason(await a.call('WATCH', 'k'))).toBe('UNSUPPORTED_COMMAND');
    expect(await a.call('SET', 'k', 'v')).toBe('OK');
    expect(await a.call('GET', 'k')).toBe('v');
  });

  it('runs nothing of a transaction whose MULTI got no connection, an UNWATCH inside it included', async () => {
    const { port, redis, proxy } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 }, queue: { timeout: '300ms' } });
    const holder = await raw(port);
    expect(await holder.call('MULTI')).toBe('OK'); // the only exclusive connection
    const b = await raw(port);
    for (const cmd of [['MULTI'], ['SET', 'a', '1'], ['UNWATCH'], ['SET', 'b', '1'], ['EXEC']]) b.send(...cmd);
    const replies = await b.take(5, 5000);
    for (const reply of replies) expect(poolsideReason(reply)).toBe('POOL_TIMEOUT');
    expect(await rawCommand(redis.port, ['EXISTS', 'a', 'b'])).toBe(':0\r\n');
    // A WATCH refused the same way aborts nothing after it.
    expect(poolsideReason(await b.call('WATCH', 'k'))).toBe('POOL_TIMEOUT');
    expect(await b.call('SET', 'c', '1')).toBe('OK');
    expect(exclusive(proxy).borrowed).toBe(1);
  });

  it('keeps a new exclusive connection whose first client left before it arrived', async () => {
    const { port, proxy } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 } });
    await waitReady(proxy);
    const a = await RawClient.connect(port);
    a.send('BLPOP', 'nothing', '0.01');
    a.destroy();
    await waitFor(() => exclusive(proxy).idle === 1 && exclusive(proxy).borrowed === 0, 'the connection idle in the pool');
    expect(proxy.stats()[0].servers[0].counters.connectionsClosed.session_state).toBe(0);
  });

  it('answers CLIENT KILL of the client itself with :1, then closes it', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    const id = (await a.call('CLIENT', 'ID')) as number;
    a.send('CLIENT', 'KILL', 'ID', String(id), 'SKIPME', 'no');
    expect(await a.reply(2000)).toBe(1);
    expect(await a.closesWithin(2000)).toBe(true);
  });
});

describe('pin accounting', () => {
  it('counts a pin only once the exclusive connection is lent, not when a MULTI times out waiting for one', async () => {
    const { port, proxy } = await startRedisAndProxy(cleanup, { exclusive: { max: 1 }, queue: { timeout: '200ms' } });
    const holder = await raw(port);
    expect(await holder.call('MULTI')).toBe('OK');
    const waiter = await raw(port);
    expect(poolsideReason(await waiter.call('MULTI'))).toBe('POOL_TIMEOUT');
    expect(proxy.pools.get('p')?.counters.pins.get('transaction')).toBe(1);
  });
});
