/**
 * Server health (the closed union and its one transition function), the jitter every timer is
 * spread with, and the fake clock the pool unit tests drive them with.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isHopeful, nextHealth, probeDelay } from '../../src/pool/health.js';
import type { EjectPolicy, HealthEvent, ServerHealth } from '../../src/pool/health.js';
import { jittered } from '../../src/util/clock.js';
import { FakeClock, seededRandom } from '../helpers/fake-clock.js';

const policy: EjectPolicy = { afterFailures: 3, forMs: 1000, probeAfterMs: 100 };
const NOW = 50_000;

function fail(health: ServerHealth, now = NOW, error = 'boom'): ServerHealth {
  return nextHealth(health, { kind: 'failed', error }, policy, now);
}

function tick(health: ServerHealth, now: number): ServerHealth {
  return nextHealth(health, { kind: 'tick', now }, policy, now);
}

function connected(health: ServerHealth, now = NOW): ServerHealth {
  return nextHealth(health, { kind: 'connected' }, policy, now);
}

describe('nextHealth', () => {
  it('goes from starting to up on the first connection', () => {
    expect(connected({ kind: 'starting' })).toEqual({ kind: 'up' });
  });

  it('returns the same object when nothing changes, so callers can compare by identity', () => {
    const up: ServerHealth = { kind: 'up' };
    expect(connected(up)).toBe(up);
    expect(tick(up, NOW)).toBe(up);
    const failing: ServerHealth = { kind: 'failing', failures: 1, lastError: 'x' };
    expect(tick(failing, NOW + 1e9)).toBe(failing);
    const probing: ServerHealth = { kind: 'probing', failures: 3, probes: 0, lastError: 'x' };
    expect(tick(probing, NOW + 1e9)).toBe(probing);
  });

  it('counts consecutive failures and keeps the last error until after_failures is reached', () => {
    let health: ServerHealth = { kind: 'up' };
    health = fail(health, NOW, 'refused');
    expect(health).toEqual({ kind: 'failing', failures: 1, lastError: 'refused' });
    health = fail(health, NOW + 10, 'timeout');
    expect(health).toEqual({ kind: 'failing', failures: 2, lastError: 'timeout' });
  });

  it('counts failures from starting as well as from up', () => {
    expect(fail({ kind: 'starting' })).toEqual({ kind: 'failing', failures: 1, lastError: 'boom' });
  });

  it('ejects at exactly after_failures consecutive failures, until the first probe at now + probe_after', () => {
    let health: ServerHealth = { kind: 'up' };
    for (let i = 1; i < policy.afterFailures; i++) {
      health = fail(health, NOW + i);
      expect(health.kind).toBe('failing');
    }
    health = fail(health, NOW + 100, 'last straw');
    expect(health).toEqual({ kind: 'ejected', until: NOW + 100 + policy.probeAfterMs, failures: policy.afterFailures, probes: 0, lastError: 'last straw' });
  });

  it('ejects on the first failure when after_failures is 1', () => {
    const one: EjectPolicy = { afterFailures: 1, forMs: 500, probeAfterMs: 50 };
    expect(nextHealth({ kind: 'up' }, { kind: 'failed', error: 'e' }, one, NOW)).toEqual({ kind: 'ejected', until: NOW + 50, failures: 1, probes: 0, lastError: 'e' });
  });

  it('starts counting again from one after a connection succeeded', () => {
    let health: ServerHealth = { kind: 'up' };
    health = fail(fail(health));
    expect(health).toMatchObject({ kind: 'failing', failures: 2 });
    health = connected(health);
    expect(health).toEqual({ kind: 'up' });
    expect(fail(health)).toMatchObject({ kind: 'failing', failures: 1 });
  });

  it('ignores further failures while ejected: the ejection is not extended', () => {
    const ejected: ServerHealth = { kind: 'ejected', until: NOW + 1000, failures: 3, probes: 0, lastError: 'x' };
    expect(fail(ejected, NOW + 500)).toBe(ejected);
  });

  it('stays ejected when a connect begun before the ejection completes during it: only eject.for and a probe bring it back', () => {
    const ejected: ServerHealth = { kind: 'ejected', until: NOW + 1000, failures: 3, probes: 0, lastError: 'x' };
    expect(connected(ejected, NOW + 10)).toBe(ejected);
  });

  it('stays ejected until its probe time has passed, then probes, keeping the failure and probe counts', () => {
    const ejected: ServerHealth = { kind: 'ejected', until: NOW + 1000, failures: 3, probes: 0, lastError: 'x' };
    expect(tick(ejected, NOW + 999)).toBe(ejected);
    expect(tick(ejected, NOW + 1000)).toEqual({ kind: 'probing', failures: 3, probes: 0, lastError: 'x' });
    expect(tick(ejected, NOW + 5000)).toEqual({ kind: 'probing', failures: 3, probes: 0, lastError: 'x' });
  });

  it('re-ejects at once when the probe fails, even below after_failures, waiting twice as long for the next probe', () => {
    const generous: EjectPolicy = { afterFailures: 10, forMs: 700, probeAfterMs: 100 };
    const probing: ServerHealth = { kind: 'probing', failures: 1, probes: 0, lastError: 'x' };
    expect(nextHealth(probing, { kind: 'failed', error: 'still down' }, generous, NOW)).toEqual({
      kind: 'ejected',
      until: NOW + 200,
      failures: 2,
      probes: 1,
      lastError: 'still down',
    });
  });

  it('probes early and often: probe_after, doubling after each failed probe, never waiting longer than eject.for', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 60].map((probes) => probeDelay(probes, policy))).toEqual([100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    // Walked through nextHealth: the waits between probes of a server that stays down.
    let health: ServerHealth = { kind: 'up' };
    let now = NOW;
    for (let i = 0; i < policy.afterFailures; i++) health = fail(health, now);
    const waits: number[] = [];
    for (let probe = 0; probe < 6; probe++) {
      if (health.kind !== 'ejected') throw new Error(`expected ejected, got ${health.kind}`);
      waits.push(health.until - now);
      now = health.until;
      health = tick(health, now);
      expect(health.kind).toBe('probing');
      health = fail(health, (now += 3));
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('returns to up when the probe connects', () => {
    expect(connected({ kind: 'probing', failures: 4, probes: 2, lastError: 'x' })).toEqual({ kind: 'up' });
  });

  it('walks the whole cycle: up, failing, ejected, probing, re-ejected, probing, up', () => {
    let health: ServerHealth = { kind: 'up' };
    let now = NOW;
    for (let i = 0; i < policy.afterFailures; i++) health = fail(health, (now += 10));
    expect(health).toMatchObject({ kind: 'ejected', until: now + policy.probeAfterMs });
    health = tick(health, (now += policy.probeAfterMs));
    expect(health.kind).toBe('probing');
    health = fail(health, (now += 50));
    expect(health).toMatchObject({ kind: 'ejected', until: now + 2 * policy.probeAfterMs, failures: policy.afterFailures + 1, probes: 1 });
    health = tick(health, (now += 2 * policy.probeAfterMs));
    expect(health.kind).toBe('probing');
    health = connected(health, (now += 5));
    expect(health).toEqual({ kind: 'up' });
  });

  it('treats every state but ejected as worth waiting for', () => {
    expect(isHopeful({ kind: 'starting' }, false)).toBe(true);
    expect(isHopeful({ kind: 'up' }, false)).toBe(true);
    expect(isHopeful({ kind: 'failing', failures: 2, lastError: '' }, false)).toBe(true);
    expect(isHopeful({ kind: 'probing', failures: 2, probes: 0, lastError: '' }, false)).toBe(true);
    expect(isHopeful({ kind: 'ejected', until: 0, failures: 2, probes: 0, lastError: '' }, false)).toBe(false);
  });

  it('treats an ejected server as worth waiting for when every server of the pool is ejected (panic)', () => {
    expect(isHopeful({ kind: 'ejected', until: 0, failures: 2, probes: 0, lastError: '' }, true)).toBe(true);
  });

  it('over any sequence of events: ejected only after after_failures failures in a row, for exactly eject.for, then probing until a connection or a failure', () => {
    const event = fc.oneof(
      fc.constant<HealthEvent>({ kind: 'connected' }),
      fc.constant<HealthEvent>({ kind: 'failed', error: 'e' }),
      fc.integer({ min: 0, max: 600 }).map<HealthEvent>((dt) => ({ kind: 'tick', now: dt })),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 1000 }), fc.array(event, { maxLength: 60 }), (afterFailures, forMs, events) => {
        const p: EjectPolicy = { afterFailures, forMs, probeAfterMs: Math.max(1, Math.floor(forMs / 10)) };
        let health: ServerHealth = { kind: 'starting' };
        let now = 0;
        // Failures since the last successful connection, as an outside observer counts them.
        let streak = 0;
        for (const e of events) {
          // Ticks carry a step forward; time never goes back.
          const ev: HealthEvent = e.kind === 'tick' ? { kind: 'tick', now: (now += e.now) } : e;
          const before = health;
          health = nextHealth(before, ev, p, now);
          if (ev.kind === 'connected') {
            if (before.kind === 'ejected') {
              // Out for eject.for whatever completes meanwhile.
              expect(health).toBe(before);
              continue;
            }
            streak = 0;
            expect(health.kind).toBe('up');
            continue;
          }
          if (ev.kind === 'failed' && before.kind !== 'ejected') streak++;
          if (health.kind === 'ejected') {
            // A failed probe re-ejects below the limit only in appearance: probing keeps the count that ejected it.
            expect(streak).toBeGreaterThanOrEqual(afterFailures);
            expect(health.until).toBeLessThanOrEqual(now + forMs);
            if (before.kind !== 'ejected') expect(health.until).toBe(now + probeDelay(health.probes, p));
            if (before.kind === 'probing') expect(health.probes).toBe(before.probes + 1);
            if (before.kind !== 'probing' && before.kind !== 'ejected') expect(health.probes).toBe(0);
            expect(health.failures).toBe(streak);
          }
          if (health.kind === 'failing') {
            expect(health.failures).toBe(streak);
            expect(health.failures).toBeLessThan(afterFailures);
          }
          if (before.kind === 'ejected' && health.kind !== 'ejected') {
            expect(ev.kind).toBe('tick');
            expect(now).toBeGreaterThanOrEqual(before.until);
            expect(health.kind).toBe('probing');
          }
          if (before.kind === 'ejected' && ev.kind === 'tick' && now >= before.until) expect(health.kind).toBe('probing');
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('jittered', () => {
  const cases = [
    { base: 1000, jitter: 0.2 },
    { base: 300, jitter: 0.5 },
    { base: 5000, jitter: 0.05 },
    { base: 100, jitter: 0.99 },
  ];

  for (const { base, jitter } of cases) {
    it(`spreads ${base}ms ± ${jitter * 100}% uniformly over [base × (1 - jitter), base × (1 + jitter)] across many draws`, () => {
      const clock = new FakeClock({ seed: base });
      const low = base * (1 - jitter);
      const high = base * (1 + jitter);
      const draws = Array.from({ length: 20_000 }, () => jittered(clock, base, jitter));
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      const buckets = new Array<number>(10).fill(0);
      const outside = draws.filter((value) => !(value >= low && value <= high));
      expect(outside).toEqual([]);
      for (const value of draws) {
        min = Math.min(min, value);
        max = Math.max(max, value);
        sum += value;
        buckets[Math.min(9, Math.floor(((value - low) / (high - low)) * 10))]++;
      }
      // Reaches both ends, centres on base, and fills every tenth of the range about evenly.
      expect(min).toBeLessThan(low + (high - low) * 0.01);
      expect(max).toBeGreaterThan(high - (high - low) * 0.01);
      expect(Math.abs(sum / draws.length - base)).toBeLessThan((high - low) * 0.02);
      for (const count of buckets) expect(count).toBeGreaterThan(draws.length / 10 * 0.85);
      expect(clock.draws).toBe(draws.length);
    });
  }

  it('maps the ends of random() to the ends of the range', () => {
    expect(jittered(new FakeClock({ random: () => 0 }), 1000, 0.2)).toBe(800);
    expect(jittered(new FakeClock({ random: () => 0.5 }), 1000, 0.2)).toBe(1000);
    const top = jittered(new FakeClock({ random: () => 1 - Number.EPSILON }), 1000, 0.2);
    // The documented range is closed: floating point may round the top draw up to base × (1 + jitter).
    expect(top).toBeLessThanOrEqual(1200);
    expect(top).toBeGreaterThan(1199.99);
  });

  it('returns base exactly when jitter is 0, whatever random() says', () => {
    const clock = new FakeClock({ seed: 7 });
    for (let i = 0; i < 100; i++) expect(jittered(clock, 250, 0)).toBe(250);
  });
});

describe('FakeClock', () => {
  it('fires timers in due order as time advances, with now() at each due time', () => {
    const clock = new FakeClock({ start: 100 });
    const fired: [string, number][] = [];
    clock.setTimeout(() => fired.push(['b', clock.now()]), 20);
    clock.setTimeout(() => fired.push(['a', clock.now()]), 10);
    const cancelled = clock.setTimeout(() => fired.push(['x', clock.now()]), 15);
    clock.clearTimeout(cancelled);
    clock.advance(9);
    expect(fired).toEqual([]);
    clock.advance(20);
    expect(fired).toEqual([
      ['a', 110],
      ['b', 120],
    ]);
    expect(clock.now()).toBe(129);
    expect(clock.pending()).toEqual([]);
  });

  it('repeats intervals until cleared, and fires timers scheduled by timers within the same advance', () => {
    const clock = new FakeClock({ start: 0 });
    const ticks: number[] = [];
    const interval = clock.setInterval(() => {
      ticks.push(clock.now());
      if (clock.now() === 20) clock.setTimeout(() => ticks.push(-clock.now()), 5);
    }, 10);
    clock.advance(45);
    expect(ticks).toEqual([10, 20, -25, 30, 40]);
    clock.clearInterval(interval);
    clock.advance(100);
    expect(ticks).toHaveLength(5);
  });

  it('draws the same random sequence for the same seed', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const first = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(first);
    expect(Array.from({ length: 5 }, c)).not.toEqual(first);
  });
});
