/**
 * protocol: tcp against a real redis-server used as an opaque byte service (poolside frames
 * nothing: the tests speak RESP by hand and poolside only relays): the warm pool, large transfers
 * both ways with backpressure, a client that stops reading (poolside's own RSS, in a child process),
 * a client leaving mid-transfer, half-close both ways, reuse with a reset exchange against
 * destroy-and-warm, the warm pool refilled after the server was down (generic-pool's min pitfall),
 * and a heartbeat on idle pooled connections evicting a SIGSTOPped server.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { spawnPoolside } from '../helpers/poolside-process.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import type { PoolYaml } from '../helpers/proxy.js';
import { encode } from '../helpers/resp-client.js';
import { Relay } from '../helpers/relay.js';
import { RedisServer, tempDir, waitFor } from '../helpers/servers.js';
import { makeCertificates } from '../helpers/tls.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const MB = 1024 * 1024;
const hex = (text: string): string => Buffer.from(text).toString('hex');
const PING = { send: hex('PING\r\n'), expect: hex('+PONG\r\n') };

/** A raw client: everything it received, and whether the peer sent its FIN / closed. */
class Peer {
  readonly socket: net.Socket;
  readonly #chunks: Buffer[] = [];
  length = 0;
  ended = false;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.length += chunk.length;
    });
    socket.on('end', () => (this.ended = true));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static async connect(port: number): Promise<Peer> {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return cleanup.add(new Peer(socket), (p) => p.socket.destroy());
  }

  /** Everything received from byte `from` on. */
  bytes(from = 0): Buffer {
    const all = Buffer.concat(this.#chunks, this.length);
    this.#chunks.splice(0, this.#chunks.length, all);
    return all.subarray(from);
  }

  text(): string {
    return this.bytes().toString('latin1');
  }

  /** The last `n` bytes received (cheap: a large transfer is not gathered on every check). */
  #tail(n: number): string {
    const parts: Buffer[] = [];
    let have = 0;
    for (let i = this.#chunks.length - 1; i >= 0 && have < n; i--) {
      parts.unshift(this.#chunks[i]);
      have += this.#chunks[i].length;
    }
    const joined = Buffer.concat(parts);
    return joined.subarray(Math.max(0, joined.length - n)).toString('latin1');
  }

  /** Sends `bytes` and waits until what came back since ends with `suffix`. */
  async ask(bytes: Buffer | string, suffix: string, timeoutMs = 5000): Promise<string> {
    const from = this.length;
    this.socket.write(bytes);
    await waitFor(() => this.length - from >= suffix.length && this.#tail(suffix.length) === suffix, `a reply ending ${JSON.stringify(suffix)}`, timeoutMs);
    return this.bytes(from).toString('latin1');
  }
}

async function setup(pool: PoolYaml = {}, redisArgs: string[] = []): Promise<{ redis: RedisServer; proxy: Proxy; port: number }> {
  const redis = cleanup.add(await RedisServer.start(redisArgs), (s) => s.stop());
  const proxy = cleanup.add(await startProxy([redis.address], { protocol: 'tcp', ...pool }), (p) => p.close());
  return { redis, proxy, port: portOf(proxy) };
}

function server(proxy: Proxy): { idle: number; active: number; connecting: number; opened: number; closed: Record<string, number> } {
  const stats = proxy.stats()[0].servers[0];
  return { ...stats.connections, opened: stats.counters.connectionsOpened, closed: stats.counters.connectionsClosed };
}

/** Connections redis-server has from anyone but `except` (the CLIENT LIST asker itself). */
async function redisClients(redis: RedisServer): Promise<number> {
  const list = await redis.command('CLIENT', 'LIST');
  return list.split('\n').filter((line) => line.includes('id=')).length - 1;
}

/** A command straight to redis-server, waited for as long as a loaded host needs (setting up a large value). */
async function redisAsk(redis: RedisServer, ...args: string[]): Promise<string> {
  const peer = await Peer.connect(redis.port);
  const reply = await peer.ask(encode(...args), '\r\n', 60_000);
  peer.socket.destroy();
  return reply;
}

async function clientId(peer: Peer): Promise<string> {
  const reply = await peer.ask('CLIENT ID\r\n', '\r\n');
  expect(reply).toMatch(/^:\d+\r\n$/);
  return reply;
}

describe('the warm pool', () => {
  it('opens connections.min at start and relays a client over one of them', async () => {
    const { redis, proxy, port } = await setup({ connections: { min: 3, max: 4 } });
    await waitFor(() => server(proxy).idle === 3, 'three warm connections');
    expect(await redisClients(redis)).toBe(3);
    const peer = await Peer.connect(port);
    expect(await peer.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    expect(server(proxy).active).toBe(1);
    expect(server(proxy).opened).toBe(3);
  });

  it('refills min after the server was down at start (generic-pool retries no failed create)', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    await redis.kill();
    const proxy = cleanup.add(await startProxy([redis.address], { protocol: 'tcp', connections: { min: 2, max: 4 }, connect: { backoff: { initial: '50ms', max: '200ms' } } }), (p) => p.close());
    await waitFor(() => server(proxy).closed.connect_failed >= 2, 'the first connects to fail');
    await redis.restart();
    // No client asked for anything: the sweep brings the pool back to min on its own.
    await waitFor(() => server(proxy).idle === 2, 'two warm connections once the server is up', 10_000);
    expect(await redisClients(redis)).toBe(2);
  });
});

describe('review: a server that accepts and hangs up at once (a TCP load balancer with no backend)', () => {
  it('without a heartbeat, connections it closes before anyone used them count as failed connects: backed off and ejected, not reconnected every sweep', async () => {
    let accepts = 0;
    const service = net.createServer((socket) => {
      accepts++;
      socket.on('error', () => {});
      socket.destroy();
    });
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    cleanup.defer(() => new Promise((resolve) => service.close(resolve)));
    const port = (service.address() as net.AddressInfo).port;
    const proxy = cleanup.add(
      await startProxy([`127.0.0.1:${port}`], { protocol: 'tcp', connections: { min: 4, max: 4 }, connect: { backoff: { initial: '100ms', max: '1s' } } }),
      (p) => p.close(),
    );
    const stats = (): { health: string; failures: number } => {
      const s = proxy.stats()[0].servers[0];
      return { health: s.health.kind, failures: s.counters.connectFailures };
    };
    await waitFor(() => stats().health === 'ejected', 'the server ejected', 10_000);
    expect(stats().failures).toBeGreaterThanOrEqual(3);
    expect(accepts).toBeGreaterThan(0);
  });
});

describe('relaying', () => {
  it('relays over TLS to the server: the client speaks plain bytes to poolside, the warm connections did the handshakes', async () => {
    const certs = makeCertificates(tempDir('poolside-tcp-tls-'));
    cleanup.defer(() => fs.rmSync(certs.dir, { recursive: true, force: true }));
    const tls = { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, caFile: certs.caFile, authClients: 'no' as const };
    const redis = cleanup.add(await RedisServer.start([], { tls }), (s) => s.stop());
    const proxy = cleanup.add(
      await startProxy([], { protocol: 'tcp', servers: [{ address: redis.address, tls: { ca_file: certs.caFile, servername: 'localhost' } }], connections: { min: 2, max: 2 } }),
      (p) => p.close(),
    );
    await waitFor(() => server(proxy).idle === 2, 'two warm TLS connections');
    const peer = await Peer.connect(portOf(proxy));
    expect(await peer.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    expect(await peer.ask(encode('ECHO', 'over tls'), '\r\n')).toBe('$8\r\nover tls\r\n');
  });


  it('moves large transfers both ways intact', async () => {
    const { redis, port } = await setup({ connections: { min: 1, max: 2 } });
    const size = 24 * MB;
    const value = Buffer.alloc(size, 'abcdefghij');
    const peer = await Peer.connect(port);
    // Client → server: one 48 MB request, written as fast as the socket takes it.
    expect(await peer.ask(encode('SET', 'big', value), '\r\n', 60_000)).toBe('+OK\r\n');
    expect(await redisAsk(redis, 'STRLEN', 'big')).toBe(`:${size}\r\n`);
    // Server → client: the same 48 MB back.
    const reply = await peer.ask(encode('GET', 'big'), `${'abcdefghij'[(size - 1) % 10]}\r\n`, 60_000);
    expect(reply.length).toBe(`$${size}\r\n`.length + size + 2);
    expect(Buffer.from(reply, 'latin1').subarray(`$${size}\r\n`.length, -2).equals(value)).toBe(true);
  }, 150_000);

  it('a client that leaves mid-transfer costs its connection (destroyed, a fresh one warmed), not the others', async () => {
    const { redis, proxy, port } = await setup({ connections: { min: 2, max: 4 } });
    await redisAsk(redis, 'SETRANGE', 'big', String(16 * MB - 1), 'x');
    await waitFor(() => server(proxy).idle === 2, 'two warm connections');
    const other = await Peer.connect(port);
    const leaver = await Peer.connect(port);
    leaver.socket.write(encode('GET', 'big'));
    await waitFor(() => leaver.length > MB, 'the transfer to start', 30_000);
    leaver.socket.destroy();
    await waitFor(() => server(proxy).closed.session_state >= 1, 'the connection to be destroyed');
    await waitFor(() => server(proxy).idle === 1 && server(proxy).active === 1, 'a fresh connection warmed beside the other client');
    expect(await other.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
  }, 90_000);

  it('a client that stops reading does not grow poolside: the server is paused instead', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    await redisAsk(redis, 'SETRANGE', 'big', String(32 * MB - 1), 'x');
    const dir = tempDir();
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'p.sock');
    const file = path.join(dir, 'poolside.yaml');
    fs.writeFileSync(file, ['admin: false', 'pools:', '  p:', '    protocol: tcp', `    listen: ["unix:${socketPath}"]`, `    servers: ["${redis.address}"]`, ''].join('\n'));
    const poolside = spawnPoolside(cleanup, ['--config', file]);
    await waitFor(() => fs.existsSync(socketPath), 'poolside to listen', 20_000);
    const client = net.connect({ path: socketPath });
    cleanup.defer(() => client.destroy());
    await new Promise<void>((resolve) => client.once('connect', resolve));
    client.pause();
    const before = memoryOf(poolside.pid);
    // 10 × 32 MB asked for, none of it read.
    for (let i = 0; i < 10; i++) client.write(encode('GET', 'big'));
    // Until redis has filled what the kernel and poolside will take, and stopped writing.
    const asker = await Peer.connect(redis.port);
    await waitFor(async () => Number(/omem=(\d+)/.exec(await asker.ask('CLIENT LIST\r\n', '\r\n', 60_000))?.[1] ?? 0) > 32 * MB, 'redis to hold the unread reply', 90_000, 200);
    const grew = memoryOf(poolside.pid) - before;
    console.log(`tcp relay, 320 MB asked by a client that does not read: poolside RSS grew ${(grew / MB).toFixed(1)} MB`);
    expect(grew).toBeLessThan(40 * MB);
  }, 150_000);
});

function memoryOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

describe('half-close', () => {
  it("client FIN → server FIN after the bytes; the server's replies still reach the client, then its FIN", async () => {
    const { port } = await setup({ connections: { min: 1, max: 2 } });
    const peer = await Peer.connect(port);
    peer.socket.end(Buffer.concat([encode('SET', 'k', 'v'), encode('GET', 'k')]));
    await waitFor(() => peer.ended, 'the FIN back');
    expect(peer.text()).toBe('+OK\r\n$1\r\nv\r\n');
  });

  it('server FIN → client FIN while the client → server direction keeps flowing', async () => {
    // A service that says goodbye first and still reads what follows (redis hangs up fully, so an in-test one).
    const got: Buffer[] = [];
    let serverSawEnd = false;
    const service = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.once('data', () => socket.end('bye\n'));
      socket.on('data', (chunk: Buffer) => got.push(chunk));
      socket.on('end', () => {
        serverSawEnd = true;
        socket.end();
      });
    });
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    cleanup.defer(() => new Promise((resolve) => service.close(resolve)));
    const servicePort = (service.address() as net.AddressInfo).port;
    const proxy = cleanup.add(await startProxy([`127.0.0.1:${servicePort}`], { protocol: 'tcp', connections: { min: 1, max: 1 } }), (p) => p.close());
    const peer = await Peer.connect(portOf(proxy));
    peer.socket.write('hello\n');
    await waitFor(() => peer.ended, "the service's FIN relayed");
    expect(peer.text()).toBe('bye\n');
    peer.socket.write('after the FIN\n');
    await waitFor(() => Buffer.concat(got).toString().includes('after the FIN'), 'bytes after the FIN to reach the service');
    peer.socket.end();
    await waitFor(() => serverSawEnd, "the client's FIN relayed");
    await waitFor(() => peer.closed, 'the client closed');
  });

  it('a server connection that dies mid-session resets the client', async () => {
    const { redis, port } = await setup({ connections: { min: 1, max: 1 } });
    const peer = await Peer.connect(port);
    expect(await peer.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    await redis.command('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    // redis closes the killed connection with a FIN: the client gets a FIN too (nothing was cut).
    await waitFor(() => peer.ended || peer.closed, 'the client told');
  });
});

describe('reuse', () => {
  it('without a reset exchange, each client gets a fresh connection and the pool warms a new one', async () => {
    const { proxy, port } = await setup({ connections: { min: 1, max: 1 } });
    const first = await Peer.connect(port);
    const a = await clientId(first);
    first.socket.end();
    await waitFor(() => first.closed, 'the first client done');
    await waitFor(() => server(proxy).idle === 1, 'a fresh warm connection');
    const second = await Peer.connect(port);
    expect(await clientId(second)).not.toBe(a);
    expect(server(proxy).opened).toBe(2);
  });

  it('with tcp.reset, a connection proven clean is lent again, and a half-closing client still gets its replies', async () => {
    const { proxy, port } = await setup({ connections: { min: 1, max: 1 }, tcp: { reset: PING } });
    const first = await Peer.connect(port);
    const a = await clientId(first);
    // A client that half-closes right after its request gets the reply, then its FIN.
    first.socket.end(Buffer.from('GET nothing\r\n'));
    await waitFor(() => first.ended, 'the FIN back');
    expect(first.text()).toBe(`${a}$-1\r\n`);
    await waitFor(() => server(proxy).idle === 1, 'the connection back in the pool');
    const second = await Peer.connect(port);
    expect(await clientId(second)).toBe(a);
    second.socket.destroy();
    // A client that vanishes (no FIN relayed) is reset behind its back, and its connection reused too.
    await waitFor(() => server(proxy).idle === 1, 'back again');
    const third = await Peer.connect(port);
    expect(await clientId(third)).toBe(a);
    expect(server(proxy).opened).toBe(1);
  });

  it('a reset answered wrong destroys the connection instead', async () => {
    // The reset's deadline (request_timeout) is what ends the wait for a reply that never matches.
    const { proxy, port } = await setup({ connections: { min: 1, max: 1 }, request_timeout: '300ms', tcp: { reset: { send: hex('PING\r\n'), expect: hex('+NOPE\r\n') } } });
    const first = await Peer.connect(port);
    const a = await clientId(first);
    first.socket.end();
    // poolside cannot tell a wrong reply from the client's own reply still on its way: the client is
    // reset, so a stream that may be cut never looks complete.
    await waitFor(() => first.closed, 'the client closed');
    expect(first.ended).toBe(false);
    expect(first.text().startsWith(a)).toBe(true);
    await waitFor(() => server(proxy).idle === 1 && server(proxy).opened === 2, 'a fresh connection');
    const second = await Peer.connect(port);
    expect(await clientId(second)).not.toBe(a);
  });
});

describe('heartbeats', () => {
  it('probe idle pooled connections and evict a SIGSTOPped server; the pool comes back after SIGCONT', async () => {
    const { redis, proxy, port } = await setup({
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '200ms', timeout: '100ms', misses: 1, ...PING },
      connect: { timeout: '300ms', backoff: { initial: '50ms', max: '200ms' } },
    });
    await waitFor(() => server(proxy).idle === 2, 'two warm connections');
    await waitFor(() => proxy.stats()[0].servers[0].counters.lastHeartbeatSuccess > 0, 'a heartbeat answered');
    await redis.freeze();
    cleanup.defer(() => redis.signal('SIGCONT'));
    await waitFor(() => server(proxy).closed.heartbeat_failed >= 2, 'both idle connections evicted');
    redis.signal('SIGCONT');
    await waitFor(() => server(proxy).idle === 2, 'the pool warm again', 10_000);
    const peer = await Peer.connect(port);
    expect(await peer.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
  });
});


describe('reload and shutdown', () => {
  it('a reload that changes a tcp pool leaves a relaying client on its connection; new clients get the new pool', async () => {
    const { redis, proxy, port } = await setup({ connections: { min: 1, max: 2 } });
    const old = proxy.pools.get('p');
    const before = await Peer.connect(port);
    expect(await before.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    const doc = { admin: false, pools: { p: { protocol: 'tcp', listen: ['127.0.0.1:0'], servers: [redis.address], connections: { min: 2, max: 2 } } } };
    await proxy.reload(parseConfig(YAML.stringify(doc), 'test.yaml'));
    expect(proxy.pools.get('p')).not.toBe(old);
    expect(portOf(proxy)).toBe(port);
    expect(await before.ask(encode('ECHO', 'still here'), '\r\n')).toBe('$10\r\nstill here\r\n');
    const after = await Peer.connect(port);
    expect(await after.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    expect(server(proxy).active).toBe(1);
    before.socket.end();
    await waitFor(() => before.closed, 'the old client done');
    await waitFor(() => old?.clients === 0, 'the old pool empty');
  });

  it('shutdown closes a client still waiting for a connection at once, and a relaying one (FIN) at shutdown.timeout', async () => {
    const { port, proxy } = await setup({ connections: { min: 0, max: 1 }, queue: { timeout: '10s' } });
    const relaying = await Peer.connect(port);
    expect(await relaying.ask(encode('PING'), '\r\n')).toBe('+PONG\r\n');
    const waiting = await Peer.connect(port);
    waiting.socket.write(encode('PING'));
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.pending === 1, 'the second client waiting');
    const drained = proxy.drain({ delayMs: 0, timeoutMs: 2000 });
    await waitFor(() => waiting.closed, 'the waiting client closed');
    expect(relaying.closed).toBe(false);
    expect((await drained).cutOff).toBe(1);
    await waitFor(() => relaying.ended, 'the relaying client given its FIN');
  });
});

/** A service that accepts and never reads (a wedged worker whose socket stays open). */
async function deafService(): Promise<{ port: number; accepted: () => number; closed: () => number }> {
  let accepted = 0;
  let closed = 0;
  const sockets = new Set<net.Socket>();
  const service = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.pause();
    socket.on('error', () => {});
    socket.on('close', () => {
      closed++;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  cleanup.defer(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => service.close(resolve));
  });
  return { port: (service.address() as net.AddressInfo).port, accepted: () => accepted, closed: () => closed };
}

describe('review: lifecycle under a server that stops reading and a slow last reply', () => {
  it('a server that stops reading: its relayed client is reset after request_timeout and the connection evicted, not lent forever', async () => {
    const deaf = await deafService();
    const proxy = cleanup.add(
      await startProxy([`127.0.0.1:${deaf.port}`], { protocol: 'tcp', connections: { min: 0, max: 1 }, request_timeout: '300ms', queue: { timeout: '5s' } }),
      (p) => p.close(),
    );
    const stuck = await Peer.connect(portOf(proxy));
    // More than the kernel buffers take: poolside holds the rest and stops reading the client, which
    // from then on cannot even be seen leaving.
    stuck.socket.write(Buffer.alloc(64 * MB, 'x'));
    await waitFor(() => stuck.closed, 'the held-back client reset', 10_000);
    expect(stuck.ended).toBe(false);
    await waitFor(() => server(proxy).active === 0 && server(proxy).closed.request_timeout === 1, 'the connection evicted');
    // The slot is free again: the next client is relayed.
    const next = await Peer.connect(portOf(proxy));
    next.socket.write('hello');
    await waitFor(() => deaf.accepted() === 2 && server(proxy).active === 1, 'the next client relayed on a new connection');
  });

  it('with tcp.reset, a client that stopped reading and then vanished still has its connection reset and reused', async () => {
    const { redis, proxy, port } = await setup({ connections: { min: 1, max: 1 }, request_timeout: '5s', tcp: { reset: PING } });
    await redisAsk(redis, 'SETRANGE', 'big', String(16 * MB - 1), 'x');
    const peer = await Peer.connect(port);
    peer.socket.pause();
    // Its FIN starts the reset behind a 16 MB reply it never reads: poolside pauses the server.
    peer.socket.end(encode('GET', 'big'));
    await waitFor(async () => /omem=[1-9]/.test(await redisAsk(redis, 'CLIENT', 'LIST')), 'redis to hold the unread reply', 30_000);
    peer.socket.destroy();
    // Gone: nothing will drain its socket, so the rest is read and dropped, and the reset answered.
    await waitFor(() => server(proxy).idle === 1, 'the connection back in the pool', 10_000);
    expect(server(proxy).opened).toBe(1);
  }, 60_000);

  it('with tcp.reset, a half-closed client whose last reply is slower than the reset deadline is reset, not given a FIN that looks complete', async () => {
    const { port } = await setup({ connections: { min: 1, max: 1 }, request_timeout: '200ms', connect: { timeout: '200ms' }, tcp: { reset: PING } });
    const peer = await Peer.connect(port);
    // BLPOP answers after 1 s: longer than the reset's deadline.
    peer.socket.end(encode('BLPOP', 'nothing-here', '1'));
    await waitFor(() => peer.closed, 'the client closed', 10_000);
    // Either it got its whole reply, or it must not have been told the stream ended cleanly.
    if (peer.ended) expect(peer.text()).toBe('*-1\r\n');
  });
});

describe('review: a network path that blackholes (no FIN, no RST, bytes dropped)', () => {
  it('with tcp.reset: a leaving client is reset, its connection destroyed rather than reused; idle ones fail their heartbeat and the server is ejected; after restore the pool is warm again and relays', async () => {
    const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
    const relay = cleanup.add(await Relay.start({ host: '127.0.0.1', port: redis.port }), (r) => r.close());
    const proxy = cleanup.add(
      await startProxy([relay.address], {
        protocol: 'tcp',
        connections: { min: 2, max: 3 },
        request_timeout: '300ms',
        heartbeat: { interval: '200ms', timeout: '100ms', misses: 1, ...PING },
        connect: { timeout: '300ms', backoff: { initial: '50ms', max: '200ms' } },
        tcp: { reset: PING },
      }),
      (p) => p.close(),
    );
    await waitFor(() => server(proxy).idle === 2, 'two warm connections');
    const peer = await Peer.connect(portOf(proxy));
    expect(await peer.ask(encode('ECHO', 'before'), '\r\n')).toBe('$6\r\nbefore\r\n');
    relay.blackhole();
    peer.socket.end(encode('ECHO', 'lost'));
    await waitFor(() => peer.closed, 'the client closed');
    expect(peer.ended).toBe(false);
    // Idle connections fail their heartbeat, new ones their connect heartbeat: the server is ejected.
    await waitFor(() => proxy.stats()[0].servers[0].health.kind === 'ejected' && server(proxy).closed.heartbeat_failed >= 1 && server(proxy).active === 0, 'the server ejected, the lent connection destroyed');
    relay.restore();
    await waitFor(() => server(proxy).idle === 2, 'warm again after restore', 10_000);
    const next = await Peer.connect(portOf(proxy));
    expect(await next.ask(encode('ECHO', 'after'), '\r\n')).toBe('$5\r\nafter\r\n');
  });
});
