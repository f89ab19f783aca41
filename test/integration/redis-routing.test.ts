/**
 * Routing across several real redis-servers: failover (ordered, with detection and recovery) and
 * ketama (keys placed exactly where twemproxy places them).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { encode, poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { RedisServer, waitFor } from '../helpers/servers.js';
import { loadGolden } from '../helpers/ketama-golden.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function startServers(n: number): Promise<RedisServer[]> {
  return Promise.all(Array.from({ length: n }, async () => cleanup.add(await RedisServer.start(), (s) => s.stop())));
}

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

/** Sends the commands pipelined on a fresh connection straight to a redis-server. */
async function direct(redis: RedisServer, commands: (string | Buffer | number)[][]): Promise<RespValue[]> {
  const client = await RawClient.connect(redis.port);
  try {
    for (const command of commands) client.send(...command);
    return await client.take(commands.length);
  } finally {
    client.destroy();
  }
}

/** Asserts the reply is poolside's own native error, and returns its reason. */
function expectPoolsideError(value: RespValue): string {
  expect(value).toBeInstanceOf(RespError);
  const reason = poolsideReason(value);
  expect(reason, `a -ERR poolside <REASON> error, got ${String(value)}`).not.toBeNull();
  return reason as string;
}

describe('failover routing', () => {
  const QUEUE_TIMEOUT_MS = 300;
  const failoverPool = (servers: RedisServer[]): Record<string, unknown> => ({
    routing: 'failover',
    connections: { min: 2, max: 4 },
    queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
    connect: { timeout: '200ms', backoff: { initial: '50ms', max: '200ms' } },
    eject: { after_failures: 2, for: '500ms' },
    request_timeout: '1s',
    heartbeat: { interval: '500ms', timeout: '200ms' },
    servers: servers.map((s) => s.address),
  });

  it('sends traffic to the second server within a short detection period after the first dies, and back once it returns', async () => {
    const [first, second] = await startServers(2);
    const proxy = cleanup.add(await startProxy([], failoverPool([first, second])), (p) => p.close());
    const client = await raw(portOf(proxy));

    // Keys go to the first server only.
    for (let i = 0; i < 20; i++) client.send('SET', `fo:${i}`, `v${i}`);
    expect(await client.take(20)).toEqual(new Array(20).fill('OK'));
    expect(await direct(first, [['DBSIZE']])).toEqual([20]);
    expect(await direct(second, [['DBSIZE']])).toEqual([0]);

    await first.kill();
    const killedAt = performance.now();
    const errors: string[] = [];
    // Every request is answered (never a hang beyond queue.timeout + margin) until one is served by the second server.
    const detection = await waitFor(
      async () => {
        const started = performance.now();
        client.send('SET', 'fo:after-kill', 'on-second');
        const reply = await client.reply(QUEUE_TIMEOUT_MS + 700);
        expect(performance.now() - started).toBeLessThan(QUEUE_TIMEOUT_MS + 700);
        if (reply === 'OK') return true;
        errors.push(expectPoolsideError(reply));
        return false;
      },
      'a request served by the second server',
      3000,
      20,
    );
    expect(detection).toBeLessThan(2000);
    expect(await direct(second, [['GET', 'fo:after-kill']])).toEqual(['on-second']);
    expect(client.isClosed).toBe(false);
    for (const reason of errors) expect(['SERVER_ERROR', 'NO_HEALTHY_SERVER', 'POOL_TIMEOUT']).toContain(reason);
    // Plain traffic keeps flowing to the second server while the first is down.
    for (let i = 0; i < 50; i++) client.send('INCR', 'fo:n');
    expect(await client.take(50)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));

    await first.restart();
    // Back on the first server once its connections are re-established (ejection expiry + probe).
    await waitFor(
      async () => {
        client.send('SET', 'fo:after-restart', String(performance.now() - killedAt));
        const reply = await client.reply(QUEUE_TIMEOUT_MS + 700);
        if (reply !== 'OK') expectPoolsideError(reply);
        const [onFirst] = await direct(first, [['EXISTS', 'fo:after-restart']]);
        return onFirst === 1;
      },
      'traffic back on the restarted first server',
      5000,
      50,
    );
    await waitFor(() => proxy.stats()[0].servers[0].health.kind === 'up', 'first server up');
    expect(proxy.stats()[0].servers[0].connections.idle + proxy.stats()[0].servers[0].connections.active).toBeGreaterThanOrEqual(1);
  });

  it('answers clients with pipelines in flight when the first server dies: each request gets a reply or a native error, never a hang', async () => {
    const [first, second] = await startServers(2);
    const proxy = cleanup.add(await startProxy([], failoverPool([first, second])), (p) => p.close());
    const clients = await Promise.all(Array.from({ length: 5 }, () => raw(portOf(proxy))));
    let stop = false;
    const outcomes = { ok: 0, errors: new Map<string, number>() };
    const load = clients.map(async (client, c) => {
      while (!stop) {
        for (let i = 0; i < 20; i++) client.send('SET', `load:${c}:${i}`, 'x');
        const replies = await client.take(20, QUEUE_TIMEOUT_MS + 1500);
        for (const reply of replies) {
          if (reply === 'OK') outcomes.ok++;
          else {
            const reason = expectPoolsideError(reply);
            outcomes.errors.set(reason, (outcomes.errors.get(reason) ?? 0) + 1);
          }
        }
      }
    });
    await waitFor(() => outcomes.ok > 200, 'load running');
    await first.kill();
    const okBefore = outcomes.ok;
    await waitFor(async () => ((await direct(second, [['DBSIZE']]))[0] as number) > 0, 'load reaching the second server', 3000);
    await waitFor(() => outcomes.ok > okBefore + 200, 'load continuing on the second server', 3000);
    stop = true;
    await Promise.all(load);
    expect(clients.every((c) => !c.isClosed)).toBe(true);
  });
});

const golden = loadGolden();

describe('ketama routing', () => {
  const ketamaPool = (servers: RedisServer[], ketama: Record<string, unknown> = {}): Record<string, unknown> => ({
    routing: 'ketama',
    connections: { min: 1, max: 2 },
    ketama,
    servers: servers.map((s) => s.address),
  });

  /** The server index twemproxy's continuum gives a key, for servers named by their address. */
  function expectedServer(servers: RedisServer[], key: string, tag = ''): number {
    const continuum = new KetamaContinuum(servers.map((s) => ({ name: `127.0.0.1:${s.port}`, weight: 1 })));
    const bytes = Buffer.from(key);
    return continuum.serverFor(hashKey(hashFunction('fnv1a_64'), bytes, 0, bytes.length, tag));
  }

  it('writes each key to the server the ketama continuum predicts', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const keys = Array.from({ length: 300 }, (_, i) => `user:${i}:profile`);
    for (const key of keys) client.send('SET', key, key);
    expect(await client.take(keys.length)).toEqual(new Array(keys.length).fill('OK'));
    for (const key of keys) client.send('GET', key);
    expect(await client.take(keys.length)).toEqual(keys);

    const expected = keys.map((key) => expectedServer(servers, key));
    for (let s = 0; s < servers.length; s++) {
      const mine = keys.filter((_, i) => expected[i] === s);
      expect(mine.length, `server ${s} owns some keys`).toBeGreaterThan(30);
      const [size, ...exists] = await direct(servers[s], [['DBSIZE'], ...mine.map((key) => ['EXISTS', key])]);
      expect(size).toBe(mine.length);
      expect(exists).toEqual(new Array(mine.length).fill(1));
    }
  });

  // Golden pools whose servers are all named: their placement does not depend on the ports the
  // test servers happen to get, so twemproxy's recorded answers apply as they are.
  const namedPools = golden.pools.filter((pool) => !pool.autoEject && pool.servers.every((s) => s.live && s.name !== null));
  it.each(namedPools.map((pool) => [pool.name, pool] as const))('places keys exactly where twemproxy 0.5.0 does (golden pool %s)', async (_name, pool) => {
    const servers = await startServers(pool.servers.length);
    const proxy = cleanup.add(
      await startProxy([], {
        routing: 'ketama',
        connections: { min: 1, max: 1 },
        ketama: { hash: pool.hash, hash_tag: pool.hashTag ?? '' },
        servers: servers.map((s, i) => ({ address: s.address, name: pool.servers[i].name, weight: pool.servers[i].weight })),
      }),
      (p) => p.close(),
    );
    const client = await raw(portOf(proxy));
    const keys: [Buffer, number][] = [
      ...pool.keys.map(([key, server]): [Buffer, number] => [Buffer.from(key, 'utf8'), server]),
      ...pool.binaryKeys.map(([hex, server]): [Buffer, number] => [Buffer.from(hex, 'hex'), server]),
    ];
    for (const [key] of keys) client.send('SET', key, '1');
    expect(await client.take(keys.length)).toEqual(new Array(keys.length).fill('OK'));
    const unique = new Set(keys.map(([key]) => key.toString('hex'))).size;
    let total = 0;
    for (let s = 0; s < servers.length; s++) {
      const mine = keys.filter(([, server]) => server === s);
      const [size, ...exists] = await direct(servers[s], [['DBSIZE'], ...mine.map(([key]) => ['EXISTS', key])]);
      expect(exists, `keys twemproxy puts on ${pool.servers[s].name}`).toEqual(new Array(mine.length).fill(1));
      total += size as number;
    }
    // And nowhere else.
    expect(total).toBe(unique);
  });

  it('refuses store and other unsplittable commands over keys on different servers with CROSS_SERVER and keeps the client', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    // fnv1a clusters similar short keys on one arc: draw from varied names to find both kinds.
    const keys = Array.from({ length: 200 }, (_, i) => `user:${i}:profile`);
    const owner = new Map(keys.map((key) => [key, expectedServer(servers, key)]));
    const a = keys[0];
    const sameAsA = keys.find((key) => key !== a && owner.get(key) === owner.get(a));
    const elsewhere = keys.find((key) => owner.get(key) !== owner.get(a));
    if (sameAsA === undefined || elsewhere === undefined) throw new Error('the sample keys do not cover two servers');
    client.send('SET', a, 'A');
    client.send('SET', sameAsA, 'B');
    client.send('SET', elsewhere, 'C');
    expect(await client.take(3)).toEqual(['OK', 'OK', 'OK']);

    // MGET, DEL, MSET… are split per server instead (redis-fanout.test.ts).
    expect(expectPoolsideError(await client.call('SUNIONSTORE', a, sameAsA, elsewhere))).toBe('CROSS_SERVER');
    // A store command's sources count as keys too: a source on another server would read as empty.
    expect(expectPoolsideError(await client.call('ZUNIONSTORE', a, '2', sameAsA, elsewhere))).toBe('CROSS_SERVER');
    expect(expectPoolsideError(await client.call('MSETNX', a, '1', elsewhere, '2'))).toBe('CROSS_SERVER');
    expect(expectPoolsideError(await client.call('BITOP', 'OR', a, elsewhere))).toBe('CROSS_SERVER');
    // Nothing was deleted or written, and keys on one server still work together.
    expect(await client.call('MGET', a, sameAsA)).toEqual(['A', 'B']);
    expect(await client.call('GET', elsewhere)).toBe('C');
    expect(await client.call('DEL', a, sameAsA)).toBe(2);
    expect(client.isClosed).toBe(false);
  });

  it('routes keys sharing a {hash tag} to one server so multi-key commands work on them', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers, { hash_tag: '{}' })), (p) => p.close());
    const client = await raw(portOf(proxy));
    // With the tag these all hash as "user1". Two more are picked that, untagged, would live on
    // other servers than {user1}:a, so the test shows the tag at work.
    const untaggedA = expectedServer(servers, '{user1}:a');
    // (fnv1a barely moves a hash for a change in the last bytes: vary the front of the key.)
    const candidates = Array.from({ length: 200 }, (_, i) => `f${i}:{user1}:name`);
    const spread = candidates.filter((key) => expectedServer(servers, key) !== untaggedA).slice(0, 2);
    expect(spread).toHaveLength(2);
    const keys = ['{user1}:a', '{user1}:b', ...spread, 'x{user1}y'];
    const tagged = expectedServer(servers, '{user1}:a', '{}');
    for (const key of keys) expect(expectedServer(servers, key, '{}')).toBe(tagged);

    expect(await client.call('MSET', ...keys.flatMap((key) => [key, key.toUpperCase()]))).toBe('OK');
    expect(await client.call('MGET', ...keys)).toEqual(keys.map((key) => key.toUpperCase()));
    const [size] = await direct(servers[tagged], [['DBSIZE']]);
    expect(size).toBe(keys.length);
    expect(await client.call('DEL', '{user1}:a', '{user1}:b')).toBe(2);
    expect(await client.call('EXISTS', ...keys)).toBe(keys.length - 2);
  });

  it('refuses keyless commands like KEYS with UNSUPPORTED_COMMAND while PING and ECHO work', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    // (DBSIZE is broadcast and summed instead: redis-fanout.test.ts.)
    for (const command of [['KEYS', '*'], ['LASTSAVE'], ['RANDOMKEY'], ['SCAN', '0'], ['INFO']]) {
      const reply = await client.call(...command);
      expect(expectPoolsideError(reply), command.join(' ')).toBe('UNSUPPORTED_COMMAND');
    }
    expect(await client.call('PING')).toBe('PONG');
    expect(await client.call('ECHO', 'hello')).toBe('hello');
    // COMMAND's subcommands describe the server's vocabulary, the same on every shard.
    expect(typeof (await client.call('COMMAND', 'COUNT'))).toBe('number');
    expect(Array.isArray(await client.call('COMMAND', 'INFO', 'GET'))).toBe(true);
    expect(await client.call('SET', 'still', 'here')).toBe('OK');
    expect(client.isClosed).toBe(false);
  });

  it('refuses MULTI in a ketama pool and runs none of the commands queued after it until EXEC', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    expect(expectPoolsideError(await client.call('MULTI'))).toBe('UNSUPPORTED_COMMAND');
    // The client believes it is in a transaction: running these now would break its atomicity.
    expectPoolsideError(await client.call('SET', 'tx:a', '1'));
    expectPoolsideError(await client.call('INCR', 'tx:n'));
    expectPoolsideError(await client.call('EXEC'));
    for (const server of servers) expect(await direct(server, [['DBSIZE']])).toEqual([0]);
    expect(await client.call('SET', 'tx:a', '2')).toBe('OK');
    expect(await client.call('GET', 'tx:a')).toBe('2');
  });

  it('keeps replies in order when a pipeline mixes keys of every server with refused commands', async () => {
    const servers = await startServers(3);
    const proxy = cleanup.add(await startProxy([], ketamaPool(servers)), (p) => p.close());
    const client = await raw(portOf(proxy));
    const expected: ((value: RespValue) => void)[] = [];
    const batches: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `mix:${i}`;
      batches.push(encode('SET', key, String(i)), encode('GET', key));
      expected.push((v) => expect(v).toBe('OK'), (v) => expect(v).toBe(String(i)));
      if (i % 25 === 0) {
        batches.push(encode('KEYS', '*'));
        expected.push((v) => expect(poolsideReason(v)).toBe('UNSUPPORTED_COMMAND'));
      }
    }
    client.write(Buffer.concat(batches));
    const replies = await client.take(expected.length);
    replies.forEach((value, i) => expected[i](value));
  });
});

describe('ketama routing when a server is ejected', () => {
  const ejectingPool = (servers: RedisServer[], onEjection: 'fail' | 'rehash'): Record<string, unknown> => ({
    routing: 'ketama',
    ketama: { on_ejection: onEjection },
    connections: { min: 1, max: 2 },
    queue: { timeout: '300ms' },
    connect: { timeout: '200ms', backoff: { initial: '50ms', max: '100ms' } },
    eject: { after_failures: 2, for: '30s' },
    heartbeat: { interval: '200ms', timeout: '100ms' },
    servers: servers.map((s) => s.address),
  });

  /** Where the continuum over `live` (indexes into `servers`) puts a key, as an index into `servers`. */
  function ownerAmong(servers: RedisServer[], live: number[], key: string): number {
    const continuum = new KetamaContinuum(live.map((i) => ({ name: `127.0.0.1:${servers[i].port}`, weight: 1 })));
    const bytes = Buffer.from(key);
    return live[continuum.serverFor(hashKey(hashFunction('fnv1a_64'), bytes, 0, bytes.length, ''))];
  }

  async function ejectFirst(servers: RedisServer[], onEjection: 'fail' | 'rehash'): Promise<{ client: RawClient; keys: string[] }> {
    const proxy = cleanup.add(await startProxy([], ejectingPool(servers, onEjection)), (p) => p.close());
    await waitFor(() => proxy.stats()[0].servers.every((s) => s.connections.idle >= 1), 'every server connected');
    const client = await raw(portOf(proxy));
    await servers[0].kill();
    await waitFor(() => proxy.stats()[0].servers[0].health.kind === 'ejected', 'the killed server ejected', 5000);
    const keys = Array.from({ length: 200 }, (_, i) => `${i}:eject`);
    return { client, keys };
  }

  it('fails the keys of an ejected server at once with on_ejection: fail, and never moves them', async () => {
    const servers = await startServers(3);
    const { client, keys } = await ejectFirst(servers, 'fail');
    const owners = keys.map((key) => ownerAmong(servers, [0, 1, 2], key));
    expect(owners.filter((o) => o === 0).length).toBeGreaterThan(20);
    for (const key of keys) client.send('SET', key, 'v');
    const started = performance.now();
    const replies = await client.take(keys.length);
    expect(performance.now() - started).toBeLessThan(250); // no waiting for queue.timeout
    replies.forEach((reply, i) => {
      if (owners[i] === 0) expect(expectPoolsideError(reply), keys[i]).toBe('NO_HEALTHY_SERVER');
      else expect(reply, keys[i]).toBe('OK');
    });
    // The other servers hold exactly their own keys: nothing of the ejected server moved to them.
    for (const s of [1, 2]) expect(await direct(servers[s], [['DBSIZE']])).toEqual([owners.filter((o) => o === s).length]);
  });

  it('moves the keys of an ejected server to the continuum of the remaining servers with on_ejection: rehash', async () => {
    const servers = await startServers(3);
    const { client, keys } = await ejectFirst(servers, 'rehash');
    for (const key of keys) client.send('SET', key, key);
    expect(await client.take(keys.length)).toEqual(new Array(keys.length).fill('OK'));
    const owners = keys.map((key) => ownerAmong(servers, [1, 2], key));
    for (const s of [1, 2]) {
      const mine = keys.filter((_, i) => owners[i] === s);
      const [size, ...exists] = await direct(servers[s], [['DBSIZE'], ...mine.map((key) => ['EXISTS', key])]);
      expect(size).toBe(mine.length);
      expect(exists).toEqual(new Array(mine.length).fill(1));
    }
  });
});
