/**
 * protocol: framed with a request-id field, against an in-test server with a Dubbo-style header
 * (test/helpers/dubbo-server.ts) that answers out of order and sends heartbeat requests of its own:
 * pipelining clients whose request ids collide all get their own replies, poolside's configured
 * heartbeat is answered, and poolside answers the server's heartbeats. Also: frames nobody asked
 * for (close or drop), and an oversized or malformed client frame closing only that client.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { DubboReader, DubboServer, FLAG_EVENT, encodeDubbo, request } from '../helpers/dubbo-server.js';
import type { DubboFrame } from '../helpers/dubbo-server.js';
import { exclusiveStats, portOf, quietLog, startProxy, waitReady } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** The Dubbo framing and heartbeats, as a user writes them (docs/protocols.md has the same). */
const DUBBO_POOL = {
  protocol: 'framed',
  framed: { header_size: 16, length: { offset: 12, size: 4 }, request_id: { offset: 4, size: 8 } },
  heartbeat: {
    interval: '150ms',
    timeout: '100ms',
    jitter: 0,
    // request | two-way | event, serialization 2, id filled in by poolside, body "N"
    send: 'dabb e2 00 0000000000000000 00000001 4e',
    // a response (no 0x80) with the event bit
    expect: { mask: 'ffff a0', value: 'dabb 20' },
    // the server's own heartbeat: a request with the event bit; answered OK (status 20), its id copied in
    answer: { match: { mask: 'ffff a0', value: 'dabb a0' }, reply: 'dabb 22 14 0000000000000000 00000001 4e' },
  },
};

/** A raw client of poolside that pipelines Dubbo frames and reads replies as they come. */
class Client {
  readonly frames: DubboFrame[] = [];
  closed = false;
  readonly #socket: net.Socket;
  readonly #reader = new DubboReader();

  constructor(port: number) {
    this.#socket = net.connect(port, '127.0.0.1');
    this.#socket.on('data', (chunk: Buffer) => this.frames.push(...this.#reader.push(chunk)));
    this.#socket.on('error', () => {});
    this.#socket.on('close', () => {
      this.closed = true;
    });
    cleanup.defer(() => this.#socket.destroy());
  }

  write(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  end(): void {
    this.#socket.end();
  }
}

async function dubboServer(delayMs: (body: string) => number, heartbeatEveryMs = 0, torn?: (body: string) => boolean): Promise<DubboServer> {
  return cleanup.add(await DubboServer.start({ delayMs, heartbeatEveryMs, torn }), (s) => s.close());
}

async function proxyFor(server: DubboServer, pool: Record<string, unknown> = {}, log = quietLog()): Promise<Proxy> {
  const proxy = cleanup.add(await startProxy([server.address], { ...DUBBO_POOL, ...pool }, { log }), (p) => p.close());
  await waitReady(proxy);
  return proxy;
}

const counters = (proxy: Proxy) => proxy.stats()[0].servers[0].counters;

describe('framed: Dubbo-style header with request ids', () => {
  it('pipelined clients whose ids collide each get their own replies, answered out of order', async () => {
    // Later requests answered sooner: replies on a shared connection come back in any order.
    const server = await dubboServer((body) => 5 + ((body.length * 7 + Number(body.split('-r')[1] ?? 0) * 13) % 25));
    const proxy = await proxyFor(server, { connections: { min: 1, max: 2 } });
    const port = portOf(proxy);
    const CLIENTS = 8;
    const REQUESTS = 20;
    const clients = Array.from({ length: CLIENTS }, () => new Client(port));
    clients.forEach((client, c) => {
      // Every client numbers its requests 1..REQUESTS, as RPC clients do: the ids collide across clients.
      client.write(Buffer.concat(Array.from({ length: REQUESTS }, (_, i) => request(BigInt(i + 1), `c${c}-r${i + 1}`))));
    });
    await waitFor(() => clients.every((client) => client.frames.length === REQUESTS), 'every reply', 10_000);
    clients.forEach((client, c) => {
      for (const frame of client.frames) expect(frame.body.toString()).toBe(`echo:c${c}-r${frame.id}`);
      expect(new Set(client.frames.map((f) => f.id)).size).toBe(REQUESTS);
    });
    expect(server.requests).toBe(CLIENTS * REQUESTS);
    expect(server.collisions).toEqual([]);
    expect(server.strayFrames).toBe(0);
    expect(server.answeredOutOfOrder).toBeGreaterThan(0);
  });

  it("sends the configured heartbeat and answers the server's own heartbeats, id copied", async () => {
    // The server's heartbeats are reads, which prove it alive and postpone poolside's own: it sends
    // them less often than poolside's interval, so both kinds flow.
    const server = await dubboServer(() => 1, 300);
    const proxy = await proxyFor(server, { connections: { min: 1, max: 1 } });
    await waitFor(() => server.heartbeatsAnswered >= 3, "poolside answering the server's heartbeats", 5000);
    // The first one was the connection's setup; later ones are sent on the idle connection.
    await waitFor(() => server.heartbeatsReceived >= 3 && counters(proxy).lastHeartbeatSuccess > 0, "poolside's heartbeats answered", 5000);
    expect(counters(proxy).unasked.answered).toBeGreaterThanOrEqual(3);
    expect(counters(proxy).heartbeatFailures).toEqual({ timeout: 0, error: 0 });
    // Clients are served in between, and no heartbeat frame reaches them.
    const client = new Client(portOf(proxy));
    client.write(Buffer.concat([request(1n, 'a'), request(2n, 'b')]));
    await waitFor(() => client.frames.length === 2, 'two replies');
    expect(client.frames.map((f) => [f.id, f.body.toString(), f.flags & FLAG_EVENT])).toEqual([
      [1n, 'echo:a', 0],
      [2n, 'echo:b', 0],
    ]);
    expect(server.strayFrames).toBe(0);
    expect(proxy.stats()[0].servers[0].counters.connectionsClosed.heartbeat_failed).toBe(0);
  });

  it('evicts a connection whose heartbeat reply does not match expect', async () => {
    const server = await dubboServer(() => 1);
    // The server answers heartbeats with the event bit; this expect wants a status it never sends.
    const heartbeat = { ...DUBBO_POOL.heartbeat, expect: { prefix: 'dabb 22 1f' } };
    const log = quietLog();
    const proxy = cleanup.add(await startProxy([server.address], { ...DUBBO_POOL, heartbeat, connections: { min: 1, max: 1 } }, { log }), (p) => p.close());
    // The setup heartbeat already fails: the connection never becomes ready.
    await waitFor(() => counters(proxy).connectionsClosed.init_failed >= 1, 'setup heartbeat refused');
    expect(log.lines.some((l) => JSON.stringify(l.fields).includes('heartbeat.expect does not match'))).toBe(true);
  });

  it('a reply to nothing waiting closes the connection, or is dropped and counted with unasked: drop', async () => {
    const server = await dubboServer(() => 1);
    const closing = await proxyFor(server, { connections: { min: 1, max: 1 } });
    server.sendStray();
    await waitFor(() => counters(closing).connectionsClosed.unexpected_response === 1, 'closed as unexpected_response');
    await closing.close();

    const server2 = await dubboServer(() => 1);
    const dropping = await proxyFor(server2, { connections: { min: 1, max: 1 }, framed: { ...DUBBO_POOL.framed, unasked: 'drop' } });
    server2.sendStray();
    await waitFor(() => counters(dropping).unasked.dropped === 1, 'dropped and counted');
    const client = new Client(portOf(dropping));
    client.write(request(7n, 'still here'));
    await waitFor(() => client.frames.length === 1, 'a reply on the same connection');
    expect(client.frames[0].body.toString()).toBe('echo:still here');
    expect(counters(dropping).connectionsClosed.unexpected_response).toBe(0);
  });

  it('an oversized or malformed client frame closes only that client, with the reason logged and counted', async () => {
    const server = await dubboServer(() => 1);
    const log = quietLog();
    const proxy = await proxyFor(server, { framed: { ...DUBBO_POOL.framed, max_frame: '1kb' } }, log);
    const port = portOf(proxy);
    const good = new Client(port);
    const big = new Client(port);
    // Only the header of a 2 KiB frame: refused from the header, before any body is sent.
    big.write(encodeDubbo({ flags: 0xc2, status: 0, id: 1n, body: Buffer.alloc(2048) }).subarray(0, 16));
    await waitFor(() => big.closed, 'the oversized client closed');
    good.write(request(1n, 'fine'));
    await waitFor(() => good.frames.length === 1, 'the other client served');
    expect(good.closed).toBe(false);
    const pool = proxy.pools.get('p');
    expect(pool?.counters.protocolErrors).toBe(1);
    expect(log.lines.some((l) => l.fields.reason === 'PROTOCOL_ERROR' && String(l.fields.error).includes('larger than'))).toBe(true);
  });

  it('lease: exclusive lends each client a connection of its own and takes it back clean (nothing to reset)', async () => {
    const server = await dubboServer(() => 1);
    const proxy = await proxyFor(server, { lease: 'exclusive', exclusive: { max: 2 }, connections: { min: 1, max: 1 } });
    const port = portOf(proxy);
    for (const name of ['a', 'b', 'c']) {
      const client = new Client(port);
      client.write(Buffer.concat([request(1n, `${name}1`), request(2n, `${name}2`)]));
      await waitFor(() => client.frames.length === 2, `client ${name} served`);
      expect(client.frames.map((f) => f.body.toString())).toEqual([`echo:${name}1`, `echo:${name}2`]);
      client.end();
      await waitFor(() => exclusiveStats(proxy).borrowed === 0, 'the connection given back');
    }
    const closed = counters(proxy).connectionsClosed;
    expect([closed.reset_failed, closed.session_state]).toEqual([0, 0]);
    expect(exclusiveStats(proxy).idle).toBe(1);
    // One shared connection and one exclusive one, lent three times.
    expect(counters(proxy).connectionsOpened).toBe(2);
  });

  it('a request poolside cannot answer closes its client after the replies before it', async () => {
    // "hang" is never answered: request_timeout evicts the connection and fails the request.
    const server = await dubboServer((body) => (body === 'hang' ? 60_000 : 1));
    const proxy = await proxyFor(server, { request_timeout: '200ms', connections: { min: 1, max: 1 } });
    const client = new Client(portOf(proxy));
    client.write(Buffer.concat([request(1n, 'first'), request(2n, 'hang'), request(3n, 'after')]));
    await waitFor(() => client.closed, 'the client closed', 5000);
    // The reply before the failed request was written; nothing after it (the client cannot tell whose it would be).
    expect(client.frames.map((f) => f.body.toString())).toEqual(['echo:first']);
    expect(proxy.pools.get('p')?.counters.failures.some((n) => n > 0)).toBe(true);
  });
});

describe('framed: request ids under attack and faults', () => {
  it("a request the server never answers times out even while other clients' replies keep arriving on its connection", async () => {
    // Matched by id, a read answers whoever it answers: another client's replies are no progress
    // for the stuck request. Before: every read reset its deadline, so on a busy connection it
    // never timed out, and every request answered behind it stayed on the connection's FIFO.
    const server = await dubboServer((body) => (body === 'hang' ? 2 ** 31 - 1 : 1));
    const proxy = await proxyFor(server, { request_timeout: '300ms', connections: { min: 1, max: 1 } });
    const port = portOf(proxy);
    const stuck = new Client(port);
    stuck.write(request(1n, 'hang'));
    await waitFor(() => server.connections === 1 && counters(proxy).connectionsOpened === 1, 'the shared connection');
    const busy = new Client(port);
    let sent = 0;
    const pump = setInterval(() => {
      sent++;
      busy.write(request(BigInt(sent), `b${sent}`));
    }, 20);
    cleanup.defer(() => clearInterval(pump));
    await waitFor(() => stuck.closed, 'the stuck client closed by request_timeout', 5000);
    clearInterval(pump);
    expect(stuck.frames).toEqual([]);
    // The stuck request failed alone: the connection and the busy client carry on.
    expect(counters(proxy).connectionsClosed.request_timeout).toBe(0);
    expect(busy.closed).toBe(false);
    const before = busy.frames.length;
    busy.write(request(1000n, 'still'));
    await waitFor(() => busy.frames.length > before && busy.frames.some((f) => f.id === 1000n), 'the busy client still served');
    // Every reply the busy client got is its own.
    for (const frame of busy.frames) expect(frame.body.toString()).toBe(frame.id === 1000n ? 'echo:still' : `echo:b${frame.id}`);
  });

  it("a timed-out request's late reply is dropped, and its id answers no later request", async () => {
    // "late" is answered after 700 ms, past request_timeout: its client is closed at 200 ms, the
    // connection stays, and the reply that finally comes is dropped (unasked: close would have
    // closed the connection had poolside forgotten the id), never given to a request that was
    // handed the same id since.
    const server = await dubboServer((body) => (body === 'late' ? 700 : 1));
    const proxy = await proxyFor(server, { request_timeout: '200ms', connections: { min: 1, max: 1 } });
    const port = portOf(proxy);
    const slow = new Client(port);
    slow.write(request(7n, 'late'));
    await waitFor(() => slow.closed, 'the late request timed out alone', 5000);
    const others = [new Client(port), new Client(port)];
    others.forEach((c, i) => c.write(Buffer.concat(Array.from({ length: 20 }, (_, k) => request(BigInt(k + 1), `o${i}-${k + 1}`)))));
    await waitFor(() => counters(proxy).unasked.dropped === 1, 'the late reply dropped', 5000);
    await waitFor(() => others.every((c) => c.frames.length === 20), 'every other request answered');
    others.forEach((c, i) => {
      for (const frame of c.frames) expect(frame.body.toString()).toBe(`echo:o${i}-${frame.id}`);
      expect(c.closed).toBe(false);
    });
    expect(counters(proxy).connectionsClosed.request_timeout).toBe(0);
    expect(counters(proxy).connectionsOpened).toBe(1);
  });

  it('a reply that stops half way evicts its connection: nothing after it can be framed, so nothing may fail alone', async () => {
    // The server writes half of "torn"'s reply and stops. Matched by id or not, the byte stream is
    // stuck mid-frame: had the request failed alone and the connection stayed, the next request's
    // whole reply would be read as the rest of the torn one (and dropped with its id), and every
    // later request on the connection would time out in turn, each closing its client.
    const server = await dubboServer(() => 1, 0, (body) => body === 'torn');
    const proxy = await proxyFor(server, { request_timeout: '200ms', connections: { min: 1, max: 1 } });
    const port = portOf(proxy);
    const stuck = new Client(port);
    stuck.write(request(1n, 'torn'));
    await waitFor(() => stuck.closed, 'the torn request timed out', 5000);
    expect(stuck.frames).toEqual([]);
    await waitFor(() => counters(proxy).connectionsClosed.request_timeout === 1, 'the stuck connection evicted', 5000);
    const after = new Client(port);
    after.write(request(1n, 'after'));
    await waitFor(() => after.frames.length === 1 || after.closed, 'the next request answered', 5000);
    expect(after.frames.map((f) => f.body.toString())).toEqual(['echo:after']);
    expect(after.closed).toBe(false);
    expect(counters(proxy).unasked.dropped).toBe(0);
  });

  it('with lease: exclusive, a request past request_timeout closes its client and the connection lent to it', async () => {
    // Nobody else shares the connection, and its client is closed anyway: it is not kept (with an
    // id kept out of use) for the next client.
    const server = await dubboServer((body) => (body === 'hang' ? 60_000 : 1));
    const proxy = await proxyFor(server, { request_timeout: '200ms', lease: 'exclusive', exclusive: { max: 2 }, connections: { min: 1, max: 1 } });
    const client = new Client(portOf(proxy));
    client.write(request(1n, 'hang'));
    await waitFor(() => client.closed, 'the client closed by request_timeout', 5000);
    await waitFor(() => counters(proxy).connectionsClosed.request_timeout === 1, 'the lent connection evicted', 5000);
    const next = new Client(portOf(proxy));
    next.write(request(1n, 'next'));
    await waitFor(() => next.frames.length === 1, 'the next client served');
    expect(next.frames[0].body.toString()).toBe('echo:next');
  });

  it('a client that half-closes after pipelining gets every reply, then is closed', async () => {
    const server = await dubboServer((body) => (body === 'slow' ? 150 : 1));
    const proxy = await proxyFor(server, { connections: { min: 1, max: 1 } });
    const client = new Client(portOf(proxy));
    client.write(Buffer.concat([request(1n, 'slow'), request(2n, 'fast'), request(1n, 'again')]));
    client.end();
    await waitFor(() => client.closed, 'closed after its replies', 5000);
    expect(client.frames.map((f) => [f.id, f.body.toString()])).toEqual([
      [1n, 'echo:slow'],
      [2n, 'echo:fast'],
      [1n, 'echo:again'],
    ]);
  });

  it('a server reply larger than max_frame closes that connection from its header; the next client is served on a new one', async () => {
    // max_frame 40: a 36-byte request passes, its 41-byte reply ("echo:" added) does not.
    const server = await dubboServer(() => 1);
    const proxy = await proxyFor(server, { framed: { ...DUBBO_POOL.framed, max_frame: 40 }, connections: { min: 1, max: 1 } });
    const victim = new Client(portOf(proxy));
    victim.write(request(1n, 'x'.repeat(20)));
    await waitFor(() => victim.closed, 'the client whose reply was refused closed');
    expect(victim.frames).toEqual([]);
    expect(counters(proxy).connectionsClosed.protocol_error).toBe(1);
    const next = new Client(portOf(proxy));
    next.write(request(9n, 'ok'));
    await waitFor(() => next.frames.length === 1, 'the next client served');
    expect(next.frames[0].body.toString()).toBe('echo:ok');
  });

  it('once a request fails, nothing the client sends after it is run: its reply could never reach the client', async () => {
    // A 1-byte request id: 255 in flight per connection. The victim's slow call takes the first
    // id, a hog takes the other 254, and the victim's next call finds none and fails. Its client is
    // closed after the slow call's reply; a call sent meanwhile must not reach the server, where
    // it would run for nobody (and run twice when the RPC library retries it elsewhere).
    const server = await dubboServer((body) => (body === 'x' ? 800 : body === 'hog' ? 200 : 1));
    const framed = { ...DUBBO_POOL.framed, request_id: { offset: 4, size: 1 } };
    const heartbeat = { ...DUBBO_POOL.heartbeat, interval: 0 };
    const proxy = await proxyFor(server, { framed, heartbeat, connections: { min: 1, max: 1 } });
    const victim = new Client(portOf(proxy));
    victim.write(request(1n, 'x'));
    await waitFor(() => proxy.stats()[0].servers[0].inflight === 1, 'the slow call in flight');
    const hog = new Client(portOf(proxy));
    hog.write(Buffer.concat(Array.from({ length: 254 }, (_, i) => request(BigInt(i), 'hog'))));
    await waitFor(() => proxy.stats()[0].servers[0].inflight === 255, 'every id in flight');
    victim.write(request(2n, 'no id left'));
    await waitFor(() => (proxy.pools.get('p')?.counters.failures.some((n) => n > 0) ?? false), 'the call without an id failed');
    await waitFor(() => hog.frames.length === 254, "the hog's calls answered: ids free again");
    victim.write(request(3n, 'after the failure'));
    await waitFor(() => victim.closed, 'the victim closed after its first reply', 5000);
    expect(victim.frames.map((f) => f.body.toString())).toEqual(['echo:x']);
    expect(server.requests).toBe(255);
  });

  it("in order, the server's own heartbeat requests are no progress for a request it never answers", async () => {
    // No request_id: replies in order. The server probes every 50 ms, well inside request_timeout;
    // before, each of its heartbeats counted as a read that postponed the deadline, for ever.
    const server = await dubboServer((body) => (body === 'hang' ? 2 ** 31 - 1 : 1), 50);
    const framed = { header_size: 16, length: { offset: 12, size: 4 } };
    const proxy = await proxyFor(server, { framed, request_timeout: '300ms', connections: { min: 1, max: 1 } });
    await waitFor(() => counters(proxy).unasked.answered >= 2, "the server's heartbeats answered");
    const client = new Client(portOf(proxy));
    client.write(request(1n, 'hang'));
    await waitFor(() => client.closed, 'closed by request_timeout', 5000);
    expect(counters(proxy).connectionsClosed.request_timeout).toBe(1);
  });
});
