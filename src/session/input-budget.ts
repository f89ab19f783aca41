/**
 * How much one client may make poolside hold on its behalf on the way in: every request from the
 * moment it is framed until its reply leaves the session (held for a connection or a lease, in
 * flight on a connection, or answered and waiting behind an earlier reply), plus the part of a
 * request the decoder holds. Counting until answered, not only while held, matters: a client
 * pinned by `BLPOP key 0` has every later request sent to its exclusive connection, where nothing
 * answers it, and a client that keeps sending would otherwise grow poolside without bound.
 *
 * - soft: the client's reads pause (its requests wait in the kernel and its own buffers) and
 *   resume once what it is owed falls to half of soft.
 * - hard: the client is reset. Reads pause at soft, so only a single chunk of requests or one
 *   large request can get there: keep hard above max_request_size.
 */
import type { ClientLimits } from './limits.js';
import type { ReadPause } from './output.js';

/**
 * What each request costs besides its bytes: the session's record of it and the connection's
 * in-flight entry. Without it a flood of tiny requests would be nearly free.
 */
export const PER_REQUEST_BYTES = 256;

/** The part of ClientOutput the budget drives. */
export interface ReadGate {
  pauseReads(reason: ReadPause): void;
  resumeReads(reason: ReadPause): void;
  reset(): void;
}

export class InputBudget {
  readonly #limits: ClientLimits;
  readonly #gate: ReadGate;
  #held = 0;
  #paused = false;
  #cut = false;

  constructor(limits: ClientLimits, gate: ReadGate) {
    this.#limits = limits;
    this.#gate = gate;
  }

  /** Bytes held now, per-request cost included. */
  get held(): number {
    return this.#held;
  }

  /** A request of `bytes` was framed (or a reply slot queued with no request bytes: 0). */
  add(bytes: number): void {
    this.#held += bytes + PER_REQUEST_BYTES;
  }

  /** The reply to a request added with `bytes` left the session (written, or the client is gone). */
  release(bytes: number): void {
    this.#held -= bytes + PER_REQUEST_BYTES;
    if (this.#paused && this.#held <= this.#limits.inputSoftBytes / 2) {
      this.#paused = false;
      this.#gate.resumeReads('input');
    }
  }

  /**
   * After a read from the client was framed; `partial` is what the decoder holds of an incomplete
   * request. Pauses reads at soft, resets the client at hard.
   */
  check(partial: number): void {
    if (this.#cut) return;
    const held = this.#held;
    if (held + partial >= this.#limits.inputHardBytes) {
      this.#cut = true;
      this.#limits.overflowed('input_hard', held + partial);
      this.#gate.reset();
      return;
    }
    if (!this.#paused && held >= this.#limits.inputSoftBytes) {
      this.#paused = true;
      this.#gate.pauseReads('input');
    }
  }
}
