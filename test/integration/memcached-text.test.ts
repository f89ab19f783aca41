/**
 * memcached's text protocol through poolside against a real memcached: every command answered as
 * memcached answers it, noreply never reaching the shared connection, and the client's mistakes
 * answered as memcached answers them while the client stays connected.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc, mcPoolsideReason } from '../helpers/mc-client.js';
import { waitFor } from '../helpers/servers.js';
import { startMemcachedAndProxy } from '../helpers/proxy.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('memcached text protocol through poolside', () => {
  it('answers storage, retrieval, delete, arithmetic, touch and version as memcached does', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    expect(await c.call('set a 5 0 3\r\nabc\r\n')).toBe('STORED\r\n');
    expect(await c.call('get a\r\n')).toBe('VALUE a 5 3\r\nabc\r\nEND\r\n');
    expect(await c.call('add a 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('add b 0 0 1\r\nx\r\n')).toBe('STORED\r\n');
    expect(await c.call('replace zz 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('append a 0 0 2\r\nde\r\n')).toBe('STORED\r\n');
    expect(await c.call('prepend a 0 0 2\r\nxy\r\n')).toBe('STORED\r\n');
    expect(await c.call('get a b zz\r\n')).toBe('VALUE a 5 7\r\nxyabcde\r\nVALUE b 0 1\r\nx\r\nEND\r\n');
    const gets = await c.call('gets a\r\n');
    const unique = /^VALUE a 5 7 (\d+)\r\n/.exec(gets)?.[1];
    expect(unique).toBeDefined();
    expect(await c.call(`cas a 0 0 1 ${unique}\r\nz\r\n`)).toBe('STORED\r\n');
    expect(await c.call(`cas a 0 0 1 ${unique}\r\nw\r\n`)).toBe('EXISTS\r\n');
    expect(await c.call('set n 0 0 2\r\n10\r\n')).toBe('STORED\r\n');
    expect(await c.call('incr n 5\r\n')).toBe('15\r\n');
    expect(await c.call('decr n 20\r\n')).toBe('0\r\n');
    expect(await c.call('incr zz 1\r\n')).toBe('NOT_FOUND\r\n');
    expect(await c.call('touch a 100\r\n')).toBe('TOUCHED\r\n');
    expect(await c.call('gat 100 a\r\n')).toBe('VALUE a 0 1\r\nz\r\nEND\r\n');
    expect(await c.call('gats 100 a\r\n')).toMatch(/^VALUE a 0 1 \d+\r\nz\r\nEND\r\n$/);
    expect(await c.call('delete a\r\n')).toBe('DELETED\r\n');
    expect(await c.call('delete a\r\n')).toBe('NOT_FOUND\r\n');
    expect(await c.call('version\r\n')).toMatch(/^VERSION \d+\.\d+/);
    expect(await c.call('verbosity 0\r\n')).toBe('OK\r\n');
    expect(await c.call('stats\r\n')).toMatch(/^STAT pid \d+\r\n[\s\S]*\r\nEND\r\n$/);
    expect(await c.call('flush_all\r\n')).toBe('OK\r\n');
    expect(await c.call('get b\r\n')).toBe('END\r\n');
  });

  it('never sends noreply to the server: the client hears nothing, the connection stays in step', async () => {
    const { port } = await startMemcachedAndProxy(cleanup, { connections: { min: 1, max: 1 } });
    const c = await connectMc(cleanup, port);
    c.write(
      'set a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\ny\r\nappend a 0 0 1 noreply\r\nz\r\nincr zz 1 noreply\r\n' +
        'delete b noreply\r\ntouch a 10 noreply\r\nverbosity 0 noreply\r\nset c 0 0 1 noreply\r\nbad\r\nget a\r\n',
    );
    // The bad data chunk is hidden by noreply; its leftover `\n` is a line of its own: ERROR.
    expect(await c.take(2)).toEqual(['ERROR\r\n', 'VALUE a 0 2\r\nxz\r\nEND\r\n']);
    expect(await c.call('mn\r\n')).toBe('MN\r\n');
  });

  it('answers the client\'s mistakes as memcached does and keeps the client', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    const long = 'k'.repeat(251);
    c.write(`set ${long} 0 0 1\r\nx\r\nget ${long}\r\nset k 0 0 1\r\nxy\r\nset k 0 0 -1\r\nfoo\r\nGET k\r\n\r\nset k 0 0 1 2 3\r\nversion\r\n`);
    expect(await c.take(10)).toEqual([
      'CLIENT_ERROR bad command line format\r\n',
      'ERROR\r\n', // the data line read as a command, as memcached reads it
      'CLIENT_ERROR bad command line format\r\n',
      'CLIENT_ERROR bad data chunk\r\n',
      'ERROR\r\n', // the `\n` after the chunk's last two bytes
      'CLIENT_ERROR bad command line format\r\n',
      'ERROR\r\n', // foo
      'ERROR\r\n', // GET: commands are lower case
      'ERROR\r\n', // an empty line
      'ERROR\r\n', // too many tokens for set
    ]);
    expect(await c.reply()).toMatch(/^VERSION /);
  });

  it('closes the client on quit without a reply, after answering what came before', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    c.write('set a 0 0 1\r\nx\r\nquit\r\nget a\r\n');
    expect(await c.reply()).toBe('STORED\r\n');
    expect(await c.closesWithin(2000)).toBe(true);
    expect(c.pending).toBe(0);
  });

  it('frames every stats form, refuses server administration, and keeps the client', async () => {
    const { port } = await startMemcachedAndProxy(cleanup);
    const c = await connectMc(cleanup, port);
    expect(await c.call('set a 0 0 1\r\nx\r\n')).toBe('STORED\r\n');
    c.write('stats items\r\nstats slabs\r\nstats settings\r\nstats sizes\r\nstats conns\r\nstats detail on\r\nstats detail dump\r\nstats cachedump 1 10\r\nstats reset\r\nstats bogus\r\nversion\r\n');
    const [items, slabs, settings, sizes, conns, detailOn, dump, cachedump, reset, bogus, version] = await c.take(11);
    expect(items).toMatch(/^STAT items:1:number 1\r\n[\s\S]*END\r\n$/);
    expect(slabs).toMatch(/^STAT 1:chunk_size [\s\S]*END\r\n$/);
    expect(settings).toMatch(/^STAT maxbytes [\s\S]*END\r\n$/);
    expect(sizes).toMatch(/^STAT [\s\S]*END\r\n$/);
    expect(conns).toMatch(/^STAT [\s\S]*END\r\n$/);
    expect(detailOn).toBe('OK\r\n');
    expect(dump).toMatch(/END\r\n$/);
    // Which LRU segment memcached dumps depends on the item's age: ITEM lines or none, then END.
    expect(cachedump).toMatch(/^(ITEM [^\r]*\r\n)*END\r\n$/);
    expect(reset).toBe('RESET\r\n');
    expect(bogus).toBe('ERROR\r\n');
    expect(version).toMatch(/^VERSION /);
    for (const command of ['shutdown', 'watch', 'lru_crawler metadump all', 'slabs reassign 1 2', 'cache_memlimit 100']) {
      expect(mcPoolsideReason(await c.call(`${command}\r\n`)), command).toBe('UNSUPPORTED_COMMAND');
    }
    expect(await c.call('get a\r\n')).toBe('VALUE a 0 1\r\nx\r\nEND\r\n');
  });

  it('gives each client a connection of its own with lease: exclusive, and the same answers', async () => {
    const { port, proxy } = await startMemcachedAndProxy(cleanup, { lease: 'exclusive', exclusive: { max: 4 } });
    const first = await connectMc(cleanup, port);
    const second = await connectMc(cleanup, port);
    first.write('set a 0 0 1 noreply\r\nx\r\nmg a v q\r\nmg zz v q\r\nmn\r\n');
    expect(await first.take(2)).toEqual(['VA 1\r\nx\r\n', 'MN\r\n']);
    expect(await second.call('get a\r\n')).toBe('VALUE a 0 1\r\nx\r\nEND\r\n');
    expect(proxy.stats()[0].servers[0].exclusive.borrowed).toBe(2);
    first.destroy();
    second.destroy();
    await waitFor(() => proxy.stats()[0].servers[0].exclusive.borrowed === 0, 'both exclusive connections back');
  });
});
