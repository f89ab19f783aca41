import { describe, expect, it } from 'vitest';
import { handleSignals } from '../../src/lifecycle.js';
import type { SignalledProxy, SignalTarget } from '../../src/lifecycle.js';
import type { ReloadOutcome } from '../../src/admin.js';
import type { DrainResult } from '../../src/proxy.js';
import { quietLog } from '../helpers/proxy.js';

function setup() {
  const handlers = new Map<string, () => void>();
  const exits: number[] = [];
  const target: SignalTarget = {
    on: (signal, listener) => handlers.set(signal, listener),
    exit: (code: number) => {
      exits.push(code);
    },
  };
  let finish: (result: DrainResult) => void = () => {};
  const calls = { drain: 0, reload: 0 };
  const proxy: SignalledProxy = {
    config: { shutdown: { delayMs: 0, timeoutMs: 1000 } },
    clients: 0,
    drain: () => {
      calls.drain++;
      return new Promise<DrainResult>((resolve) => (finish = resolve));
    },
    reloadFromFile: () => {
      calls.reload++;
      return Promise.resolve({ ok: true, status: 200, hash: '', changes: [] } satisfies ReloadOutcome);
    },
  };
  handleSignals(proxy, quietLog(), target);
  const signal = (name: string): void => (handlers.get(name) as () => void)();
  return { signal, exits, calls, finish: (r: DrainResult) => finish(r) };
}

describe('signals', () => {
  it('drains on SIGTERM and exits 0 when the drain ends; a second signal exits 1 at once', async () => {
    const { signal, exits, calls, finish } = setup();
    signal('SIGTERM');
    expect(calls.drain).toBe(1);
    expect(exits).toEqual([]);
    signal('SIGINT');
    expect(exits).toEqual([1]);
    finish({ cutOff: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(exits).toEqual([1, 0]);
  });

  it('reloads on SIGHUP, and not once shutdown began', () => {
    const { signal, calls } = setup();
    signal('SIGHUP');
    expect(calls.reload).toBe(1);
    signal('SIGTERM');
    signal('SIGHUP');
    expect(calls.reload).toBe(1);
  });
});
