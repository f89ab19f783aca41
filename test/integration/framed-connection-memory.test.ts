/**
 * A framed connection that matches replies by id holds memory for the requests in flight, not for
 * every request answered since the oldest one still unanswered: a request the server never
 * answers (a one-way call, a dropped frame) with request_timeout: 0 must not make the connection
 * keep each later request's record for its whole life.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { DubboServer, request } from '../helpers/dubbo-server.js';
import { Connection } from '../../src/pool/connection.js';
import type { ConnectionOwner } from '../../src/pool/connection.js';
import { framedCodecFor } from '../../src/codec/framed/codec.js';
import type { FramedConfig, HeartbeatConfig } from '../../src/config/schema.js';
import { systemClock } from '../../src/util/clock.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const DUBBO: FramedConfig = {
  headerSize: 16,
  length: { offset: 12, size: 4, endian: 'big', includesHeader: false, adjustment: 0 },
  requestId: { offset: 4, size: 8 },
  maxFrameBytes: 1 << 20,
  unasked: 'close',
};
const NO_HEARTBEAT: HeartbeatConfig = { intervalMs: 0, timeoutMs: 1000, misses: 2, jitter: 0, probe: null, answer: null };

it('with request ids, one request never answered does not make the connection keep every later one', async () => {
  const server = cleanup.add(await DubboServer.start({ delayMs: (body) => (body === 'hang' ? 2 ** 31 - 1 : 0), heartbeatEveryMs: 0 }), (s) => s.close());
  const [host, port] = server.address.split(':');
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const owner: ConnectionOwner = { onReady: () => ready(), onHeartbeat: () => {}, onClose: () => {}, onInternalError: () => {} };
  const settings = { host, port: Number(port), tls: null, connectTimeoutMs: 2000, clock: systemClock, username: null, password: null, db: 0, identify: false, raw: false };
  const conn = new Connection(framedCodecFor(DUBBO, NO_HEARTBEAT), settings, owner, systemClock.now());
  conn.start();
  cleanup.defer(() => conn.destroy('shutdown', 'test'));
  await isReady;
  const ignore = { onResponse: () => {}, onFailure: () => {} };
  conn.send(request(1n, 'hang'), ignore);
  let answered = 0;
  let batchDone: () => void = () => {};
  let goal = 0;
  const target = {
    onResponse: () => {
      if (++answered === goal) batchDone();
    },
    onFailure: () => {},
  };
  const ping = request(7n, 'p');
  const measure = (): number => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const run = async (n: number): Promise<void> => {
    for (let sent = 0; sent < n; sent += 500) {
      goal = answered + 500;
      const done = new Promise<void>((r) => (batchDone = r));
      for (let i = 0; i < 500; i++) conn.send(ping, target);
      await done;
    }
  };
  await run(5_000); // warm up: everything allocated once
  const before = measure();
  const N = 30_000;
  await run(N);
  expect(conn.inflight).toBe(1);
  const grown = measure() - before;
  console.log(`heap + arrayBuffers grew by ${(grown / 1e6).toFixed(2)} MB over ${N} requests answered behind one never answered`);
  expect(grown).toBeLessThan(1_500_000);
}, 60_000);
