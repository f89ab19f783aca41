/**
 * protocol: framed in front of a real framed RPC server nobody here wrote: Apache Thrift's Python
 * TThreadedServer with TFramedTransport (test/helpers/thrift.ts compiles the service with the real
 * thrift compiler). Thrift's own Python clients through poolside get their own answers under
 * concurrency; ping() is the configured heartbeat; a SIGSTOPped server is detected by it and
 * evicted; a killed and restarted server is served again.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { portOf, startProxy, waitReady } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';
import { ThriftKit, ThriftServer } from '../helpers/thrift.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

let kit: ThriftKit;
beforeAll(() => {
  kit = ThriftKit.build();
});
afterAll(() => kit.remove());

/**
 * Thrift's framed transport: a 4-byte big-endian length, then the message. The heartbeat is a
 * real ping() call (binary protocol, strict: version 0x8001 | CALL, name "ping", seqid 0, empty
 * args) and its reply (REPLY, the same name and seqid, an empty result struct).
 */
const THRIFT_POOL = {
  protocol: 'framed',
  framed: { header_size: 4, length: { offset: 0, size: 4 } },
  heartbeat: {
    interval: '200ms',
    timeout: '150ms',
    misses: 2,
    jitter: 0,
    send: '00000011 80010001 00000004 70696e67 00000000 00',
    expect: '00000011 80010002 00000004 70696e67 00000000 00',
  },
};

async function thriftServer(): Promise<ThriftServer> {
  const server = cleanup.add(await ThriftServer.start(kit), (s) => s.kill());
  cleanup.defer(() => server.signal('SIGCONT'));
  return server;
}

async function proxyFor(server: ThriftServer, pool: Record<string, unknown> = {}): Promise<Proxy> {
  const proxy = cleanup.add(await startProxy([server.address], { ...THRIFT_POOL, ...pool }), (p) => p.close());
  await waitReady(proxy, 10_000);
  return proxy;
}

const server0 = (proxy: Proxy) => proxy.stats()[0].servers[0];

describe('framed: Apache Thrift (TFramedTransport, Python)', () => {
  it("concurrent Thrift clients through poolside each get their own answers, over a few shared connections", async () => {
    const server = await thriftServer();
    const proxy = await proxyFor(server, { connections: { min: 1, max: 3 } });
    const result = await kit.client(portOf(proxy), 12, 40);
    expect(result).toEqual({ ok: 12 * 40, wrong: [], errors: [] });
    const s = server0(proxy);
    // Twelve clients, at most three server connections.
    expect(s.connections.idle + s.connections.active + s.connections.connecting).toBeLessThanOrEqual(3);
    expect(s.counters.connectionsOpened).toBeLessThanOrEqual(3);
  });

  it('uses ping() as the heartbeat, and detects and evicts a SIGSTOPped server', async () => {
    const server = await thriftServer();
    const proxy = await proxyFor(server, { connections: { min: 2, max: 2 } });
    await waitFor(() => server0(proxy).counters.lastHeartbeatSuccess > 0, 'a ping() heartbeat answered', 5000);
    expect(server0(proxy).counters.heartbeatFailures).toEqual({ timeout: 0, error: 0 });
    await server.freeze();
    await waitFor(() => server0(proxy).counters.connectionsClosed.heartbeat_failed >= 1, 'a heartbeat_failed eviction', 10_000);
    expect(server0(proxy).counters.heartbeatFailures.timeout).toBeGreaterThanOrEqual(2);
    server.signal('SIGCONT');
    // Once it runs again, the pool refills and clients are served.
    await waitFor(async () => (await kit.client(portOf(proxy), 1, 3)).ok === 3, 'served again after SIGCONT', 15_000, 100);
  });

  it('recovers after the server is killed and restarted', async () => {
    const server = await thriftServer();
    const proxy = await proxyFor(server, { connections: { min: 1, max: 2 } });
    expect((await kit.client(portOf(proxy), 2, 5)).ok).toBe(10);
    await server.kill();
    await waitFor(() => server0(proxy).counters.connectionsClosed.remote_closed >= 1, 'the dead connection noticed', 5000);
    await server.restart();
    await waitFor(async () => (await kit.client(portOf(proxy), 2, 5)).ok === 10, 'served again after restart', 15_000, 100);
  });
});
