/**
 * Large replies streamed through as they arrive, against a real redis-server: a client reading a
 * 100 MB value gets it exact and in order with what it pipelined behind it, other clients on the
 * same shared connection keep their answers in order, and a connection that dies mid-reply resets
 * the one client whose reply it tore (never half a reply followed by an error text).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { hashFunction, hashKey } from '../../src/router/hash.js';
import { KetamaContinuum } from '../../src/router/ketama.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { encode, RawClient } from '../helpers/resp-client.js';
import { RedisServer, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const MB = 1024 * 1024;
const SIZE = 100 * MB;

/** One shared connection: every client's requests are pipelined on it, behind the large reply. */
async function setup(): Promise<{ redis: RedisServer; proxy: Proxy; port: number }> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const proxy = cleanup.add(await startProxy([redis.address], { connections: { min: 1, max: 1 }, request_timeout: '30s' }), (p) => p.close());
  await waitReady(proxy);
  return { redis, proxy, port: portOf(proxy) };
}

async function raw(port: number): Promise<RawClient> {
  return cleanup.add(await RawClient.connect(port), (c) => c.destroy());
}

/** Makes `key` a `size`-byte string on the server itself (zeros, then 'x'), without sending it. */
async function bigValue(redis: RedisServer, key: string, size: number): Promise<void> {
  const server = cleanup.add(await RawClient.connect(redis.port), (c) => c.destroy());
  expect(await server.call('SETRANGE', key, size - 1, 'x')).toBe(size);
}

/** The reply to GET of a bigValue, as pieces a checker can compare without building it. */
function bigReply(size: number): Piece[] {
  return [Buffer.from(`$${size}\r\n`), { zeros: size - 1 }, Buffer.from('x\r\n')];
}

type Piece = Buffer | { zeros: number };

/**
 * A client that sends `request` and checks every byte it receives against `expected` as it
 * arrives, keeping nothing but its position: a test client that buffered 100 MB would be slow and
 * would measure itself.
 */
class StreamChecker {
  readonly socket: net.Socket;
  received = 0;
  mismatch: string | null = null;
  closed = false;
  readonly #expected: Piece[];
  readonly total: number;
  #piece = 0;
  #offset = 0;

  constructor(port: number, request: Buffer, expected: Piece[]) {
    this.#expected = expected;
    this.total = expected.reduce((n, p) => n + (Buffer.isBuffer(p) ? p.length : p.zeros), 0);
    this.socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    cleanup.defer(() => this.socket.destroy());
    this.socket.on('connect', () => this.socket.write(request));
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
    });
    this.socket.on('data', (chunk: Buffer) => this.#check(chunk));
  }

  get complete(): boolean {
    return this.received === this.total;
  }

  /** Waits until every expected byte arrived (or the stream went wrong), then checks it whole. */
  async readAll(what: string, timeoutMs: number): Promise<void> {
    await waitFor(() => this.complete || this.closed || this.mismatch !== null, what, timeoutMs);
    expect(this.mismatch).toBeNull();
    expect(this.complete).toBe(true);
  }

  #check(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && this.mismatch === null) {
      const piece = this.#expected[this.#piece];
      if (piece === undefined) {
        this.mismatch = `${chunk.length - i} bytes after the expected ${this.total}: ${JSON.stringify(chunk.toString('latin1', i, i + 40))}`;
        break;
      }
      const length = Buffer.isBuffer(piece) ? piece.length : piece.zeros;
      const take = Math.min(length - this.#offset, chunk.length - i);
      for (let k = 0; k < take; k++) {
        const want = Buffer.isBuffer(piece) ? piece[this.#offset + k] : 0;
        if (chunk[i + k] !== want) {
          this.mismatch = `byte ${this.received + k} is ${chunk[i + k]}, expected ${want}: ${JSON.stringify(chunk.toString('latin1', i + k, i + k + 40))}`;
          break;
        }
      }
      i += take;
      this.received += take;
      this.#offset += take;
      if (this.#offset === length) {
        this.#piece++;
        this.#offset = 0;
      }
    }
  }
}

describe('large replies streamed through', () => {
  it('streams a 100 MB value to one client while another client on the same shared connection gets its answers in order', async () => {
    const { redis, proxy, port } = await setup();
    await bigValue(redis, 'big', SIZE);
    const other = await raw(port);
    expect(await other.call('SET', 'small', 'v')).toBe('OK');

    const reader = new StreamChecker(port, encode('GET', 'big'), bigReply(SIZE));
    await waitFor(() => reader.received > 0 || reader.closed, 'the large reply to start');
    for (let i = 0; i < 20; i++) {
      other.send('INCR', 'n');
      other.send('GET', 'small');
    }
    const replies = await other.take(40, 30_000);
    expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => [i + 1, 'v']).flat());
    await reader.readAll('the large reply read', 60_000);
    expect(proxy.pools.get('p')?.counters.repliesTorn).toBe(0);
  }, 90_000);

  it('answers pipelined GETs of a 100 MB value, a 40 MB value and small ones from one client in order', async () => {
    const { redis, proxy, port } = await setup();
    await bigValue(redis, 'big', SIZE);
    await bigValue(redis, 'mid', 40 * MB);
    const setter = await raw(port);
    expect(await setter.call('SET', 'small', 'abc')).toBe('OK');
    const small = Buffer.from('$3\r\nabc\r\n');
    // The 40 MB reply may queue behind the 100 MB one in transit: under output_buffer.hard (64mb).
    const request = Buffer.concat([encode('GET', 'small'), encode('GET', 'big'), encode('GET', 'small'), encode('GET', 'mid'), encode('GET', 'small')]);
    const reader = new StreamChecker(port, request, [small, ...bigReply(SIZE), small, ...bigReply(40 * MB), small]);
    await reader.readAll('the pipelined replies read', 60_000);
    expect(proxy.pools.get('p')?.counters.clientsOverflowed).toBe(0);
  }, 90_000);

  it('resets the client whose 100 MB reply was streaming when CLIENT KILL closed its connection, with no error text after the torn reply, while other clients carry on', async () => {
    const { redis, proxy, port } = await setup();
    await bigValue(redis, 'big', SIZE);
    const other = await raw(port);
    expect(await other.call('SET', 'small', 'v')).toBe('OK');
    const admin = cleanup.add(await RawClient.connect(redis.port), (c) => c.destroy());

    const reader = new StreamChecker(port, encode('GET', 'big'), bigReply(SIZE));
    await waitFor(() => reader.received > 0 || reader.closed, 'the large reply to start');
    // Every normal client but this one: poolside's shared connection, mid-reply.
    expect(await admin.call('CLIENT', 'KILL', 'TYPE', 'normal')).toBeGreaterThanOrEqual(1);

    await waitFor(() => reader.closed, 'the torn client reset', 10_000);
    // Whatever it got was a prefix of the value: no error text was appended to half a reply.
    expect(reader.mismatch).toBeNull();
    expect(reader.complete).toBe(false);
    expect(proxy.pools.get('p')?.counters.repliesTorn).toBe(1);
    // The other client carries on, on the refilled connection.
    await waitFor(async () => (await other.call('GET', 'small')) === 'v', 'the other client answered again', 10_000);
    expect(other.isClosed).toBe(false);
  }, 90_000);

  it('holds a large reply that arrives before an earlier reply from another server, then writes both in order', async () => {
    const slow = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const fast = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = cleanup.add(await startProxy([slow.address, fast.address], { routing: 'ketama', ketama: { hash: 'md5' }, heartbeat: false, request_timeout: '30s' }), (p) => p.close());
    await waitReady(proxy);
    await waitFor(() => proxy.stats()[0].servers.every((server) => server.connections.idle > 0), 'both servers connected');
    const port = portOf(proxy);
    // A key for each server, as twemproxy's continuum (the pool's router) places them. md5: with
    // fnv1a_64 two loopback servers on nearby ports can get every one of these keys on one server.
    const continuum = new KetamaContinuum([slow, fast].map((s) => ({ name: s.address, weight: 1 })));
    const keys = Array.from({ length: 256 }, (_, i) => `key:${i}`);
    const serverOf = (key: string): number => continuum.serverFor(hashKey(hashFunction('md5'), Buffer.from(key), 0, key.length, ''));
    const slowKey = keys.find((k) => serverOf(k) === 0);
    const fastKey = keys.find((k) => serverOf(k) === 1);
    if (slowKey === undefined || fastKey === undefined) throw new Error('no key for one of the servers');
    const setter = await raw(port);
    expect(await setter.call('SET', slowKey, slowKey)).toBe('OK');
    const size = 20 * MB;
    await bigValue(fast, fastKey, size);

    await slow.freeze();
    cleanup.defer(() => slow.signal('SIGCONT'));
    const reader = new StreamChecker(port, Buffer.concat([encode('GET', slowKey), encode('GET', fastKey)]), [
      Buffer.from(`$${slowKey.length}\r\n${slowKey}\r\n`),
      ...bigReply(size),
    ]);
    // The large reply is all in poolside (its request no longer in flight), its turn not yet come.
    await waitFor(() => proxy.stats()[0].servers[1].inflight === 0 && proxy.stats()[0].servers[0].inflight > 0, 'the large reply read by poolside', 30_000);
    expect(reader.received).toBe(0);
    slow.signal('SIGCONT');
    await reader.readAll('both replies read', 60_000);
  }, 90_000);
  it('gathers a large reply that began behind another whole, even when it reaches the head mid-transfer, and writes both in order', async () => {
    // The second server is scripted: it sends the first half of a 4 MB reply, then waits for the
    // test before the rest (a real server cannot stop half-way on demand). The first is a real
    // redis-server, frozen until the large reply is half in.
    const size = 4 * MB;
    let sendRest: (() => void) | null = null;
    const half = Buffer.concat([Buffer.from(`$${size}\r\n`), Buffer.alloc(size / 2)]);
    const rest = Buffer.concat([Buffer.alloc(size / 2 - 1), Buffer.from('x\r\n')]);
    const fake = net.createServer((socket) => {
      socket.on('error', () => {});
      let pending = '';
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString('latin1');
        for (;;) {
          if (pending.startsWith('*1\r\n$4\r\nPING\r\n')) {
            pending = pending.slice(14);
            socket.write('+PONG\r\n');
          } else if (pending.startsWith('*2\r\n$3\r\nGET\r\n')) {
            const end = pending.indexOf('\r\n', pending.indexOf('\r\n', 13) + 2);
            if (end < 0) return;
            pending = pending.slice(end + 2);
            socket.write(half);
            sendRest = () => socket.write(rest);
          } else {
            return;
          }
        }
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    cleanup.defer(() => new Promise((resolve) => fake.close(resolve)));
    const fakeAddress = `127.0.0.1:${(fake.address() as net.AddressInfo).port}`;
    const slow = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const proxy = cleanup.add(await startProxy([slow.address, fakeAddress], { routing: 'ketama', ketama: { hash: 'md5' }, heartbeat: false, request_timeout: '30s' }), (p) => p.close());
    await waitFor(() => proxy.stats()[0].servers.every((server) => server.connections.idle > 0), 'both servers connected');
    const port = portOf(proxy);
    const continuum = new KetamaContinuum([slow.address, fakeAddress].map((name) => ({ name, weight: 1 })));
    const keys = Array.from({ length: 256 }, (_, i) => `key:${i}`);
    const serverOf = (key: string): number => continuum.serverFor(hashKey(hashFunction('md5'), Buffer.from(key), 0, key.length, ''));
    const slowKey = keys.find((k) => serverOf(k) === 0);
    const fastKey = keys.find((k) => serverOf(k) === 1);
    if (slowKey === undefined || fastKey === undefined) throw new Error('no key for one of the servers');
    const setter = await raw(port);
    expect(await setter.call('SET', slowKey, slowKey)).toBe('OK');

    await slow.freeze();
    cleanup.defer(() => slow.signal('SIGCONT'));
    const reader = new StreamChecker(port, Buffer.concat([encode('GET', slowKey), encode('GET', fastKey)]), [
      Buffer.from(`$${slowKey.length}\r\n${slowKey}\r\n`),
      ...bigReply(size),
    ]);
    await waitFor(() => sendRest !== null, 'the first half of the large reply sent');
    // Let poolside read that half while the slow reply is still owed, then let the slow one go.
    await new Promise((resolve) => setImmediate(resolve));
    slow.signal('SIGCONT');
    await waitFor(() => reader.received > 0, 'the slow reply written');
    (sendRest as (() => void) | null)?.();
    await reader.readAll('both replies read', 30_000);
  }, 90_000);
});
