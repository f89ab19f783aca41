import { describe, expect, it } from 'vitest';
import { Fifo } from '../../src/util/fifo.js';

describe('Fifo', () => {
  it('holds nothing until the first push, then keeps order through wrap-around and growth', () => {
    const fifo = new Fifo<number>(2);
    expect(fifo.length).toBe(0);
    expect(fifo.peek()).toBeUndefined();
    expect(fifo.shift()).toBeUndefined();
    expect([...fifo]).toEqual([]);
    const expected: number[] = [];
    let next = 0;
    // Interleave pushes and shifts so the ring wraps at every size it grows through.
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < (round % 5) + 1; i++) {
        fifo.push(next);
        expected.push(next++);
      }
      if (round % 2 === 0) expect(fifo.shift()).toBe(expected.shift());
      expect(fifo.length).toBe(expected.length);
      expect(fifo.peek()).toBe(expected[0]);
    }
    expect([...fifo]).toEqual(expected);
    expect(fifo.drain()).toEqual(expected);
    expect(fifo.length).toBe(0);
  });

  it('queues that were never pushed to share nothing they could corrupt', () => {
    const a = new Fifo<string>();
    const b = new Fifo<string>();
    a.push('x');
    expect(b.length).toBe(0);
    expect(b.peek()).toBeUndefined();
    b.push('y');
    expect(a.shift()).toBe('x');
    expect(b.shift()).toBe('y');
  });

  it('clear() forgets everything, and the queue works as new afterwards', () => {
    const fifo = new Fifo<number>(2);
    for (let i = 0; i < 5; i++) fifo.push(i);
    fifo.shift();
    fifo.clear();
    expect(fifo.length).toBe(0);
    expect(fifo.peek()).toBeUndefined();
    expect([...fifo]).toEqual([]);
    const other = new Fifo<number>();
    fifo.push(7);
    fifo.push(8);
    expect(other.length).toBe(0);
    expect(fifo.drain()).toEqual([7, 8]);
  });
});
