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
