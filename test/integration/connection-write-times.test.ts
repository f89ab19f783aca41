/**
 * A connection's record of its write batches stays small whether or not anything asks for request
 * deadlines (request_timeout: 0 asks nothing): it must not grow for the connection's whole life.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { RedisServer } from '../helpers/servers.js';
import { Connection } from '../../src/pool/connection.js';
import type { ConnectionOwner } from '../../src/pool/connection.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import { systemClock } from '../../src/util/clock.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function grows(check: boolean): Promise<number> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const codec = redisCodec;
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const owner: ConnectionOwner = { onReady: () => ready(), onHeartbeat: () => {}, onClose: () => {}, onInternalError: () => {} };
  const conn = new Connection(codec, { host: '127.0.0.1', port: redis.port, tls: null, connectTimeoutMs: 2000, clock: systemClock, username: null, password: null, db: 0, identify: false, raw: false }, owner, systemClock.now());
  conn.start();
  cleanup.defer(() => conn.destroy('shutdown', 'test'));
  await isReady;
  const ping = redisCodec.heartbeatRequest;
  let answered = 0;
  const target = { onResponse: () => void answered++, onFailure: () => {} };
  const measure = (): number => {
    gc();
    gc();
    return process.memoryUsage().arrayBuffers;
  };
  const before = measure();
  const N = 40_000;
  for (let i = 0; i < N; i++) {
    conn.send(ping, target);
    if (i % 1 === 0) await new Promise((r) => setImmediate(r)); // one write batch per turn
    if (check && i % 1000 === 0) conn.stalledFor(systemClock.now());
    if (conn.inflight > 1000) while (conn.inflight > 10) await new Promise((r) => setImmediate(r));
  }
  while (answered < N) await new Promise((r) => setTimeout(r, 5));
  expect(conn.inflight).toBe(0);
  const grown = measure() - before;
  console.log(`check=${check}: arrayBuffers grew by ${(grown / 1e6).toFixed(1)} MB after ${N} batches, nothing in flight`);
  return grown;
}
it('keeps its record of write batches small when nothing asks for deadlines (request_timeout: 0)', async () => {
  // 40,000 batches kept would be two 65,536-entry Float64Arrays: 1 MB.
  expect(await grows(false)).toBeLessThan(400_000);
}, 60_000);
