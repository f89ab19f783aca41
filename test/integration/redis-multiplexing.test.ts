/**
 * Many clients pipelining through shared connections: every client gets exactly its own answers,
 * in the order it asked, whether it frames requests like ioredis or tears them at odd bytes.
 */
import type { ChainableCommander } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { encode, RawClient } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { RedisServer } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A small deterministic PRNG (mulberry32), so a failing plan can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SHARED_COUNTERS = ['shared:ctr:0', 'shared:ctr:1', 'shared:ctr:2'];

type Step =
  | { kind: 'exact'; queue: (p: ChainableCommander) => void; expected: unknown; what: string }
  /** INCR of a counter every client increments: the answer is only known to grow. */
  | { kind: 'shared'; queue: (p: ChainableCommander) => void; counter: string };

/** A client's pipeline over its own keys plus the shared counters, with the answers Redis must give. */
function planFor(client: number, steps: number): Step[] {
  const random = prng(client + 1);
  const k = (name: string): string => `c${client}:${name}`;
  let str: string | null = null;
  let counter = 0;
  const list: string[] = [];
  const hash = new Map<string, string>();
  const plan: Step[] = [];
  while (plan.length < steps) {
    const choice = Math.floor(random() * 10);
    const n = plan.length;
    switch (choice) {
      case 0: {
        // SET then GET of the same key in one pipeline: the GET must see this SET's value.
        const value = `v${client}-${n}-${'x'.repeat(Math.floor(random() * 50))}`;
        plan.push({ kind: 'exact', queue: (p) => p.set(k('str'), value), expected: 'OK', what: `SET ${k('str')}` });
        plan.push({ kind: 'exact', queue: (p) => p.get(k('str')), expected: value, what: `GET ${k('str')} after SET` });
        str = value;
        break;
      }
      case 1:
        plan.push({ kind: 'exact', queue: (p) => p.get(k('str')), expected: str, what: `GET ${k('str')}` });
        break;
      case 2:
        counter++;
        plan.push({ kind: 'exact', queue: (p) => p.incr(k('ctr')), expected: counter, what: `INCR ${k('ctr')}` });
        break;
      case 3: {
        const item = `i${n}`;
        list.unshift(item);
        plan.push({ kind: 'exact', queue: (p) => p.lpush(k('list'), item), expected: list.length, what: `LPUSH ${k('list')}` });
        break;
      }
      case 4:
        plan.push({ kind: 'exact', queue: (p) => p.lrange(k('list'), 0, -1), expected: [...list], what: `LRANGE ${k('list')}` });
        break;
      case 5: {
        const field = `f${Math.floor(random() * 5)}`;
        const value = `h${n}`;
        const added = hash.has(field) ? 0 : 1;
        hash.set(field, value);
        plan.push({ kind: 'exact', queue: (p) => p.hset(k('hash'), field, value), expected: added, what: `HSET ${k('hash')} ${field}` });
        break;
      }
      case 6:
        plan.push({ kind: 'exact', queue: (p) => p.hgetall(k('hash')), expected: Object.fromEntries(hash), what: `HGETALL ${k('hash')}` });
        break;
      case 7:
        plan.push({
          kind: 'exact',
          queue: (p) => p.mget(k('str'), k('ctr'), k('missing')),
          expected: [str, counter === 0 ? null : String(counter), null],
          what: `MGET ${k('str')} ${k('ctr')}`,
        });
        break;
      case 8: {
        const existed = str === null ? 0 : 1;
        str = null;
        plan.push({ kind: 'exact', queue: (p) => p.del(k('str')), expected: existed, what: `DEL ${k('str')}` });
        break;
      }
      default: {
        const shared = SHARED_COUNTERS[Math.floor(random() * SHARED_COUNTERS.length)];
        plan.push({ kind: 'shared', queue: (p) => p.incr(shared), counter: shared });
      }
    }
  }
  return plan;
}

describe('shared connections multiplex many pipelining clients', () => {
  it('gives 50 concurrent ioredis clients pipelining 200 mixed commands each exactly their own answers, in order', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = cleanup.add(await startProxy([redis.address], { connections: { min: 2, max: 4 } }), (p) => p.close());
    const port = portOf(proxy);
    // CLIENT SETINFO in ioredis's handshake pins a session (see redis-pinning.test.ts); here the
    // point is the shared path, so the handshake is left out.
    const clients = await Promise.all(Array.from({ length: 50 }, () => connectRedis(cleanup, port, { disableClientInfo: true })));
    const plans = clients.map((_, i) => planFor(i, 200));

    const results = await Promise.all(
      clients.map(async (client, i) => {
        // Two pipelines written back to back: the second must run after the first.
        const plan = plans[i];
        const halves = [plan.slice(0, 100), plan.slice(100)].map((steps) => {
          const pipeline = client.pipeline();
          for (const step of steps) step.queue(pipeline);
          return pipeline.exec();
        });
        const replies = (await Promise.all(halves)).flatMap((r) => r ?? []);
        return replies;
      }),
    );

    const sharedSeen = new Map<string, number[]>(SHARED_COUNTERS.map((c) => [c, []]));
    results.forEach((replies, i) => {
      const plan = plans[i];
      expect(replies).toHaveLength(plan.length);
      const lastShared = new Map<string, number>();
      plan.forEach((step, j) => {
        const [err, value] = replies[j];
        expect(err, `client ${i} step ${j}`).toBeNull();
        if (step.kind === 'exact') {
          expect(value, `client ${i} step ${j}: ${step.what}`).toEqual(step.expected);
        } else {
          const n = value as number;
          expect(n, `client ${i} step ${j}: INCR ${step.counter} goes up`).toBeGreaterThan(lastShared.get(step.counter) ?? 0);
          lastShared.set(step.counter, n);
          sharedSeen.get(step.counter)?.push(n);
        }
      });
    });
    // Every INCR of a shared counter ran exactly once: together the clients saw 1..N, each once.
    for (const [counter, seen] of sharedSeen) {
      const sorted = [...seen].sort((a, b) => a - b);
      expect(sorted, counter).toEqual(sorted.map((_, i) => i + 1));
      expect(await redis.command('GET', counter)).toBe(`$${String(seen.length).length}\r\n${seen.length}\r\n`);
    }

    const [server] = proxy.stats()[0].servers;
    expect(server.exclusive.borrowed).toBe(0);
    // 50 clients, at most connections.max server connections (a connect that timed out on a loaded
    // machine never became one).
    const closed = server.counters.connectionsClosed;
    expect(server.counters.connectionsOpened - closed.connect_failed, JSON.stringify(closed)).toBeLessThanOrEqual(4);
    expect(server.inflight).toBe(0);
  });

  it('frames big pipelined batches written at odd byte boundaries by raw sockets and answers each in order', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = cleanup.add(await startProxy([redis.address], { connections: { min: 2, max: 4 } }), (p) => p.close());
    const port = portOf(proxy);

    const CLIENTS = 16;
    const COMMANDS = 400;
    const sockets = await Promise.all(Array.from({ length: CLIENTS }, () => RawClient.connect(port).then((c) => cleanup.add(c, (r) => r.destroy()))));
    const batches = sockets.map((_, c) => {
      const random = prng(1000 + c);
      const requests: Buffer[] = [];
      const expected: RespValue[] = [];
      let counter = 0;
      let appended = '';
      for (let i = 0; requests.length < COMMANDS; i++) {
        const key = `raw${c}`;
        switch (i % 5) {
          case 0: {
            // Values that look like RESP framing, multi-byte UTF-8, and now and then a big one
            // that spans many reads.
            const big = random() < 0.05;
            const value = big ? `${c}:${i}:${'y'.repeat(100_000)}` : `${c}:${i}\r\n$3\r\n*1\r\nété-${'z'.repeat(Math.floor(random() * 300))}`;
            requests.push(encode('SET', `${key}:s`, value), encode('GET', `${key}:s`));
            expected.push('OK', value);
            break;
          }
          case 1:
            counter++;
            requests.push(encode('INCR', `${key}:n`));
            expected.push(counter);
            break;
          case 2: {
            const piece = `<${i}>`;
            appended += piece;
            requests.push(encode('APPEND', `${key}:a`, piece));
            expected.push(Buffer.byteLength(appended));
            break;
          }
          case 3:
            requests.push(encode('GET', `${key}:a`));
            expected.push(appended);
            break;
          default:
            requests.push(encode('PING'));
            expected.push('PONG');
        }
      }
      return { bytes: Buffer.concat(requests), expected };
    });

    // Odd cut sizes, 1-byte cuts included, so frames split inside length lines, CRLFs and payloads.
    const CUTS = [1, 2, 3, 5, 7, 11, 13, 17, 31, 61, 127, 1021, 4093];
    await Promise.all(
      sockets.map(async (socket, c) => {
        const { bytes } = batches[c];
        let at = 0;
        for (let n = c; at < bytes.length; n++) {
          const size = CUTS[n % CUTS.length];
          socket.write(bytes.subarray(at, at + size));
          at += size;
          // Let the bytes leave as their own segment now and then.
          if (n % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      }),
    );
    const replies = await Promise.all(sockets.map((socket, c) => socket.take(batches[c].expected.length, 20_000)));
    replies.forEach((got, c) => {
      got.forEach((value, i) => expect(value, `client ${c} reply ${i}`).toEqual(batches[c].expected[i]));
    });
    expect(sockets.every((s) => !s.isClosed)).toBe(true);
    const pool = proxy.stats()[0];
    expect(pool.servers[0].exclusive.borrowed).toBe(0);
    expect(proxy.pools.get('p')?.counters.protocolErrors).toBe(0);
  });

  it("runs one session's requests in the order sent: SET k v then GET k always sees v, INCR only goes up", async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    // Several shared connections, so a session that did not stick to one could be overtaken.
    const proxy = cleanup.add(await startProxy([redis.address], { connections: { min: 4, max: 4 } }), (p) => p.close());
    const port = portOf(proxy);
    const clients = await Promise.all(Array.from({ length: 8 }, () => connectRedis(cleanup, port, { disableClientInfo: true })));
    // Keep every shared connection busy with other clients' traffic while the checks run.
    await Promise.all(
      clients.map(async (client, c) => {
        for (let round = 0; round < 20; round++) {
          const pipeline = client.pipeline();
          for (let i = 0; i < 25; i++) {
            pipeline.set('same-key-for-everyone', `c${c}r${round}i${i}`);
            pipeline.set(`order:${c}`, `r${round}i${i}`);
            pipeline.get(`order:${c}`);
            pipeline.incr(`order:${c}:n`);
          }
          const replies = (await pipeline.exec()) ?? [];
          for (let i = 0; i < 25; i++) {
            expect(replies[i * 4 + 2]).toEqual([null, `r${round}i${i}`]);
            expect(replies[i * 4 + 3]).toEqual([null, round * 25 + i + 1]);
          }
        }
      }),
    );
  });
});
