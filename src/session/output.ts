/**
 * The write side of one client's socket: replies queued in one event-loop turn go out in one
 * write, and a client that does not read its replies is paused, then cut off, so it can never hold
 * poolside's memory or slow a shared connection.
 */
import type net from 'node:net';
import { writeBatch } from '../util/write-batch.js';

export interface OutputLimits {
  softBytes: number;
  hardBytes: number;
}

export interface OutputEvents {
  /** Whether reads may resume once the client drained its replies (not after QUIT or an error). */
  mayResume(): boolean;
  /** Unread replies passed the hard limit: the socket was reset. */
  onOverflow(pending: number): void;
}

export class ClientOutput {
  readonly #socket: net.Socket;
  readonly #limits: OutputLimits;
  readonly #events: OutputEvents;
  #out: Buffer[] = [];
  #paused = false;
  readonly #flush = (): void => this.flush();
  readonly #resume = (): void => {
    this.#paused = false;
    if (!this.#socket.destroyed && this.#events.mayResume()) this.#socket.resume();
  };

  constructor(socket: net.Socket, limits: OutputLimits, events: OutputEvents) {
    this.#socket = socket;
    this.#limits = limits;
    this.#events = events;
  }

  /** Queues reply bytes; everything queued in one turn goes out in one write. */
  write(bytes: Buffer): void {
    this.#out.push(bytes);
    if (this.#out.length === 1) queueMicrotask(this.#flush);
  }

  /** Writes what is queued now. */
  flush(): void {
    const out = this.#out;
    const socket = this.#socket;
    if (out.length === 0 || socket.destroyed) return;
    this.#out = [];
    writeBatch(socket, out);
    const pending = socket.writableLength;
    if (pending >= this.#limits.hardBytes) {
      this.#events.onOverflow(pending);
      // A reset, not a FIN: the replies it never read are discarded, and a client that is not
      // reading would not see a FIN until it read everything before it.
      socket.resetAndDestroy();
    } else if (pending >= this.#limits.softBytes && !this.#paused) {
      // Stop reading its requests until it reads its replies; shared connections never wait for it.
      this.#paused = true;
      socket.pause();
      socket.once('drain', this.#resume);
    }
  }
}
