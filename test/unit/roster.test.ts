import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Roster } from '../../src/util/roster.js';

interface Member {
  readonly id: number;
}

describe('Roster', () => {
  it('adds, finds and removes by id; the others keep the order they were added in', () => {
    const roster = new Roster<Member>();
    const [a, b, c] = [{ id: 1 }, { id: 2 }, { id: 3 }];
    roster.add(a);
    roster.add(b);
    roster.add(c);
    expect(roster.size).toBe(3);
    expect(roster.remove(1)).toBe(true);
    expect(roster.remove(1)).toBe(false);
    expect(roster.get(1)).toBeUndefined();
    expect(roster.get(3)).toBe(c);
    expect(roster.get(2)).toBe(b);
    expect(roster.snapshot()).toEqual([b, c]);
    expect(roster.size).toBe(2);
  });

  it('refuses an id that is already a member', () => {
    const roster = new Roster<Member>();
    roster.add({ id: 7 });
    expect(() => roster.add({ id: 7 })).toThrow('id 7 is already a member');
  });

  it('a loop over the snapshot may remove members', () => {
    const roster = new Roster<Member>();
    for (let id = 1; id <= 5; id++) roster.add({ id });
    const seen: number[] = [];
    for (const member of roster.snapshot()) {
      seen.push(member.id);
      roster.remove(member.id);
    }
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5]);
    expect(roster.size).toBe(0);
  });

  it('behaves like a Map from id to member under any adds and removes', () => {
    const op = fc.oneof(
      { arbitrary: fc.record({ add: fc.integer({ min: 1, max: 40 }) }), weight: 10 },
      { arbitrary: fc.record({ remove: fc.integer({ min: 1, max: 40 }) }), weight: 10 },
      { arbitrary: fc.constant({ clear: true as const }), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const roster = new Roster<Member>();
        const model = new Map<number, Member>();
        for (const o of ops) {
          if ('add' in o) {
            if (model.has(o.add)) continue;
            const member = { id: o.add };
            roster.add(member);
            model.set(o.add, member);
          } else if ('remove' in o) {
            expect(roster.remove(o.remove)).toBe(model.delete(o.remove));
          } else {
            roster.clear();
            model.clear();
          }
          expect(roster.size).toBe(model.size);
          // The oldest member (a framed connection's oldest request in flight), as the Map's first.
          expect(roster.first()).toBe(model.values().next().value);
        }
        for (let id = 1; id <= 40; id++) expect(roster.get(id)).toBe(model.get(id));
        // In insertion order, as the Map iterates (CLIENT LIST lists the oldest client first).
        expect(roster.snapshot()).toEqual([...model.values()]);
      }),
    );
  });
});

describe('Roster under churn', () => {
  it('keeps the order and finds every member while most of them come and go', () => {
    const roster = new Roster<Member>();
    const model = new Map<number, Member>();
    let next = 1;
    for (let round = 0; round < 5000; round++) {
      const member = { id: next++ };
      roster.add(member);
      model.set(member.id, member);
      // Mostly the oldest leave (short-lived clients), sometimes one in the middle or the newest.
      const ids = [...model.keys()];
      const leaving = round % 7 === 0 ? ids[ids.length - 1] : round % 3 === 0 ? ids[ids.length >> 1] : ids[0];
      if (model.size > 20 || round % 5 === 0) {
        expect(roster.remove(leaving)).toBe(true);
        model.delete(leaving);
      }
    }
    expect(roster.size).toBe(model.size);
    expect(roster.snapshot()).toEqual([...model.values()]);
    for (const [id, member] of model) expect(roster.get(id)).toBe(member);
  });
});
