/**
 * What one pool allows each of its clients to make poolside hold: unsent replies (ClientOutput)
 * and requests framed but not yet answered (InputBudget). One per pool, shared by its sessions,
 * so the warnings about clients cut for breaking a limit are logged at most once a second per
 * pool however many clients break it at once.
 */
import type { PoolConfig } from '../config/schema.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/log.js';

/** Why a client was cut: it left too many replies unread, or sent too much it had not been answered for. */
export type OverflowCause = 'output_hard' | 'output_stalled' | 'input_hard';

/** The counters ClientLimits increments; PoolCounters has them. */
export interface OverflowCounters {
  /** Clients closed for their unread replies (output_hard, output_stalled). */
  clientsOverflowed: number;
  /** Clients closed for the requests they sent and had not been answered for (input_hard). */
  clientsInputOverflowed: number;
}

const MESSAGES: Record<OverflowCause, string> = {
  output_hard: 'client closed: replies queued behind the one being written passed clients.output_buffer.hard',
  output_stalled: 'client closed: it read none of its replies for clients.output_buffer.soft_seconds',
  input_hard: 'client closed: requests it sent and was not yet answered for passed clients.input_buffer.hard',
};

export class ClientLimits {
  readonly clock: Clock;
  readonly outputSoftBytes: number;
  readonly outputHardBytes: number;
  readonly outputSoftMs: number;
  readonly inputSoftBytes: number;
  readonly inputHardBytes: number;
  readonly #pool: string;
  readonly #log: Logger;
  readonly #counters: OverflowCounters;
  #loggedAt = -Infinity;
  #unlogged = 0;

  constructor(config: Pick<PoolConfig, 'name' | 'clients'>, clock: Clock, log: Logger, counters: OverflowCounters) {
    this.clock = clock;
    this.outputSoftBytes = config.clients.outputSoftBytes;
    this.outputHardBytes = config.clients.outputHardBytes;
    this.outputSoftMs = config.clients.outputSoftMs;
    this.inputSoftBytes = config.clients.inputSoftBytes;
    this.inputHardBytes = config.clients.inputHardBytes;
    this.#pool = config.name;
    this.#log = log;
    this.#counters = counters;
  }

  /** Counts a client cut for `cause`, and warns at most once a second with how many were not logged. */
  overflowed(cause: OverflowCause, held: number): void {
    if (cause === 'input_hard') this.#counters.clientsInputOverflowed++;
    else this.#counters.clientsOverflowed++;
    const now = this.clock.now();
    if (now - this.#loggedAt < 1000) {
      this.#unlogged++;
      return;
    }
    this.#log.warn(MESSAGES[cause], { pool: this.#pool, reason: cause, held, unlogged_since_last: this.#unlogged });
    this.#loggedAt = now;
    this.#unlogged = 0;
  }
}
