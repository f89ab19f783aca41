/**
 * memcached's meta protocol through poolside: mg/ms/md/ma/me/mn with their flags, base64 keys, and
 * quiet mode, where a request has a reply or none depending on its outcome. poolside never sends
 * `q` to a shared connection, so many clients' quiet pipelines on ONE connection each get exactly
 * the replies a direct connection gives them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc, McClient } from '../helpers/mc-client.js';
import { startMemcachedAndProxy } from '../helpers/proxy.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('memcached meta protocol through poolside', () => {
  it('answers meta commands with their flags, opaque tokens and base64 keys', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    expect(await c.call('ms k 2 T0 F5 c\r\nhi\r\n')).toMatch(/^HD c\d+\r\n$/);
    expect(await c.call('mg k v f k O42\r\n')).toBe('VA 2 f5 kk O42\r\nhi\r\n');
    expect(await c.call('mg zz v O7 k\r\n')).toBe('EN O7 kzz\r\n');
    expect(await c.call('ma cnt N0 J10 v\r\n')).toBe('VA 2\r\n10\r\n');
    expect(await c.call('ma cnt D5 MD v\r\n')).toBe('VA 1\r\n5\r\n');
    expect(await c.call('md cnt\r\n')).toBe('HD\r\n');
    expect(await c.call('md cnt\r\n')).toBe('NF\r\n');
    expect(await c.call('me k\r\n')).toMatch(/^ME k exp=-1 /);
    // base64 keys: "Zm9v" is "foo"; a text get of foo sees what the binary-keyed ms stored.
    expect(await c.call('ms Zm9v 3 b\r\nbar\r\n')).toBe('HD\r\n');
    expect(await c.call('get foo\r\n')).toBe('VALUE foo 0 3\r\nbar\r\nEND\r\n');
    expect(await c.call('mg Zm9v b v k\r\n')).toBe('VA 3 kZm9v b\r\nbar\r\n');
    expect(await c.call('mn\r\n')).toBe('MN\r\n');
    expect(await c.call('mg k zzz\r\n')).toBe('CLIENT_ERROR invalid flag\r\n');
  });

  it('quiet mode: only what q does not hide comes back, mn ends the pipeline', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    c.write('ms a 1 q\r\nx\r\nms b 1 q MA\r\ny\r\nmg a v q k\r\nmg b v q k\r\nmg zz v q k\r\nmd zz q O1\r\nmd a q\r\nma n q\r\nma n q N0 J3\r\nmg n v q\r\nms c 1 C1 q\r\nz\r\nmn\r\n');
    expect(await c.take(6)).toEqual([
      'NS\r\n', // append to a missing key: not stored, told
      'VA 1 ka\r\nx\r\n',
      'NF O1\r\n',
      'NF\r\n', // ma of a missing key without N
      'VA 1\r\n3\r\n',
      'NF\r\n', // ms with a CAS of a missing key
    ]);
    expect(await c.reply()).toBe('MN\r\n');
    expect(c.pending).toBe(0);
  });

  it('many clients mixing noreply, quiet and normal requests on ONE shared connection each get exactly their answers', async () => {
    const { port, proxy } = await startMemcachedAndProxy(cleanup, { connections: { min: 1, max: 1 } });
    const clients: McClient[] = [];
    for (let i = 0; i < 12; i++) clients.push(await connectMc(cleanup, port));
    const rounds = 40;
    await Promise.all(
      clients.map(async (c, i) => {
        for (let r = 0; r < rounds; r++) {
          const k = `c${i}k${r % 3}`;
          const v = `v${i}-${r}`;
          // noreply set, quiet ms, quiet mg hit and miss, quiet md miss, a normal get, mn.
          c.write(
            `set ${k} 0 0 ${v.length} noreply\r\n${v}\r\n` +
              `ms ${k}x ${v.length} q\r\n${v}\r\n` +
              `mg ${k}x v q k\r\nmg ${k}missing v q\r\nmd ${k}missing q\r\n` +
              `incr ${k} 1 noreply\r\nget ${k}\r\nmn\r\n`,
          );
          const replies = await c.take(4);
          expect(replies).toEqual([`VA ${v.length} k${k}x\r\n${v}\r\n`, 'NF\r\n', `VALUE ${k} 0 ${v.length}\r\n${v}\r\nEND\r\n`, 'MN\r\n']);
        }
      }),
    );
    for (const c of clients) expect(c.pending).toBe(0);
    // Everything went over the one connection, which was never evicted.
    const server = proxy.stats()[0].servers[0];
    expect(server.connections.idle + server.connections.active).toBe(1);
  });
});
