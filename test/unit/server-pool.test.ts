/**
 * One server's connections driven by a fake clock: refill backoff and its single-flight connects,
 * ejection and probing, heartbeat misses, sibling sweeps, idle_timeout and max_lifetime. Sockets
 * are real (loopback, to a scripted fake server or to a port nothing listens on); every timer and
 * every jitter draw goes through the FakeClock, and tick() is called by hand as the pool's sweep
 * would, so each deadline is checked to the millisecond.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { codecFor } from '../../src/codec/registry.js';
import { parseConfig } from '../../src/config/load.js';
import type { PoolConfig } from '../../src/config/schema.js';
import type { Connection, ResponseTarget } from '../../src/pool/connection.js';
import type { ServerHealth } from '../../src/pool/health.js';
import { ServerPool } from '../../src/pool/server-pool.js';
import { Cleanup } from '../helpers/cleanup.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { quietLog } from '../helpers/proxy.js';
import { freePort, waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const PING = '*1\r\n$4\r\nPING\r\n';

/**
 * A scripted server that understands only PING (all poolside sends without AUTH or SELECT). It
 * answers +PONG while `answering`; silenced, it reads and drops everything with the socket open.
 * pause() holds the replies instead, as a SIGSTOPped server does, and resume() sends them all.
 */
class PingServer {
  answering = true;
  /** What each PING is answered with, e.g. `-BUSY …` for a server running a long script. */
  reply = '+PONG\r\n';
  /** PINGs received, answered or not. */
  pings = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #paused = false;
  readonly #held = new Map<net.Socket, string>();

  private constructor(server: net.Server) {
    this.#server = server;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        this.#sockets.delete(socket);
        this.#held.delete(socket);
      });
      let pending = '';
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString('latin1');
        let replies = '';
        while (pending.startsWith(PING)) {
          pending = pending.slice(PING.length);
          this.pings++;
          if (this.answering) replies += this.reply;
        }
        if (pending.length >= PING.length && !PING.startsWith(pending)) throw new Error(`PingServer got more than PING: ${JSON.stringify(pending)}`);
        if (replies === '') return;
        if (this.#paused) this.#held.set(socket, (this.#held.get(socket) ?? '') + replies);
        else socket.write(replies);
      });
    });
  }

  static async start(port = 0): Promise<PingServer> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return new PingServer(server);
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    for (const [socket, replies] of this.#held) socket.write(replies);
    this.#held.clear();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function poolConfig(port: number, pool: Record<string, unknown>): PoolConfig {
  const doc = { admin: false, pools: { p: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: [`127.0.0.1:${port}`], ...pool } } };
  return parseConfig(YAML.stringify(doc), 'test.yaml').pools[0];
}

interface Harness {
  server: ServerPool;
  /** Health kinds in the order the server went through them. */
  kinds: ServerHealth['kind'][];
}

function serverPool(config: PoolConfig, clock: FakeClock): Harness {
  const kinds: ServerHealth['kind'][] = ['starting'];
  const server: ServerPool = new ServerPool(config.servers[0], config, codecFor('redis'), clock, quietLog(), {
    onConnectionReady() {},
    onInternalError(error: unknown) {
      throw error;
    },
    onHealthChange(_server, _before, after) {
      if (kinds[kinds.length - 1] !== after.kind) kinds.push(after.kind);
    },
    // One server: when it is ejected, every server of the pool is.
    everyServerEjected: () => server.health.kind === 'ejected',
  });
  cleanup.add(server, (s) => s.close());
  return { server, kinds };
}

async function pingServer(port = 0): Promise<PingServer> {
  return cleanup.add(await PingServer.start(port), (s) => s.close());
}

function ready(server: ServerPool): number {
  const { idle, active } = server.stats().connections;
  return idle + active;
}

const ignore: ResponseTarget = { onResponse() {}, onFailure() {} };

/** Moves the clock to `at` and runs the server's periodic duties there, as the pool's sweep does. */
function sweepAt(clock: FakeClock, server: ServerPool, at: number): void {
  clock.advanceTo(at);
  server.tick(clock.now());
}

describe('ServerPool refill', () => {
  it('backs off exponentially between failed connects, one connect at a time, up to backoff.max', async () => {
    const port = await freePort(); // nothing listens: every connect is refused
    const clock = new FakeClock({ random: () => 0.5 }); // jitter factor exactly 1
    const config = poolConfig(port, {
      connections: { min: 2, max: 4 },
      connect: { timeout: '1s', backoff: { initial: '100ms', max: '800ms' } },
      eject: { after_failures: 50, for: '1s' },
    });
    const { server } = serverPool(config, clock);
    server.start();
    // Not failing yet: both missing connections are opened at once.
    expect(server.stats().connections.connecting).toBe(2);
    await waitFor(() => server.counters.connectFailures === 2, 'both first connects refused');
    expect(server.health).toMatchObject({ kind: 'failing', failures: 2 });

    const delays: number[] = [];
    for (let attempt = 3; attempt <= 8; attempt++) {
      const timers = clock.pending();
      // Exactly one thing scheduled: the refill. No connect is in progress while it waits.
      expect(timers).toHaveLength(1);
      expect(server.stats().connections.connecting).toBe(0);
      delays.push(timers[0].ms);
      clock.advanceTo(timers[0].due - 1);
      expect(server.stats().connections.connecting).toBe(0);
      clock.advance(1);
      // Single-flight: one connect, although min wants two.
      expect(server.stats().connections.connecting).toBe(1);
      await waitFor(() => server.counters.connectFailures === attempt, `connect attempt ${attempt} refused`);
    }
    // failures = n ⇒ initial × 2^(n-1), capped at max.
    expect(delays).toEqual([200, 400, 800, 800, 800, 800]);
    expect(server.counters.connectionsOpened).toBe(8);
    expect(server.counters.connectionsClosed.connect_failed).toBe(8);
    expect(server.counters.ejections).toBe(0);
  });

  it('jitters each backoff within ±20% of its nominal delay', async () => {
    const port = await freePort();
    const clock = new FakeClock({ seed: 12345 });
    const config = poolConfig(port, {
      connections: { min: 1, max: 1 },
      connect: { timeout: '1s', backoff: { initial: '100ms', max: '1600ms' } },
      eject: { after_failures: 50, for: '1s' },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    const ratios: number[] = [];
    for (let failures = 1; failures <= 8; failures++) {
      await waitFor(() => server.counters.connectFailures === failures, `connect attempt ${failures} refused`);
      const [timer] = clock.pending();
      const nominal = Math.min(1600, 100 * 2 ** (failures - 1));
      ratios.push(timer.ms / nominal);
      clock.advanceTo(timer.due);
    }
    for (const ratio of ratios) {
      expect(ratio).toBeGreaterThanOrEqual(0.8);
      expect(ratio).toBeLessThanOrEqual(1.2);
    }
    // Jittered, not constant.
    expect(new Set(ratios.map((r) => r.toFixed(6))).size).toBeGreaterThan(4);
  });

  it('gives up a connect that never completes after connect.timeout, counted as a connect failure', async () => {
    const silent = await pingServer();
    silent.answering = false; // accepts, reads the init PING, never answers
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(silent.port, {
      connections: { min: 1, max: 1 },
      connect: { timeout: '300ms', backoff: { initial: '100ms', max: '1s' } },
      eject: { after_failures: 5, for: '1s' },
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => silent.pings === 1, 'the init PING reaching the server');
    clock.advance(299);
    expect(server.stats().connections.connecting).toBe(1);
    expect(server.counters.connectFailures).toBe(0);
    clock.advance(1);
    expect(server.stats().connections.connecting).toBe(0);
    expect(server.counters.connectFailures).toBe(1);
    expect(server.counters.connectionsClosed.connect_failed).toBe(1);
    expect(server.health).toMatchObject({ kind: 'failing', failures: 1, lastError: 'connect timeout after 300ms' });
  });
});

describe('ServerPool ejection', () => {
  it('ejects after eject.after_failures failed connects, probes after backoff.initial, doubles the wait after each failed probe up to eject.for, and comes back up', async () => {
    const port = await freePort();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(port, {
      connections: { min: 1, max: 2 },
      connect: { timeout: '1s', backoff: { initial: '100ms', max: '800ms' } },
      eject: { after_failures: 3, for: '1s' },
    });
    const { server, kinds } = serverPool(config, clock);
    server.start();
    for (let failures = 1; failures < 3; failures++) {
      await waitFor(() => server.counters.connectFailures === failures, `connect attempt ${failures} refused`);
      clock.runNext();
    }
    await waitFor(() => server.counters.connectFailures === 3, 'third connect refused');
    const ejectedAt = clock.now();
    expect(server.health).toMatchObject({ kind: 'ejected', until: ejectedAt + 100, failures: 3, probes: 0 });
    expect(server.counters.ejections).toBe(1);
    // The pool's only server: with nowhere else to go, requests wait for it (panic routing).
    expect(server.hopeful).toBe(true);
    // Nothing is retried while ejected.
    expect(clock.pending()).toEqual([]);

    sweepAt(clock, server, ejectedAt + 99);
    expect(server.health.kind).toBe('ejected');
    sweepAt(clock, server, ejectedAt + 100);
    expect(server.health).toMatchObject({ kind: 'probing', failures: 3 });
    // The ejection was the wait: the probe connects at once, bounded only by connect.timeout.
    expect(server.stats().connections.connecting).toBe(1);
    expect(clock.pending().map((t) => t.ms)).toEqual([1000]);

    // Each failed probe doubles the wait for the next one, up to eject.for; none counts as a new ejection.
    const waits: number[] = [];
    for (let probe = 1; probe <= 5; probe++) {
      await waitFor(() => server.counters.connectFailures === 3 + probe, `probe ${probe} refused`);
      const health = server.health;
      if (health.kind !== 'ejected') throw new Error(`expected ejected after probe ${probe}, got ${health.kind}`);
      expect(health).toMatchObject({ failures: 3 + probe, probes: probe });
      waits.push(health.until - clock.now());
      if (probe < 5) sweepAt(clock, server, health.until);
    }
    expect(waits).toEqual([200, 400, 800, 1000, 1000]);
    expect(server.counters.ejections).toBe(1);

    // The server comes back: the next probe connects and the pool refills to min.
    const revived = await pingServer(port);
    const last = server.health;
    if (last.kind !== 'ejected') throw new Error('expected ejected');
    sweepAt(clock, server, last.until);
    expect(server.health.kind).toBe('probing');
    expect(server.stats().connections.connecting).toBe(1);
    await waitFor(() => server.health.kind === 'up' && ready(server) === 1, 'server back up with min connections');
    expect(revived.pings).toBe(1);
    expect(kinds.slice(0, 5)).toEqual(['starting', 'failing', 'ejected', 'probing', 'ejected']);
    expect(kinds[kinds.length - 1]).toBe('up');
  });
});

describe('ServerPool heartbeats', () => {
  it('evicts idle connections after heartbeat.misses unanswered heartbeats, exactly interval + misses × timeout after they went idle', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '500ms', timeout: '100ms', misses: 2, jitter: '20%' },
      eject: { after_failures: 2, for: '1s' },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => server.stats().connections.idle === 2, 'two ready connections');
    const idleSince = clock.now();
    fake.answering = false;

    sweepAt(clock, server, idleSince + 499);
    expect(server.stats().inflight).toBe(0);
    sweepAt(clock, server, idleSince + 500);
    expect(server.stats().inflight).toBe(2); // one heartbeat on each
    await waitFor(() => fake.pings === 4, 'heartbeats reaching the server');

    sweepAt(clock, server, idleSince + 599);
    expect(server.counters.heartbeatFailures.timeout).toBe(0);
    sweepAt(clock, server, idleSince + 600);
    expect(server.counters.heartbeatFailures.timeout).toBe(2);
    // One heartbeat out per connection: a second PING behind an unanswered one would prove nothing.
    expect(server.stats().inflight).toBe(2);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(0);

    sweepAt(clock, server, idleSince + 699);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(0);
    sweepAt(clock, server, idleSince + 700);
    expect(server.counters.heartbeatFailures.timeout).toBe(4);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(2);
    expect(ready(server)).toBe(0);
    // Each eviction counts against the server: two in a row eject it, first probe after backoff.initial.
    expect(server.health).toMatchObject({ kind: 'ejected', until: idleSince + 700 + 100, failures: 2 });
    expect(server.counters.ejections).toBe(1);
  });

  // A connect that completes while the server is ejected is ignored by nextHealth; when the
  // ejection ends, the probe is a new connect (connects in progress, not connections, are
  // single-flight), so the server does come back, and only then.
  it('keeps a server ejected by heartbeats out until its probe although it thaws at once, then probes it back up to min', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '500ms', timeout: '100ms', misses: 2 },
      eject: { after_failures: 2, for: '1s' },
      connect: { timeout: '5s', backoff: { initial: '100ms', max: '800ms' } },
      max_lifetime: 0,
    });
    const { server, kinds } = serverPool(config, clock);
    server.start();
    await waitFor(() => server.stats().connections.idle === 2, 'two ready connections');
    const idleSince = clock.now();
    fake.pause(); // frozen: reads, answers nothing, sockets open
    sweepAt(clock, server, idleSince + 500);
    sweepAt(clock, server, idleSince + 600);
    sweepAt(clock, server, idleSince + 700);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(2);
    const health = server.health;
    expect(health).toMatchObject({ kind: 'ejected', until: idleSince + 700 + 100 });
    if (health.kind !== 'ejected') return;

    fake.resume(); // thawed: whatever was asked meanwhile is answered now
    await waitFor(() => server.stats().connections.connecting === 0, 'the connect pending since the eviction settled');
    expect(server.health.kind).toBe('ejected');
    sweepAt(clock, server, health.until - 1);
    expect(server.health.kind).toBe('ejected');

    // From then on: probing, then a probe connect after the backoff, then up and back at min.
    sweepAt(clock, server, health.until);
    expect(server.health.kind).toBe('probing');
    for (let step = 0; step < 40 && !(server.health.kind === 'up' && ready(server) === 2); step++) {
      sweepAt(clock, server, clock.now() + 50);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(server.health.kind).toBe('up');
    expect(ready(server)).toBe(2);
    expect(kinds).toEqual(['starting', 'up', 'failing', 'ejected', 'probing', 'up']);
  });

  it('heartbeats every idle sibling at once when one connection to the server is evicted', async () => {
    const fake = await pingServer();
    // The first connection to become ready beats at 250ms, the second at ~1750ms.
    const draws = [0, 0.999];
    const clock = new FakeClock({ random: () => draws.shift() ?? 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '1s', timeout: '100ms', misses: 2, jitter: '75%' },
      eject: { after_failures: 5, for: '1s' },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => server.stats().connections.idle === 2, 'two ready connections');
    const t0 = clock.now();
    fake.answering = false;
    for (const at of [250, 350]) sweepAt(clock, server, t0 + at);
    expect(server.stats().inflight).toBe(1); // the first heartbeat; its miss sends no second one
    sweepAt(clock, server, t0 + 450);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(1);
    // The sibling was due at ~1750ms; the eviction made it beat now.
    expect(server.stats().inflight).toBe(1);
    for (const at of [550, 650]) sweepAt(clock, server, t0 + at);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(2);
  });

  it('keeps connections whose heartbeats are answered, and records the success', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 2, max: 2 },
      heartbeat: { interval: '500ms', timeout: '100ms', misses: 1 },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => server.stats().connections.idle === 2, 'two ready connections');
    for (let beat = 1; beat <= 5; beat++) {
      clock.advance(500);
      server.tick(clock.now());
      expect(server.stats().inflight).toBe(2);
      await waitFor(() => server.stats().inflight === 0, `heartbeat ${beat} answered`);
      clock.advance(50);
      server.tick(clock.now());
    }
    expect(fake.pings).toBe(2 + 2 * 5);
    expect(server.counters.heartbeatFailures).toEqual({ timeout: 0, error: 0 });
    expect(server.counters.lastHeartbeatSuccess).toBeGreaterThan(0);
    expect(server.counters.heartbeatDuration.count).toBe(10);
    // Round trips are measured on the clock, which stood still between each heartbeat and its reply.
    expect(server.counters.heartbeatDuration.sum).toBe(0);
    expect(server.counters.lastHeartbeatSuccess * 1000).toBeCloseTo(clock.epochMs() - 50, 3);
    expect(server.stats().connections.idle).toBe(2);
    expect(server.health.kind).toBe('up');
  });
});

describe('ServerPool and a busy server', () => {
  const BUSY = '-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n';

  it('keeps a connection whose heartbeats are answered BUSY: the server answered, so it is alive', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 1, max: 1 },
      heartbeat: { interval: '500ms', timeout: '100ms', misses: 1 },
      eject: { after_failures: 1, for: '1s' },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 1, 'a ready connection');
    fake.reply = BUSY;
    for (let beat = 1; beat <= 3; beat++) {
      clock.advance(500);
      server.tick(clock.now());
      expect(server.stats().inflight).toBe(1);
      await waitFor(() => server.stats().inflight === 0, `heartbeat ${beat} answered BUSY`);
      clock.advance(50);
      server.tick(clock.now());
    }
    expect(server.counters.heartbeatFailures).toEqual({ timeout: 0, error: 0 });
    expect(server.counters.heartbeatDuration.count).toBe(3);
    expect(server.counters.connectionsClosed.heartbeat_failed).toBe(0);
    expect(ready(server)).toBe(1);
    expect(server.health.kind).toBe('up');
  });

  it('closes a new connection whose setup is answered BUSY as server_busy, backs off, and never counts it against health', async () => {
    const fake = await pingServer();
    fake.reply = BUSY;
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 2, max: 2 },
      connect: { timeout: '1s', backoff: { initial: '100ms', max: '800ms' } },
      eject: { after_failures: 1, for: '1s' },
      max_lifetime: 0,
    });
    const { server, kinds } = serverPool(config, clock);
    server.start();
    await waitFor(() => server.counters.connectionsClosed.server_busy === 2, 'both first connects answered BUSY');
    const delays: number[] = [];
    for (let attempt = 3; attempt <= 5; attempt++) {
      const timers = clock.pending();
      expect(timers).toHaveLength(1); // the backoff; one connect at a time while busy
      delays.push(timers[0].ms);
      clock.advanceTo(timers[0].due);
      expect(server.stats().connections.connecting).toBe(1);
      await waitFor(() => server.counters.connectionsClosed.server_busy === attempt, `connect ${attempt} answered BUSY`);
    }
    expect(delays).toEqual([200, 400, 800]);
    expect(server.counters.connectFailures).toBe(5);
    expect(server.counters.ejections).toBe(0);
    expect(kinds).toEqual(['starting']);

    // The script ends: the next connect succeeds and the pool refills to min at once.
    fake.reply = '+PONG\r\n';
    clock.runNext();
    await waitFor(() => ready(server) === 2, 'back at min connections');
    expect(server.health.kind).toBe('up');
  });
});

describe('ServerPool exclusive connects', () => {
  it('wait the server backoff, one at a time, and count their failures against health (generic-pool retries create() at once)', async () => {
    const port = await freePort(); // nothing listens: every connect is refused
    const clock = new FakeClock({ random: () => 0.5 });
    const QUEUE_TIMEOUT_MS = 1500;
    const config = poolConfig(port, {
      connections: { min: 0, max: 2 },
      connect: { timeout: '1s', backoff: { initial: '100ms', max: '800ms' } },
      eject: { after_failures: 50, for: '1s' },
      queue: { timeout: `${QUEUE_TIMEOUT_MS}ms` },
    });
    const { server } = serverPool(config, clock);
    server.start();
    const t0 = clock.now();
    const holder = { onLeaseLost: () => {}, onPush: () => {} };
    const acquired = server.acquireExclusive(holder).then(
      () => 'acquired',
      (err: Error) => err.message,
    );
    await waitFor(() => server.counters.connectFailures === 1, 'the first exclusive connect refused');
    const napping = (): Promise<number> => waitFor(() => clock.pending().length > 0, 'create() waiting on the clock', 1000, 1);
    await napping();
    // However often generic-pool calls create() again, no connect is made until the backoff passes.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.counters.connectionsOpened).toBe(1);

    clock.advanceTo(t0 + 99);
    expect(server.counters.connectionsOpened).toBe(1);
    clock.advanceTo(t0 + 100);
    await waitFor(() => server.counters.connectFailures === 2, 'the second connect, after 100ms, refused');
    // Second failure: 200ms, waited in naps of at most backoff.initial.
    await napping();
    clock.advanceTo(t0 + 200);
    await napping();
    expect(server.counters.connectionsOpened).toBe(2);
    clock.advanceTo(t0 + 300);
    await waitFor(() => server.counters.connectFailures === 3, 'the third connect, 200ms later, refused');
    expect(server.counters.connectionsOpened).toBe(3);
    expect(server.health).toMatchObject({ kind: 'failing', failures: 3 });
    expect(server.counters.connectionsClosed.connect_failed).toBe(3);
    expect(await acquired).toMatch(/timeout|timed out/i);
    // generic-pool's clear() waits for a create() still napping on the fake clock: let it finish.
    for (let i = 0; i < 50 && clock.pending().length > 0; i++) {
      clock.runNext();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });
});

describe('ServerPool request deadlines', () => {
  it('runs a request deadline from its write, not from the idle time before it, and evicts without counting against health', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, { connections: { min: 1, max: 1 }, heartbeat: false, request_timeout: '500ms', max_lifetime: 0 });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 1, 'a ready connection');
    sweepAt(clock, server, clock.now() + 10_000); // idle far longer than request_timeout
    fake.answering = false;
    const conn = server.pickConnection();
    if (conn === null) throw new Error('no ready connection');
    const failed: string[] = [];
    conn.send(Buffer.from(PING), { onResponse() {}, onFailure: (reason) => failed.push(reason) });
    const writtenAt = clock.now();
    await waitFor(() => fake.pings === 2, 'the request reaching the server');
    sweepAt(clock, server, writtenAt + 499);
    expect(conn.ready).toBe(true);
    expect(failed).toEqual([]);
    // Past the deadline at one tick, and still at the next (the event loop read the socket in between).
    sweepAt(clock, server, writtenAt + 500);
    expect(conn.ready).toBe(true);
    sweepAt(clock, server, writtenAt + 510);
    expect(conn.ready).toBe(false);
    expect(failed).toEqual(['REQUEST_TIMEOUT']);
    expect(server.counters.connectionsClosed.request_timeout).toBe(1);
    // Slow, not gone: the server's health is untouched, and the refill reconnects at once.
    expect(server.health.kind).toBe('up');
    expect(server.stats().connections.connecting).toBe(1);
  });
});

describe('ServerPool request deadlines after a blocked event loop', () => {
  it('does not blame a reply that waits unread in the socket when a tick runs late', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, { connections: { min: 1, max: 1 }, heartbeat: false, request_timeout: '500ms', max_lifetime: 0 });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 1, 'a ready connection');
    fake.pause();
    const conn = server.pickConnection();
    if (conn === null) throw new Error('no ready connection');
    const outcome: string[] = [];
    conn.send(Buffer.from(PING), { onResponse: () => outcome.push('answered'), onFailure: (reason) => outcome.push(reason) });
    const writtenAt = clock.now();
    await waitFor(() => fake.pings === 2, 'the request reaching the server');
    // The reply is sent now, but this tick runs before the event loop gets to read it, as a
    // sweep does when the loop was blocked past the deadline.
    fake.resume();
    sweepAt(clock, server, writtenAt + 600);
    expect(outcome).toEqual([]);
    await waitFor(() => outcome.length > 0, 'the reply read');
    sweepAt(clock, server, writtenAt + 610);
    expect(outcome).toEqual(['answered']);
    expect(conn.ready).toBe(true);
    expect(server.counters.connectionsClosed.request_timeout).toBe(0);
  });
});

describe('ServerPool lifetime', () => {
  /** Opens one connection above min: the ready one gets 16 requests on the wire, then a pick grows the pool. */
  async function growToTwo(server: ServerPool): Promise<void> {
    const busy = server.pickConnection();
    if (busy === null) throw new Error('no ready connection');
    for (let i = 0; i < 16; i++) busy.send(Buffer.from(PING), ignore);
    await new Promise((resolve) => setImmediate(resolve)); // written: on the wire
    server.pickConnection();
    expect(server.stats().connections.connecting).toBe(1);
    await waitFor(() => ready(server) === 2 && server.stats().inflight === 0, 'a second connection, ready and idle');
  }

  it('closes an idle connection above min after idle_timeout (heartbeats off)', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, { connections: { min: 1, max: 4 }, idle_timeout: '2s', heartbeat: false, max_lifetime: 0 });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 1, 'one ready connection');
    await growToTwo(server);
    server.tick(clock.now()); // the sweep notes the last responses: idle from here
    const idleSince = clock.now();
    sweepAt(clock, server, idleSince + 1999);
    expect(ready(server)).toBe(2);
    sweepAt(clock, server, idleSince + 2000);
    expect(ready(server)).toBe(1);
    expect(server.counters.connectionsClosed.idle_timeout).toBe(1);
    clock.advance(10_000);
    server.tick(clock.now());
    expect(ready(server)).toBe(1); // never below min
  });

  it('closes an idle connection above min after idle_timeout even though its heartbeats are answered', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, {
      connections: { min: 1, max: 4 },
      idle_timeout: '2s',
      heartbeat: { interval: '500ms', timeout: '100ms' },
      max_lifetime: 0,
    });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 1, 'one ready connection');
    await growToTwo(server);
    server.tick(clock.now());
    const idleSince = clock.now();
    // The sweep every 50ms for 3s, each heartbeat answered before the next sweep.
    while (clock.now() < idleSince + 3000 && ready(server) === 2) {
      clock.advance(50);
      server.tick(clock.now());
      await waitFor(() => server.stats().inflight === 0, 'heartbeats answered');
    }
    expect(fake.pings).toBeGreaterThan(4); // heartbeats did run meanwhile
    expect(server.counters.connectionsClosed.idle_timeout).toBe(1);
    expect(ready(server)).toBe(1);
    // Heartbeats are not use: the connection closes one sweep after idle_timeout, not later.
    expect(clock.now() - idleSince).toBeLessThanOrEqual(2000 + 50);
  });

  it('replaces a connection past max_lifetime only once its replacement is ready: never zero ready connections', async () => {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, { connections: { min: 1, max: 2 }, max_lifetime: '1s', heartbeat: false });
    const { server } = serverPool(config, clock);
    server.start();
    const openedAt = clock.now();
    await waitFor(() => ready(server) === 1, 'one ready connection');
    sweepAt(clock, server, openedAt + 999);
    expect(server.counters.connectionsOpened).toBe(1);
    sweepAt(clock, server, openedAt + 1000);
    // Past its lifetime: the replacement opens now, the old one keeps serving meanwhile.
    expect(server.counters.connectionsOpened).toBe(2);
    expect(server.stats().connections).toEqual({ idle: 1, active: 0, connecting: 1 });
    expect(server.pickConnection()).not.toBeNull();
    server.tick(clock.now());
    expect(ready(server)).toBe(1);
    expect(server.counters.connectionsClosed.max_lifetime).toBe(0);
    await waitFor(() => ready(server) === 2, 'replacement ready');
    server.tick(clock.now());
    expect(server.counters.connectionsClosed.max_lifetime).toBe(1);
    expect(server.stats().connections).toEqual({ idle: 1, active: 0, connecting: 0 });
  });
});

describe('ServerPool picking a shared connection', () => {
  /** Two ready connections (max 3) to a PING server, heartbeats and lifetimes off. */
  async function twoReadyConnections(pool: Record<string, unknown> = {}): Promise<{ fake: PingServer; clock: FakeClock; server: ServerPool }> {
    const fake = await pingServer();
    const clock = new FakeClock({ random: () => 0.5 });
    const config = poolConfig(fake.port, { connections: { min: 2, max: 3 }, heartbeat: false, max_lifetime: 0, ...pool });
    const { server } = serverPool(config, clock);
    server.start();
    await waitFor(() => ready(server) === 2, 'two ready connections');
    return { fake, clock, server };
  }

  it('packs requests onto the first connection until it has 16 on the wire, then the next; the pool grows only when every connection is that full', async () => {
    const { fake, server } = await twoReadyConnections();
    fake.pause(); // nothing is answered: what is in flight stays in flight
    const picked: Connection[] = [];
    for (let i = 0; i < 33; i++) {
      const conn = server.pickConnection();
      if (conn === null) throw new Error('no ready connection');
      picked.push(conn);
      conn.send(Buffer.from(PING), ignore);
      // Written at the end of the turn: on the wire from then on. (Requests of one turn all go to
      // one connection, whatever it has queued: the next test.)
      await new Promise((resolve) => setImmediate(resolve));
    }
    const first = picked[0] as Connection;
    const second = picked[16] as Connection;
    expect(second).not.toBe(first);
    expect(picked.slice(0, 16).every((c) => c === first)).toBe(true);
    expect(picked.slice(16, 32).every((c) => c === second)).toBe(true);
    // Both full: the 33rd goes to the least busy on the wire, and a third connection is opened.
    expect(server.stats().connections.connecting).toBe(1);
    await waitFor(() => fake.pings >= 2 + 33, 'every request on the wire');
    fake.resume();
    await waitFor(() => server.stats().inflight === 0, 'all answered');
    await waitFor(() => ready(server) === 3, 'the third connection ready');
    // Idle again: the first connection takes requests first.
    expect(server.pickConnection()).toBe(first);
  });

  it('sends every request queued in one turn on one connection, in one write, however many there are', async () => {
    const { server } = await twoReadyConnections();
    const picked = new Set<Connection>();
    for (let i = 0; i < 40; i++) {
      const conn = server.pickConnection();
      if (conn === null) throw new Error('no ready connection');
      picked.add(conn);
      conn.send(Buffer.from(PING), ignore);
    }
    expect(picked.size).toBe(1);
    expect(server.stats().connections.connecting).toBe(0);
    await waitFor(() => server.stats().inflight === 0, 'all answered');
  });

  it('does not put a new request behind one the server has left unanswered past request_timeout/2 when another connection is idle', async () => {
    const { fake, clock, server } = await twoReadyConnections({ request_timeout: '1s' });
    fake.pause(); // a slow script: nothing is answered
    const stuck = server.pickConnection();
    if (stuck === null) throw new Error('no ready connection');
    stuck.send(Buffer.from(PING), ignore);
    await waitFor(() => fake.pings >= 3, 'the slow request on the wire');
    sweepAt(clock, server, clock.now() + 600);
    // 600 ms into a request_timeout of 1 s: a request put behind it is evicted with it (SERVER_ERROR
    // for a write) when the deadline passes; before packing it went to the idle connection.
    expect(server.pickConnection()).not.toBe(stuck);
    // A stalled connection is no reason to open another one.
    expect(server.stats().connections.connecting).toBe(0);
    fake.resume();
    await waitFor(() => server.stats().inflight === 0, 'all answered');
  });
});
