/**
 * The edges of drain and reload: how a client is closed between requests (a FIN after its last
 * reply, and a request crossing the close answered DRAINING, not run, never a reset), a busy
 * client of a pool a reload replaced, a drain racing a reload, what a rejected reload leaves
 * behind, and what a retired pool leaves running.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DRAIN_QUIET_MS } from '../../src/session/client-session.js';
import { Cleanup } from '../helpers/cleanup.js';
import { startRedisAndProxy } from '../helpers/proxy.js';
import { poolsideReason, RawClient } from '../helpers/resp-client.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('closing a client between requests', () => {
  it('answers DRAINING, without running it, a request that crosses the drain of an idle client', async () => {
    const { redis, proxy, port } = await startRedisAndProxy(cleanup);
    const c = await RawClient.connect(port);
    cleanup.defer(() => c.destroy());
    expect(await c.call('PING')).toBe('PONG');
    // An idle pconnect worker (quiet past the drain's quiet time) ...
    await waitFor(() => (proxy.clientList().clients[0]?.idleMs ?? 0) >= DRAIN_QUIET_MS, 'the client to be idle', 5000);
    c.send('INCR', 'k'); // ... whose next web request begins ...
    const closing = proxy.drain({ delayMs: 0, timeoutMs: 2000 }); // ... as SIGTERM arrives
    const reply = await c.reply(2000);
    expect(poolsideReason(reply)).toBe('DRAINING');
    expect(String(reply)).toContain('shutting down');
    expect(await c.closesWithin(3000)).toBe(true);
    await closing;
    expect(await redis.command('EXISTS', 'k')).toContain(':0');
  });
});
