/**
 * At most one log line per interval for an event that a client can repeat at will (wrong
 * passwords, refused clients, accept errors): the count goes to a metric, the log gets a sample
 * with how many were not logged.
 */
export class LogThrottle {
  readonly #intervalMs: number;
  #loggedAt = -Infinity;
  #unlogged = 0;

  constructor(intervalMs = 1000) {
    this.#intervalMs = intervalMs;
  }

  /**
   * One event at `now` (ms, any monotonic clock). Returns how many events were not logged since
   * the last line when this one should be logged, or -1 when it should not.
   */
  take(now: number): number {
    if (now - this.#loggedAt < this.#intervalMs) {
      this.#unlogged++;
      return -1;
    }
    const unlogged = this.#unlogged;
    this.#loggedAt = now;
    this.#unlogged = 0;
    return unlogged;
  }
}
