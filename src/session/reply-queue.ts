/**
 * A session's replies in request order: every request gets a slot at the tail when it is framed,
 * and replies are written only from the head, as soon as the head is done. A request answered
 * out of order (a fast GET behind a slow EVAL on another server) waits in its slot. A large reply
 * whose slot is at the head is written by the session piece by piece as it arrives; the slot is
 * done, with nothing left to write, only after its last piece, so nothing behind it overtakes it.
 */
import type { Histogram } from '../util/histogram.js';
import type { InputBudget } from './input-budget.js';
import { Fifo } from '../util/fifo.js';
import type { Slot } from './slot.js';

/** Where ReplyQueue.flush stopped (see there). */
export type FlushStop = 'idle' | 'closes' | 'blocking';

export class ReplyQueue {
  /** Most clients (PHP-FPM) have one request out at a time: a small first ring, grown when pipelining. */
  readonly #slots = new Fifo<Slot>(4);
  readonly #duration: Histogram;
  readonly #clock: { now(): number };
  readonly #output: { write(bytes: Buffer): void };
  readonly #input: InputBudget;

  /**
   * `output` gets each reply's bytes in order; `duration` observes framed-to-answered times
   * (`clock`: the pool); `input` counts every request from its slot's push until its reply leaves
   * here. Objects rather than callbacks: no closures per session.
   */
  constructor(duration: Histogram, clock: { now(): number }, output: { write(bytes: Buffer): void }, input: InputBudget) {
    this.#duration = duration;
    this.#clock = clock;
    this.#output = output;
    this.#input = input;
  }

  get length(): number {
    return this.#slots.length;
  }

  /** Whether every reply before `slot` was written: a reply streamed now lands in order. */
  isHead(slot: Slot): boolean {
    return this.#slots.peek() === slot;
  }

  push(slot: Slot): void {
    this.#slots.push(slot);
    this.#input.add(slot.held);
  }

  /**
   * Writes every done slot at the head; `writing` false: the client is gone, replies are dropped.
   * Says where it stopped: 'closes' at a slot that closes the client (Slot.closes): nothing
   * behind it is written, ever; with `endAtBlocking` (the client sent its FIN), 'blocking' at an
   * unanswered blocking command (Slot.blocking: not one queued inside MULTI), where, as Redis at
   * EOF, the client is to be dropped after the replies before it; else 'idle'.
   */
  flush(writing: boolean, endAtBlocking: boolean): FlushStop {
    const slots = this.#slots;
    let now = 0;
    for (let head = slots.peek(); head !== undefined; head = slots.peek()) {
      if (!head.done) return endAtBlocking && head.blocking ? 'blocking' : 'idle';
      if (head.closes) return 'closes';
      slots.shift();
      this.#input.release(head.held);
      if (head.startedAt > 0) {
        // A reply ends when the read that completed it happened: one clock read per server read,
        // not per reply. Replies poolside made itself end now.
        const conn = head.conn;
        let end = conn !== null && conn.lastReadAt >= head.startedAt ? conn.lastReadAt : now;
        if (end === 0) end = now = this.#clock.now();
        this.#duration.observe((end - head.startedAt) / 1000);
      }
      if (writing && !head.silent && head.response.length > 0) this.#output.write(head.response);
    }
    return 'idle';
  }
}
