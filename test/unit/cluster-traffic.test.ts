/**
 * The checker of the cluster fault tests (test/helpers/cluster-traffic.ts) has teeth: against an
 * in-memory store that answers honestly it sees no wrong answer, a write that fails and may or may
 * not have run is allowed either way, and a store that loses an acknowledged write or runs an
 * INCR twice, or runs a client's pipeline out of order, is caught.
 */
import { expect, it } from 'vitest';
import { ClusterTraffic, NoReply } from '../helpers/cluster-traffic.js';
import type { Connector, TrafficReport } from '../helpers/cluster-traffic.js';
import { RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';

type Fault = 'none' | 'maybe-ran' | 'lost-ack' | 'double-incr' | 'no-reply' | 'reorder';

/** Every `every`-th write gets `fault`. */
function fakeStore(fault: Fault, every = 7): Connector {
  const data = new Map<string, string>();
  let writes = 0;
  const run = (args: string[]): RespValue => {
    const [cmd, ...rest] = args;
    if (cmd === 'GET') return data.get(rest[0]) ?? null;
    if (cmd === 'MGET') return rest.map((k) => data.get(k) ?? null);
    if (cmd === 'SET') {
      data.set(rest[0], rest[1]);
      return 'OK';
    }
    if (cmd === 'INCR') {
      const n = Number(data.get(rest[0]) ?? 0) + 1;
      data.set(rest[0], String(n));
      return n;
    }
    return new RespError(`ERR unknown ${cmd}`);
  };
  const one = (args: string[]): RespValue | NoReply => {
    if (args[0] !== 'SET' && args[0] !== 'INCR') return run(args);
    if (++writes % every !== 0) return run(args);
    switch (fault) {
      case 'none':
        return run(args);
      case 'maybe-ran':
        if (writes % 2 === 0) run(args);
        return new RespError('ERR poolside SERVER_ERROR connection lost');
      case 'no-reply':
        if (writes % 2 === 0) run(args);
        return new NoReply('timed out');
      case 'lost-ack':
        return args[0] === 'SET' ? 'OK' : run(args);
      case 'double-incr':
        if (args[0] === 'INCR') run(args);
        return run(args);
      case 'reorder':
        return run(args);
    }
  };
  return async () => ({
    async send(batch) {
      // A macrotask per batch, as a socket gives: the test's own timers must get to run.
      await new Promise((resolve) => setImmediate(resolve));
      // 'reorder': a pipeline runs last command first, its replies still given in order.
      if (fault === 'reorder') return batch.map((args) => () => one(args)).reverse().map((f) => f()).reverse();
      return batch.map(one);
    },
    close: () => {},
  });
}

async function drive(fault: Fault, pipelineDepth = 1): Promise<TrafficReport> {
  const traffic = ClusterTraffic.start({ clients: 4, connect: fakeStore(fault), keysPerClient: 4, hotSlots: [42], crossSlotMget: true, pipelineDepth });
  await traffic.flowing(3000);
  return traffic.stop();
}

it('finds nothing wrong with an honest store, pipelined or not', async () => {
  for (const depth of [1, 4]) {
    const report = await drive('none', depth);
    expect(report.wrong).toEqual([]);
    expect(report.errors).toEqual([]);
    expect(Object.values(report.byOp).every((n) => n > 0)).toBe(true);
  }
});

it('allows a failed write to have run or not, and nothing more', async () => {
  for (const fault of ['maybe-ran', 'no-reply'] as const) {
    const report = await drive(fault);
    expect(report.wrong, fault).toEqual([]);
    expect(report.errors.length, fault).toBeGreaterThan(0);
  }
});

it('catches a lost acknowledged write, an INCR run twice, and a pipeline run out of order', async () => {
  expect((await drive('lost-ack')).wrong.length).toBeGreaterThan(0);
  expect((await drive('double-incr')).wrong.length).toBeGreaterThan(0);
  expect((await drive('reorder', 4)).wrong.length).toBeGreaterThan(0);
});
