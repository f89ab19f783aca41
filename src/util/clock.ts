/**
 * Time and randomness as parameters, so unit tests can drive every timer and every jitter with a
 * fake clock. Everything that schedules or jitters takes a Clock; nothing calls Date.now(),
 * setTimeout or Math.random directly.
 */
export interface Timer {
  unref(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Milliseconds since the Unix epoch, for timestamps shown to people and Prometheus. */
  epochMs(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer): void;
  setInterval(fn: () => void, ms: number): Timer;
  clearInterval(timer: Timer): void;
  /** Uniform in [0, 1). */
  random(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  epochMs: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout),
  random: () => Math.random(),
};

/** `base` scaled by a uniform factor in [1 - jitter, 1 + jitter]. */
export function jittered(clock: Pick<Clock, 'random'>, base: number, jitter: number): number {
  return base * (1 - jitter + 2 * jitter * clock.random());
}
