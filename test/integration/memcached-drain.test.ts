/**
 * A memcached client's requests refused while poolside drains (SIGTERM, or a reload that replaced
 * its pool): the DRAINING refusal must reach the client in the client's own protocol. A binary
 * client gets a binary error with its opaque, never a text line; a text `noreply` request gets
 * nothing, as memcached hides errors under noreply. Found by the attack4 harness
 * (/tmp/attack4/mc-reload.mjs): across a reload, binary clients read "SERVER_ERROR poolside
 * DRAINING …" text, and 16 `set … noreply` + 16 `mg` drew 32 error lines.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Op, Status, binaryRequest } from '../../src/codec/memcached/binary-protocol.js';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMcBinary } from '../helpers/mc-binary-client.js';
import { connectMc, mcPoolsideReason } from '../helpers/mc-client.js';
import { failureCounts, startMemcachedAndProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/**
 * poolside in front of a frozen memcached with one request of the client's in flight (so the drain
 * does not close the client), then draining: what the client sends next is refused.
 */
async function drainingWithOneInFlight<C extends { write(bytes: Buffer | string): void }>(
  connect: (port: number) => Promise<C>,
  inFlight: Buffer | string,
): Promise<{ client: C; proxy: Awaited<ReturnType<typeof startMemcachedAndProxy>>['proxy']; thaw: () => void; drained: Promise<unknown> }> {
  const { memcached, proxy, port } = await startMemcachedAndProxy(cleanup, { request_timeout: '20s' });
  const client = await connect(port);
  await memcached.freeze();
  cleanup.defer(() => memcached.signal('SIGCONT'));
  client.write(inFlight);
  await waitFor(() => proxy.stats()[0].servers[0].inflight === 1, 'the first request in flight');
  const drained = proxy.drain({ delayMs: 0, timeoutMs: 10_000 });
  return { client, proxy, thaw: () => memcached.signal('SIGCONT'), drained };
}

describe('memcached requests refused while draining', () => {
  it('a binary client gets DRAINING as a binary error carrying its opaque', async () => {
    const { client, proxy, thaw, drained } = await drainingWithOneInFlight((port) => connectMcBinary(cleanup, port), binaryRequest({ opcode: Op.GET, opaque: 1, key: 'before' }));
    client.write(binaryRequest({ opcode: Op.GET, opaque: 0x5eed, key: 'after' }));
    await waitFor(() => failureCounts(proxy).DRAINING === 1, 'the second GET refused');
    thaw();
    const [first, refused] = await client.take(2);
    expect([first.opaque, first.status]).toEqual([1, Status.KEY_ENOENT]);
    expect(refused.opcode).toBe(Op.GET);
    expect(refused.opaque).toBe(0x5eed);
    expect(refused.status).toBe(Status.ETMPFAIL);
    expect(refused.value.toString()).toMatch(/^poolside DRAINING /);
    await drained;
  });

  // libmemcached ends a binary multi-get with NOOP (GETKQ…, NOOP): poolside answers NOOP itself,
  // and its refusal had no binary map, so the client read the text line where a binary response was due.
  it('a binary request poolside answers itself (NOOP, an unknown opcode) gets DRAINING as a binary error too', async () => {
    const { client, proxy, thaw, drained } = await drainingWithOneInFlight((port) => connectMcBinary(cleanup, port), binaryRequest({ opcode: Op.GET, opaque: 1, key: 'before' }));
    client.write(Buffer.concat([binaryRequest({ opcode: Op.GETKQ, opaque: 2, key: 'after' }), binaryRequest({ opcode: Op.NOOP, opaque: 3 }), binaryRequest({ opcode: 0x42, opaque: 4 })]));
    await waitFor(() => failureCounts(proxy).DRAINING === 3, 'the three refused');
    thaw();
    const [first, ...refused] = await client.take(4);
    expect([first.opaque, first.status]).toEqual([1, Status.KEY_ENOENT]);
    expect(refused.map((r) => [r.opcode, r.opaque, r.status])).toEqual([
      [Op.GETKQ, 2, Status.ETMPFAIL],
      [Op.NOOP, 3, Status.ETMPFAIL],
      [0x42, 4, Status.ETMPFAIL],
    ]);
    await drained;
  });

  it('a text noreply request refused while draining is answered nothing', async () => {
    const { client, proxy, thaw, drained } = await drainingWithOneInFlight((port) => connectMc(cleanup, port), 'get before\r\n');
    client.write('set k 0 0 1 noreply\r\nx\r\nget k\r\n');
    await waitFor(() => failureCounts(proxy).DRAINING === 2, 'both refused');
    thaw();
    const [first, refused] = await client.take(2);
    expect(first).toBe('END\r\n');
    expect(mcPoolsideReason(refused)).toBe('DRAINING');
    // Nothing else: the noreply set's refusal is not written.
    expect(await client.closesWithin(2000)).toBe(true);
    expect(client.pending).toBe(0);
    await drained;
  });
});
