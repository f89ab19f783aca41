/**
 * Connection state that must not leak between clients: transactions, WATCH, blocking pops,
 * pub/sub (pinned to an exclusive connection) and SELECT (kept in the session and replayed).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { startRedisAndProxy, exclusiveStats } from '../helpers/proxy.js';
import net from 'node:net';
import { encode, RawClient, RespError } from '../helpers/resp-client.js';
import { RedisServer, rawCommand, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const setup = (pool: Record<string, unknown> = {}): ReturnType<typeof startRedisAndProxy> => startRedisAndProxy(cleanup, pool);

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

const exclusive = exclusiveStats;

/** GET on redis-server directly, in database `db`, bypassing poolside. */
async function getDirect(redis: RedisServer, db: number, key: string): Promise<string | null> {
  const client = await RawClient.connect(redis.port);
  try {
    client.send('SELECT', db);
    client.send('GET', key);
    const [selected, value] = await client.take(2);
    expect(selected).toBe('OK');
    return value as string | null;
  } finally {
    client.destroy();
  }
}

/** Writes `db-marker` = `db<n>` into each database directly, so any request can tell which database it ran in. */
async function markDatabases(redis: RedisServer, count: number): Promise<void> {
  const client = await RawClient.connect(redis.port);
  try {
    for (let db = 0; db < count; db++) {
      client.send('SELECT', db);
      client.send('SET', 'db-marker', `db${db}`);
    }
    await client.take(count * 2);
  } finally {
    client.destroy();
  }
}

describe('transactions', () => {
  it("keeps another client's plain commands out of an open MULTI", async () => {
    const { port, redis } = await setup();
    const a = await raw(port);
    const b = await raw(port);
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('SET', 'tx:k', 'from-a')).toBe('QUEUED');
    // B is not inside A's transaction: its commands run now.
    expect(await b.call('SET', 'tx:k', 'from-b')).toBe('OK');
    expect(await b.call('GET', 'tx:k')).toBe('from-b');
    expect(await a.call('GET', 'tx:k')).toBe('QUEUED');
    expect(await a.call('EXEC')).toEqual(['OK', 'from-a']);
    expect(await b.call('GET', 'tx:k')).toBe('from-a');
    expect(await getDirect(redis, 0, 'tx:k')).toBe('from-a');
  });

  it('runs MULTI/EXEC from many clients at once, each transaction whole, while other clients pipeline plain commands', async () => {
    const { port, proxy } = await setup();
    const txClients = await Promise.all(Array.from({ length: 10 }, () => connectRedis(cleanup, port, { disableClientInfo: true })));
    const plainClients = await Promise.all(Array.from({ length: 10 }, () => connectRedis(cleanup, port, { disableClientInfo: true })));
    const ROUNDS = 20;
    await Promise.all([
      ...txClients.map(async (client, c) => {
        for (let round = 1; round <= ROUNDS; round++) {
          const replies = await client
            .multi()
            .incr(`tx:${c}:n`)
            .set(`tx:${c}:last`, `r${round}`)
            .get(`tx:${c}:last`)
            .incr('tx:all')
            .exec();
          expect(replies?.slice(0, 3)).toEqual([
            [null, round],
            [null, 'OK'],
            [null, `r${round}`],
          ]);
        }
      }),
      ...plainClients.map(async (client, c) => {
        for (let round = 1; round <= ROUNDS; round++) {
          const pipeline = client.pipeline();
          for (let i = 0; i < 20; i++) pipeline.set(`plain:${c}`, `${round}:${i}`).get(`plain:${c}`);
          const replies = (await pipeline.exec()) ?? [];
          for (let i = 0; i < 20; i++) expect(replies[i * 2 + 1]).toEqual([null, `${round}:${i}`]);
        }
      }),
    ]);
    expect(await plainClients[0].get('tx:all')).toBe(String(10 * ROUNDS));
    // Each EXEC handed its exclusive connection back.
    await waitFor(() => exclusive(proxy).borrowed === 0, 'exclusive connections returned');
  });

  it('returns null from EXEC when another client changed a WATCHed key, and commits when nobody did', async () => {
    const { port, proxy } = await setup();
    const a = await raw(port);
    const b = await raw(port);
    await b.call('SET', 'w:k', 'v0');

    expect(await a.call('WATCH', 'w:k')).toBe('OK');
    expect(await a.call('GET', 'w:k')).toBe('v0');
    expect(await b.call('SET', 'w:k', 'changed-by-b')).toBe('OK');
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('SET', 'w:k', 'from-a')).toBe('QUEUED');
    expect(await a.call('EXEC')).toBeNull();
    expect(await b.call('GET', 'w:k')).toBe('changed-by-b');

    // Untouched this time: the same client's next WATCH…EXEC commits.
    expect(await a.call('WATCH', 'w:k')).toBe('OK');
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('SET', 'w:k', 'from-a')).toBe('QUEUED');
    expect(await a.call('EXEC')).toEqual(['OK']);
    expect(await b.call('GET', 'w:k')).toBe('from-a');
    await waitFor(() => exclusive(proxy).borrowed === 0, 'exclusive connections returned');
  });

  it('does not leak a WATCH to the next client that gets the same exclusive connection', async () => {
    const { port, proxy } = await setup({ exclusive: { max: 1 } });
    const a = await raw(port);
    expect(await a.call('WATCH', 'leak:k')).toBe('OK');
    a.destroy();
    await waitFor(() => exclusive(proxy).borrowed === 0, 'the first client’s connection returned');
    const b = await raw(port);
    const c = await raw(port);
    expect(await b.call('MULTI')).toBe('OK');
    expect(await c.call('SET', 'leak:k', 'changed')).toBe('OK');
    expect(await b.call('SET', 'leak:k', 'from-b')).toBe('QUEUED');
    // A WATCH left on the connection would abort this EXEC.
    expect(await b.call('EXEC')).toEqual(['OK']);
  });

  it('DISCARD drops the queued commands and ends the transaction', async () => {
    const { port, proxy } = await setup();
    const a = await raw(port);
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('SET', 'd:k', 'never')).toBe('QUEUED');
    expect(await a.call('INCR', 'd:n')).toBe('QUEUED');
    expect(await a.call('DISCARD')).toBe('OK');
    expect(await a.call('GET', 'd:k')).toBeNull();
    expect(await a.call('INCR', 'd:n')).toBe(1);
    expect(await a.call('EXEC')).toEqual(new RespError('ERR EXEC without MULTI'));
    await waitFor(() => exclusive(proxy).borrowed === 0, 'exclusive connection returned');
  });
});

describe('blocking commands', () => {
  it('BLPOP from several clients blocks none of the others, and each LPUSH wakes the right one', async () => {
    const { port, proxy } = await setup();
    const blockers = await Promise.all(Array.from({ length: 5 }, () => raw(port)));
    blockers.forEach((client, i) => client.send('BLPOP', `bl:${i}`, '10'));
    // Two more clients block on one shared list: one push wakes exactly one of them.
    const sameList = await Promise.all([raw(port), raw(port)]);
    sameList.forEach((client) => client.send('BLPOP', 'bl:shared', '10'));
    await waitFor(() => exclusive(proxy).borrowed === 7, 'every BLPOP on its own exclusive connection');

    // Plain traffic from another client is answered at once while they block.
    const other = await raw(port);
    const started = performance.now();
    for (let i = 0; i < 200; i++) other.send('SET', `bl:other:${i}`, String(i));
    for (let i = 0; i < 200; i++) other.send('GET', `bl:other:${i}`);
    const replies = await other.take(400, 2000);
    expect(replies.slice(200)).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(blockers.every((b) => b.pending === 0)).toBe(true);

    const pusher = await raw(port);
    for (let i = 4; i >= 0; i--) expect(await pusher.call('LPUSH', `bl:${i}`, `item-${i}`)).toBe(1);
    const woken = await Promise.all(blockers.map((b) => b.reply(2000)));
    expect(woken).toEqual(blockers.map((_, i) => [`bl:${i}`, `item-${i}`]));

    expect(await pusher.call('LPUSH', 'bl:shared', 'one')).toBe(1);
    await waitFor(() => sameList.some((c) => c.pending === 1), 'one BLPOP on bl:shared woken');
    const [first, second] = sameList[0].pending === 1 ? sameList : [sameList[1], sameList[0]];
    expect(await first.reply()).toEqual(['bl:shared', 'one']);
    expect(second.pending).toBe(0);
    expect(await pusher.call('LPUSH', 'bl:shared', 'two')).toBe(1);
    expect(await second.reply(2000)).toEqual(['bl:shared', 'two']);

    // A woken client is back on the shared path; its exclusive connection went back to the pool.
    expect(await blockers[0].call('GET', 'bl:other:7')).toBe('7');
    await waitFor(() => exclusive(proxy).borrowed === 0, 'exclusive connections returned');
  });

  it('BLPOP that times out returns null and the client carries on', async () => {
    const { port } = await setup();
    const a = await raw(port);
    a.send('BLPOP', 'bl:none', '0.2');
    a.send('SET', 'bl:after', 'x');
    expect(await a.take(2, 3000)).toEqual([null, 'OK']);
  });
});

describe('pub/sub', () => {
  it('relays published messages to a subscriber, and plain traffic is fine after it leaves', async () => {
    const { port, proxy } = await setup();
    const subscriber = await connectRedis(cleanup, port, { disableClientInfo: true });
    const publisher = await connectRedis(cleanup, port, { disableClientInfo: true });
    const messages: [string, string][] = [];
    subscriber.on('message', (channel: string, message: string) => messages.push([channel, message]));
    expect(await subscriber.subscribe('news', 'sport')).toBe(2);

    expect(await publisher.publish('news', 'one')).toBe(1);
    expect(await publisher.publish('sport', 'two')).toBe(1);
    expect(await publisher.publish('weather', 'nobody listens')).toBe(0);
    expect(await publisher.publish('news', 'three')).toBe(1);
    await waitFor(() => messages.length === 3, 'three messages relayed');
    expect(messages).toEqual([
      ['news', 'one'],
      ['sport', 'two'],
      ['news', 'three'],
    ]);

    subscriber.disconnect();
    // The subscribed connection is closed, never lent again in subscribe mode.
    await waitFor(() => exclusive(proxy).borrowed === 0, 'the subscriber’s connection released');
    expect(await publisher.publish('news', 'after')).toBe(0);
    const next = await connectRedis(cleanup, port, { disableClientInfo: true });
    expect(await next.set('ps:k', 'v')).toBe('OK');
    expect(await next.get('ps:k')).toBe('v');
    expect(await publisher.get('ps:k')).toBe('v');
  });
});

describe('SELECT', () => {
  it("never changes another client's database: many clients alternating SELECT and SET/GET concurrently", async () => {
    const { port, redis } = await setup({ connections: { min: 2, max: 2 } });
    await markDatabases(redis, 4);
    const CLIENTS = 16;
    const ROUNDS = 15;
    const selecting = await Promise.all(Array.from({ length: CLIENTS }, () => raw(port)));
    const neverSelecting = await Promise.all(Array.from({ length: 4 }, () => raw(port)));
    const lastDb: number[] = new Array<number>(CLIENTS).fill(0);
    await Promise.all([
      ...selecting.map(async (client, c) => {
        for (let round = 0; round < ROUNDS; round++) {
          const db = (c + round) % 4;
          client.send('SELECT', db);
          for (let i = 0; i < 5; i++) {
            client.send('SET', `sel:${c}`, `c${c}r${round}i${i}`);
            client.send('GET', 'db-marker');
            client.send('GET', `sel:${c}`);
          }
          const replies = await client.take(16);
          expect(replies[0]).toBe('OK');
          for (let i = 0; i < 5; i++) {
            expect(replies.slice(1 + i * 3, 4 + i * 3), `client ${c} round ${round}`).toEqual(['OK', `db${db}`, `c${c}r${round}i${i}`]);
          }
          lastDb[c] = db;
        }
      }),
      ...neverSelecting.map(async (client) => {
        for (let round = 0; round < ROUNDS * 5; round++) {
          client.send('GET', 'db-marker');
          client.send('GET', 'db-marker');
          expect(await client.take(2)).toEqual(['db0', 'db0']);
        }
      }),
    ]);
    // Checked on redis-server itself: each client's last write is in the database it last selected.
    for (let c = 0; c < CLIENTS; c++) {
      expect(await getDirect(redis, lastDb[c], `sel:${c}`)).toBe(`c${c}r${ROUNDS - 1}i4`);
    }
  });

  it('gives ioredis clients connecting with different db options each their own database', async () => {
    const { port, redis, proxy } = await setup({ connections: { min: 1, max: 1 } });
    await markDatabases(redis, 4);
    const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => connectRedis(cleanup, port, { db: i % 4 })));
    await Promise.all(
      clients.map(async (client, i) => {
        for (let round = 0; round < 10; round++) {
          const replies = (await client.pipeline().get('db-marker').set(`opt:${i}`, String(round)).get(`opt:${i}`).exec()) ?? [];
          expect(replies).toEqual([
            [null, `db${i % 4}`],
            [null, 'OK'],
            [null, String(round)],
          ]);
        }
      }),
    );
    for (let i = 0; i < clients.length; i++) expect(await getDirect(redis, i % 4, `opt:${i}`)).toBe('9');
    expect(exclusive(proxy).borrowed).toBe(0);
  });

  it('keeps the selected database across MULTI/EXEC and after the transaction', async () => {
    const { port, redis } = await setup();
    await markDatabases(redis, 4);
    const a = await raw(port);
    expect(await a.call('SELECT', '3')).toBe('OK');
    expect(await a.call('MULTI')).toBe('OK');
    expect(await a.call('SET', 'sm:k', 'in-tx')).toBe('QUEUED');
    expect(await a.call('GET', 'db-marker')).toBe('QUEUED');
    expect(await a.call('EXEC')).toEqual(['OK', 'db3']);
    expect(await a.call('GET', 'db-marker')).toBe('db3');
    expect(await getDirect(redis, 3, 'sm:k')).toBe('in-tx');
    expect(await getDirect(redis, 0, 'sm:k')).toBeNull();
    // And the exclusive connection went back in the server's default database.
    const b = await raw(port);
    expect(await b.call('MULTI')).toBe('OK');
    expect(await b.call('GET', 'db-marker')).toBe('QUEUED');
    expect(await b.call('EXEC')).toEqual(['db0']);
  });

  it('keeps the selected database for a blocking command', async () => {
    const { port, redis } = await setup();
    const a = await raw(port);
    expect(await a.call('SELECT', '2')).toBe('OK');
    a.send('BLPOP', 'sb:list', '5');
    await waitFor(async () => (await rawCommand(redis.port, ['CLIENT', 'LIST'])).includes('cmd=blpop'), 'BLPOP blocking on the server');
    const pusher = await RawClient.connect(redis.port);
    pusher.send('SELECT', '2');
    pusher.send('LPUSH', 'sb:list', 'in-db2');
    await pusher.take(2);
    pusher.destroy();
    expect(await a.reply(2000)).toEqual(['sb:list', 'in-db2']);
  });

  it('answers an invalid SELECT with the server’s error and stays in the previous database', async () => {
    const { port, redis } = await setup();
    await markDatabases(redis, 3);
    const a = await raw(port);
    expect(await a.call('SELECT', '99')).toEqual(new RespError('ERR DB index is out of range'));
    expect(await a.call('GET', 'db-marker')).toBe('db0');
    expect(await a.call('SELECT', '2')).toBe('OK');
    expect(await a.call('SELECT', '99')).toEqual(new RespError('ERR DB index is out of range'));
    expect(await a.call('GET', 'db-marker')).toBe('db2');
    expect(await a.call('SELECT', 'abc')).toBeInstanceOf(RespError);
    expect(await a.call('GET', 'db-marker')).toBe('db2');
    expect(await a.call('SELECT', '-1')).toBeInstanceOf(RespError);
    expect(await a.call('GET', 'db-marker')).toBe('db2');
    // Pipelined, with no round trip to learn of the refusal first.
    a.send('SELECT', '1');
    a.send('SELECT', '99');
    a.send('GET', 'db-marker');
    a.send('SELECT', 'abc');
    a.send('GET', 'db-marker');
    const replies = await a.take(5);
    expect(replies[0]).toBe('OK');
    expect(replies[1]).toBeInstanceOf(RespError);
    expect(replies[2]).toBe('db1');
    expect(replies[3]).toBeInstanceOf(RespError);
    expect(replies[4]).toBe('db1');
  });

  // A session adopts SELECT n's database only once the server accepted it, and holds its later
  // requests until then: otherwise another session could move the shared connection to its own
  // database in between, and this session's next request would run there.
  it('runs the request after a refused SELECT in the previous database when another client used the connection in between', async () => {
    // One shared connection, and the server frozen so that both clients' requests are written
    // before the refusal of SELECT 99 comes back.
    const { port, redis, proxy } = await setup({ connections: { min: 1, max: 1 } });
    await markDatabases(redis, 4);
    const a = await raw(port);
    const b = await raw(port);
    expect(await a.call('SELECT', '2')).toBe('OK');
    const inflight = (): number => proxy.stats()[0].servers[0].inflight;

    await redis.freeze();
    cleanup.defer(() => redis.signal('SIGCONT'));
    a.send('SELECT', '99');
    await waitFor(() => inflight() >= 1, 'SELECT 99 written');
    b.send('SELECT', '1');
    b.send('GET', 'db-marker');
    await waitFor(() => inflight() >= 3, "b's requests written");
    a.send('GET', 'db-marker');
    // Held behind the unanswered SELECT, not written.
    await waitFor(() => proxy.stats()[0].waiting.requests >= 1, "a's GET held");
    expect(inflight()).toBe(3);
    redis.signal('SIGCONT');

    const [refused, marker] = await a.take(2);
    expect(refused).toEqual(new RespError('ERR DB index is out of range'));
    expect(await b.take(2)).toEqual(['OK', 'db1']);
    expect(marker).toBe('db2');
  });
});

describe("a client library's connect handshake", () => {
  // ioredis 5.x sends CLIENT SETINFO LIB-NAME / LIB-VER on every connect. Pinning a session for it
  // would give every ioredis client an exclusive server connection for life, and clients beyond
  // exclusive.max would wait queue.timeout twice and get POOL_TIMEOUT for the handshake.
  it('does not pin 50 default ioredis clients to exclusive connections', async () => {
    const { port, proxy } = await setup();
    const clients = await Promise.all(Array.from({ length: 50 }, () => connectRedis(cleanup, port)));
    await Promise.all(clients.map((client, i) => client.set(`hs:${i}`, String(i))));
    expect(await Promise.all(clients.map((client, i) => client.get(`hs:${i}`)))).toEqual(clients.map((_, i) => String(i)));
    const pool = proxy.pools.get('p');
    expect(pool?.counters.failures.reduce((a, b) => a + b, 0)).toBe(0);
    expect(exclusive(proxy).borrowed).toBe(0);
    expect(proxy.stats()[0].servers[0].counters.connectionsOpened).toBeLessThanOrEqual(8);
  });
});

describe('RESP3 sessions', () => {
  it('delivers CLIENT TRACKING invalidation pushes to the tracking client and keeps its replies matched', async () => {
    const { port, proxy } = await setup();
    // A plain socket: the test's RESP2 client would refuse RESP3 frames.
    const tracker = cleanup.add(net.connect({ host: '127.0.0.1', port }), (s) => s.destroy());
    await new Promise((resolve) => tracker.once('connect', resolve));
    const writer = await raw(port);
    let received = '';
    tracker.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const sendRaw = (...args: string[]): void => void tracker.write(encode(...args));

    sendRaw('HELLO', '3');
    await waitFor(() => received.includes('proto'), 'the RESP3 HELLO map');
    sendRaw('CLIENT', 'TRACKING', 'on');
    sendRaw('GET', 'tracked');
    await waitFor(() => received.endsWith('+OK\r\n_\r\n'), 'tracking on, then the null of GET');
    expect(exclusive(proxy).borrowed).toBe(1);

    expect(await writer.call('SET', 'tracked', 'new')).toBe('OK');
    await waitFor(() => received.includes('>2\r\n$10\r\ninvalidate\r\n*1\r\n$7\r\ntracked\r\n'), 'the invalidation push');

    // The push answered no request: the next reply is still GET's own.
    const before = received.length;
    sendRaw('GET', 'tracked');
    await waitFor(() => received.length > before && received.endsWith('\r\n'), "GET's reply");
    expect(received.slice(before)).toBe('$3\r\nnew\r\n');
    expect(proxy.stats()[0].servers[0].counters.connectionsClosed.unexpected_response).toBe(0);
  });
});
