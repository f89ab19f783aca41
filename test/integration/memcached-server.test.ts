/**
 * The memcached test helpers against a real memcached, no poolside: the server helper starts, kills
 * and restarts it; the raw client frames what memcached answers (single lines, VALUE blocks, meta
 * VA blocks, STAT lists) the way the proxy tests will rely on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectMc } from '../helpers/mc-client.js';
import { startMemcached } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('memcached test helpers', () => {
  it('frames text and meta responses from a real memcached, whole and byte by byte', async () => {
    const mc = await startMemcached(cleanup);
    const client = await connectMc(cleanup, mc.port);
    client.write('set a 5 0 3\r\nabc\r\nset b 0 0 0 noreply\r\n\r\nget a b zz\r\nmg a v f\r\nmg zz v\r\nmn\r\nstats\r\nversion\r\n');
    const [stored, values, va, en, mn, stats, version] = await client.take(7);
    expect(stored).toBe('STORED\r\n');
    expect(values).toBe('VALUE a 5 3\r\nabc\r\nVALUE b 0 0\r\n\r\nEND\r\n');
    expect(va).toBe('VA 3 f5\r\nabc\r\n');
    expect(en).toBe('EN\r\n');
    expect(mn).toBe('MN\r\n');
    expect(stats).toMatch(/^STAT pid \d+\r\n[\s\S]*END\r\n$/);
    expect(version).toMatch(/^VERSION \d/);
    // Byte by byte: the reader resumes anywhere.
    const slow = await connectMc(cleanup, mc.port);
    for (const byte of Buffer.from('get a\r\n')) slow.write(Buffer.from([byte]));
    expect(await slow.reply()).toBe('VALUE a 5 3\r\nabc\r\nEND\r\n');
  });

  it('kills and restarts the server on the same port', async () => {
    const mc = await startMemcached(cleanup);
    expect(await mc.command('set k 0 0 1\r\nx\r\n')).toBe('STORED\r\n');
    expect(await mc.command('stats\r\n')).toMatch(/^STAT pid [\s\S]*\r\nEND\r\n$/);
    await mc.restart();
    expect(await mc.command('get k\r\n')).toBe('END\r\n');
  });
});
