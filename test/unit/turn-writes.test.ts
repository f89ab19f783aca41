import { describe, expect, it } from 'vitest';
import { flushAtEndOfTurn, sendQueuedWrites } from '../../src/util/turn-writes.js';

const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('turn writes', () => {
  it('runs the queued flushes once, in order, at the end of the turn', async () => {
    const ran: string[] = [];
    flushAtEndOfTurn(() => ran.push('a'));
    flushAtEndOfTurn(() => ran.push('b'));
    expect(ran).toEqual([]);
    await endOfTurn();
    expect(ran).toEqual(['a', 'b']);
    await endOfTurn();
    expect(ran).toEqual(['a', 'b']);
  });

  it('sendQueuedWrites runs them now, and the end of the turn has nothing left to run', async () => {
    const ran: string[] = [];
    flushAtEndOfTurn(() => ran.push('a'));
    sendQueuedWrites();
    expect(ran).toEqual(['a']);
    sendQueuedWrites();
    await endOfTurn();
    expect(ran).toEqual(['a']);
    // Queued again after the early send: the end of the turn still comes for it.
    flushAtEndOfTurn(() => ran.push('b'));
    await endOfTurn();
    expect(ran).toEqual(['a', 'b']);
  });

  it('a flush that queues another (one connection failing over to the next) is run in the same call', () => {
    const ran: string[] = [];
    flushAtEndOfTurn(() => {
      ran.push('a');
      flushAtEndOfTurn(() => ran.push('b'));
    });
    sendQueuedWrites();
    expect(ran).toEqual(['a', 'b']);
  });

  it('a flush that throws does not strand the ones behind it', async () => {
    const ran: string[] = [];
    flushAtEndOfTurn(() => {
      throw new Error('boom');
    });
    flushAtEndOfTurn(() => ran.push('b'));
    expect(() => sendQueuedWrites()).toThrow('boom');
    expect(ran).toEqual([]);
    await endOfTurn();
    expect(ran).toEqual(['b']);
  });
});

/** A connection's side of the contract: one flush queued per batch, its flag cleared when it runs. */
class FakeConnection {
  #scheduled = false;
  #out: string[] = [];
  readonly written: string[] = [];
  /** Runs inside the next flush, once (what a write might set off synchronously). */
  duringFlush: (() => void) | null = null;

  send(bytes: string): void {
    this.#out.push(bytes);
    if (!this.#scheduled) {
      this.#scheduled = true;
      flushAtEndOfTurn(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    this.written.push(...this.#out);
    this.#out = [];
    const during = this.duringFlush;
    this.duringFlush = null;
    during?.();
  };
}

describe('turn writes re-entered', () => {
  it('sendQueuedWrites called from inside a flush strands no connection queued after it', async () => {
    const [a, b, c] = [new FakeConnection(), new FakeConnection(), new FakeConnection()];
    a.send('a1');
    b.send('b1');
    a.duringFlush = () => {
      sendQueuedWrites();
      c.send('c1');
    };
    sendQueuedWrites();
    await endOfTurn();
    expect([a.written, b.written, c.written]).toEqual([['a1'], ['b1'], ['c1']]);
    // And c's next batch is written too: its "scheduled" flag did not stay set.
    c.send('c2');
    await endOfTurn();
    expect(c.written).toEqual(['c1', 'c2']);
  });

});
