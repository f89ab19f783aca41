import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/schema.js';
import { InputBudget, PER_REQUEST_BYTES } from '../../src/session/input-budget.js';
import type { ReadGate } from '../../src/session/input-budget.js';
import { ClientLimits } from '../../src/session/limits.js';
import type { ReadPause } from '../../src/session/output.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { quietLog } from '../helpers/proxy.js';

function budget(soft: number, hard: number) {
  const clock = new FakeClock();
  const log = quietLog();
  const counters = { clientsOverflowed: 0, clientsInputOverflowed: 0 };
  const clients = { ...DEFAULTS.pool.clients, inputSoftBytes: soft, inputHardBytes: hard };
  const limits = new ClientLimits({ name: 'p', clients }, clock, log, counters);
  const events: string[] = [];
  const gate: ReadGate = {
    pauseReads: (reason: ReadPause) => events.push(`pause ${reason}`),
    resumeReads: (reason: ReadPause) => events.push(`resume ${reason}`),
    reset: () => events.push('reset'),
  };
  return { input: new InputBudget(limits, gate), events, counters, log, clock, limits };
}

describe('InputBudget', () => {
  it('pauses reads at soft, checked after a read, and resumes them at half of soft', () => {
    const { input, events } = budget(10 * PER_REQUEST_BYTES, 1 << 20);
    for (let i = 0; i < 9; i++) input.add(0);
    input.check(0);
    expect(events).toEqual([]);
    input.add(0);
    input.check(0);
    input.check(0);
    expect(events).toEqual(['pause input']);
    for (let i = 0; i < 4; i++) input.release(0);
    expect(events).toEqual(['pause input']);
    input.release(0);
    expect(events).toEqual(['pause input', 'resume input']);
    expect(input.held).toBe(5 * PER_REQUEST_BYTES);
  });

  it('counts the incomplete request against hard, resets once, and counts and logs it', () => {
    const { input, events, counters, log } = budget(4096, 8192);
    input.add(1000);
    input.check(8192 - 1000 - PER_REQUEST_BYTES - 1);
    expect(events).toEqual([]);
    input.check(8192 - 1000 - PER_REQUEST_BYTES);
    input.check(10_000);
    expect(events).toEqual(['reset']);
    expect(counters.clientsInputOverflowed).toBe(1);
    expect(log.lines.filter((l) => l.level === 'warn').map((l) => l.fields.reason)).toEqual(['input_hard']);
  });

  it('logs clients cut at most once a second per pool, with how many were not logged', () => {
    const { limits, counters, log, clock } = budget(4096, 8192);
    for (let i = 0; i < 5; i++) limits.overflowed('output_stalled', 1);
    clock.advance(1000);
    limits.overflowed('output_hard', 1);
    expect(counters.clientsOverflowed).toBe(6);
    const warned = log.lines.filter((l) => l.level === 'warn');
    expect(warned.map((l) => [l.fields.reason, l.fields.unlogged_since_last])).toEqual([
      ['output_stalled', 0],
      ['output_hard', 4],
    ]);
  });
});
