/**
 * A Clock for unit tests: time stands still until the test moves it with advance(), which fires
 * every timer that falls due on the way, in due order, with now() reading each timer's due time
 * while it runs. Randomness is a seeded PRNG (or a fixed value), so jitter is reproducible.
 */
import type { Clock, Timer } from '../../src/util/clock.js';

class FakeTimer implements Timer {
  constructor(readonly id: number) {}
  unref(): void {}
}

interface Entry {
  id: number;
  due: number;
  /** The delay it was scheduled with (the period, for an interval). */
  ms: number;
  repeat: boolean;
  fn: () => void;
}

/** A timer that has not fired (or an interval not cleared), as the test sees it. */
export interface PendingTimer {
  due: number;
  ms: number;
  repeat: boolean;
}

/** mulberry32: small, fast, and good enough to spread jitter draws over [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FakeClockOptions {
  /** Initial now(); not 0, so code that treats 0 as "never" is not fooled. */
  start?: number;
  /** Seed of the PRNG behind random(). */
  seed?: number;
  /** A source for random() instead of the seeded PRNG, e.g. `() => 0.5` for no jitter at all. */
  random?: () => number;
}

export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  readonly #timers = new Map<number, Entry>();
  #random: () => number;
  /** How many times random() was called. */
  draws = 0;

  constructor(options: FakeClockOptions = {}) {
    this.#now = options.start ?? 1_000_000;
    this.#random = options.random ?? seededRandom(options.seed ?? 1);
  }

  now(): number {
    return this.#now;
  }

  /** Wall time moves with the fake clock, from a fixed epoch so timestamps are reproducible. */
  epochMs(): number {
    return 1_700_000_000_000 + this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.#add(fn, ms, false);
  }

  clearTimeout(timer: Timer): void {
    if (timer instanceof FakeTimer) this.#timers.delete(timer.id);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.#add(fn, ms, true);
  }

  clearInterval(timer: Timer): void {
    this.clearTimeout(timer);
  }

  random(): number {
    this.draws++;
    const value = this.#random();
    if (!(value >= 0 && value < 1)) throw new Error(`FakeClock random source returned ${value}, outside [0, 1)`);
    return value;
  }

  /** Replaces the random source from now on. */
  setRandom(source: () => number): void {
    this.#random = source;
  }

  /** Moves time forward by `ms`, firing every timer due up to the new time, in order. */
  advance(ms: number): void {
    if (ms < 0) throw new Error(`cannot move time backwards (${ms}ms)`);
    this.advanceTo(this.#now + ms);
  }

  advanceTo(target: number): void {
    if (target < this.#now) throw new Error(`cannot move time backwards to ${target} from ${this.#now}`);
    for (let next = this.#nextDue(target); next !== null; next = this.#nextDue(target)) {
      this.#now = next.due;
      if (next.repeat) next.due += Math.max(1, next.ms);
      else this.#timers.delete(next.id);
      next.fn();
    }
    this.#now = target;
  }

  /** Moves time to the earliest pending timer and fires it (and any others due then). False if none. */
  runNext(): boolean {
    const next = this.#nextDue(Infinity);
    if (next === null) return false;
    this.advanceTo(next.due);
    return true;
  }

  /** Timers still pending, earliest first. */
  pending(): PendingTimer[] {
    return [...this.#timers.values()].sort((a, b) => a.due - b.due || a.id - b.id).map(({ due, ms, repeat }) => ({ due, ms, repeat }));
  }

  #add(fn: () => void, ms: number, repeat: boolean): Timer {
    const id = this.#nextId++;
    const delay = Math.max(0, ms);
    this.#timers.set(id, { id, due: this.#now + delay, ms: delay, repeat, fn });
    return new FakeTimer(id);
  }

  #nextDue(limit: number): Entry | null {
    let best: Entry | null = null;
    for (const entry of this.#timers.values()) {
      if (entry.due > limit) continue;
      if (best === null || entry.due < best.due || (entry.due === best.due && entry.id < best.id)) best = entry;
    }
    return best;
  }
}
