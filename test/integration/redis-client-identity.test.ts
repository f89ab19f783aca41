/**
 * Client identity through a pooler: each poolside client has its own id (not the shared pooled
 * connection's), commands that name a client translate it (CLIENT KILL ID, UNBLOCK, TRACKING
 * REDIRECT), CLIENT LIST/INFO describe poolside clients, CLIENT REPLY is emulated, and WAIT counts
 * acknowledgements of the session's own writes. Against real redis-servers (a replica for WAIT).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { startProxy, portOf, startRedisAndProxy } from '../helpers/proxy.js';
import { RawClient, RespError, poolsideReason } from '../helpers/resp-client.js';
import { RedisServer, rawCommand, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

describe('client identity', () => {
  it('gives every client its own CLIENT ID even when they share one pooled connection', async () => {
    const { port } = await startRedisAndProxy(cleanup, { connections: { min: 1, max: 1 } });
    const ids = new Set<unknown>();
    for (let i = 0; i < 5; i++) {
      const c = await raw(port);
      ids.add(await c.call('CLIENT', 'ID'));
    }
    expect(ids.size).toBe(5);
    for (const id of ids) expect(typeof id).toBe('number');
  });

  it('lists this pool’s clients in CLIENT LIST and describes the caller in CLIENT INFO', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    const b = await raw(port);
    const idA = (await a.call('CLIENT', 'ID')) as number;
    const idB = (await b.call('CLIENT', 'ID')) as number;
    const list = (await a.call('CLIENT', 'LIST')) as string;
    const listed = list.trim().split('\n').map((line) => Number(/^id=(\d+) /.exec(line)?.[1]));
    expect(listed.sort()).toEqual([idA, idB].sort());
    expect(await b.call('CLIENT', 'INFO')).toMatch(new RegExp(`^id=${idB} addr=127\\.0\\.0\\.1:\\d+ `));
    expect(((await a.call('CLIENT', 'LIST', 'ID', String(idB))) as string).trim().split('\n')).toHaveLength(1);
  });

  it('lists clients in the order they connected, as Redis does, also after one in the middle left', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const clients = [await raw(port), await raw(port), await raw(port), await raw(port)];
    const ids: number[] = [];
    for (const c of clients) ids.push((await c.call('CLIENT', 'ID')) as number);
    const listed = async (): Promise<number[]> => {
      const list = (await clients[0].call('CLIENT', 'LIST')) as string;
      return list.trim().split('\n').map((line) => Number(/^id=(\d+) /.exec(line)?.[1]));
    };
    expect(await listed()).toEqual(ids);
    clients[1].destroy();
    await waitFor(async () => (await listed()).length === 3, 'the closed client to leave CLIENT LIST');
    expect(await listed()).toEqual([ids[0], ids[2], ids[3]]);
  });

  it('kills a client of this pool by its poolside id and refuses the filters it cannot honour', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    const b = await raw(port);
    const idB = (await b.call('CLIENT', 'ID')) as number;
    expect(await a.call('CLIENT', 'KILL', 'ID', String(idB))).toBe(1);
    expect(await b.closesWithin(2000)).toBe(true);
    expect(await a.call('CLIENT', 'KILL', 'ID', '999999')).toBe(0);
    expect(poolsideReason(await a.call('CLIENT', 'KILL', 'ADDR', '127.0.0.1:1'))).toBe('UNSUPPORTED_COMMAND');
    expect(await a.call('PING')).toBe('PONG');
  });

  it('unblocks a client blocked in BLPOP by its poolside id, with TIMEOUT and with ERROR', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const blocked = await raw(port);
    const other = await raw(port);
    const id = (await blocked.call('CLIENT', 'ID')) as number;
    blocked.send('BLPOP', 'nothing-here', '0');
    await waitFor(async () => (await other.call('CLIENT', 'UNBLOCK', String(id))) === 1, 'CLIENT UNBLOCK to find the blocked client');
    expect(await blocked.reply(2000)).toBeNull();
    blocked.send('BLPOP', 'nothing-here', '0');
    await waitFor(async () => (await other.call('CLIENT', 'UNBLOCK', String(id), 'ERROR')) === 1, 'CLIENT UNBLOCK ERROR');
    expect(String(await blocked.reply(2000))).toMatch(/UNBLOCKED/);
    expect(await other.call('CLIENT', 'UNBLOCK', String(id))).toBe(0);
  });

  it('translates CLIENT TRACKING REDIRECT to the subscriber’s own connection, so RESP2 client-side caching gets its invalidations', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const subscriber = await raw(port);
    const sid = (await subscriber.call('CLIENT', 'ID')) as number;
    expect(await subscriber.call('SUBSCRIBE', '__redis__:invalidate')).toEqual(['subscribe', '__redis__:invalidate', 1]);
    const tracker = await raw(port);
    expect(await tracker.call('CLIENT', 'TRACKING', 'on', 'REDIRECT', String(sid))).toBe('OK');
    expect(await tracker.call('GET', 'cached')).toBeNull();
    await rawCommand(redis.port, ['SET', 'cached', 'changed']);
    expect(await subscriber.reply(2000)).toEqual(['message', '__redis__:invalidate', ['cached']]);
    expect(await tracker.call('CLIENT', 'TRACKING', 'on', 'REDIRECT', '424242')).toEqual(new RespError('ERR The client ID you want redirect to does not exist'));
  });
});

describe('CLIENT REPLY', () => {
  it('drops the replies a client asked not to get, keeping every other reply in order', async () => {
    const { port } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    for (const cmd of [['CLIENT', 'REPLY', 'SKIP'], ['SET', 'r1', '1'], ['GET', 'r1'], ['CLIENT', 'REPLY', 'OFF'], ['SET', 'r2', '2'], ['GET', 'r2'], ['CLIENT', 'REPLY', 'ON'], ['GET', 'r2']]) {
      a.send(...cmd);
    }
    expect(await a.take(3)).toEqual(['1', 'OK', '2']);
    // Nothing else was written for those requests: the next reply is the next request's.
    expect(await a.call('PING')).toBe('PONG');
  });
});

describe('CLIENT REPLY inside MULTI', () => {
  it('refuses it there (the transaction aborts) and keeps answering every reply after it', async () => {
    const { port, redis } = await startRedisAndProxy(cleanup);
    const a = await raw(port);
    for (const cmd of [['MULTI'], ['CLIENT', 'REPLY', 'OFF'], ['SET', 'in-tx', '1'], ['EXEC'], ['PING']]) a.send(...cmd);
    const [multi, reply, queued, exec, ping] = await a.take(5);
    expect([multi, queued, ping]).toEqual(['OK', 'QUEUED', 'PONG']);
    expect(poolsideReason(reply)).toBe('UNSUPPORTED_COMMAND');
    expect(String(exec)).toMatch(/EXECABORT/);
    expect(await rawCommand(redis.port, ['EXISTS', 'in-tx'])).toBe(':0\r\n');
  });
});

describe('WAIT', () => {
  it('counts only replicas that acknowledged the client’s own writes, made on shared connections', async () => {
    const primary = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const replica = cleanup.add(await RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port)]), (s) => s.stop());
    cleanup.defer(() => replica.signal('SIGCONT'));
    await waitFor(async () => (await rawCommand(replica.port, ['INFO', 'replication'])).includes('master_link_status:up'), 'the replica in sync', 10_000);
    const proxy = cleanup.add(await startProxy([primary.address]), (p) => p.close());
    const a = await raw(portOf(proxy));
    expect(await a.call('SET', 'w', '1')).toBe('OK');
    expect(await a.call('WAIT', '1', '2000')).toBe(1);
    await replica.freeze();
    expect(await a.call('SET', 'w', '2')).toBe('OK');
    expect(await a.call('WAIT', '1', '300')).toBe(0);
    replica.signal('SIGCONT');
  });
});
