/**
 * The memcached half of fan-out (codec/memcached/fanout.ts): parts built from key subsets, and
 * replies merged without a server: VALUE blocks by key name in the client's order, failed parts as
 * misses, OK from all, STAT lists summed or kept.
 */
import { describe, expect, it } from 'vitest';
import type { ArgView, CommandSpec, FanoutPart } from '../../src/codec/codec.js';
import { memcachedCodec } from '../../src/codec/memcached/codec.js';

/** The request's tokens as an ArgView (a request line without data block). */
function framed<T>(line: string, use: (bytes: Buffer, args: ArgView) => T): T {
  let out: T | undefined;
  memcachedCodec.requestDecoder({ onRequest: (bytes, args) => (out = use(bytes, args)) }, 1 << 20).push(Buffer.from(line, 'latin1'));
  if (out === undefined) throw new Error('no request framed');
  return out;
}

const specOf = (line: string): CommandSpec => framed(line, (bytes, args) => memcachedCodec.classify(bytes, args));
const reply = (keys: number[], text: string): FanoutPart => ({ kind: 'reply', keys, bytes: Buffer.from(text, 'latin1') });
const failed = (keys: number[]): FanoutPart => ({ kind: 'failed', keys, reason: 'REQUEST_TIMEOUT', message: 'no reply within 1s' });
const merge = (line: string, keyCount: number, parts: FanoutPart[]): string =>
  memcachedCodec.mergeReplies(specOf(line), Buffer.from(line, 'latin1'), keyCount, parts).toString('latin1');

describe('memcached fan-out', () => {
  it('marks multi-key retrievals and server-wide commands, and nothing else', () => {
    expect(specOf('get a b\r\n').spread).toBe('keys');
    expect(specOf('gats 10 a b\r\n').spread).toBe('keys');
    expect(specOf('flush_all\r\n').spread).toBe('all');
    expect(specOf('stats\r\n').spread).toBe('all');
    expect(specOf('version\r\n').spread).toBeUndefined();
    expect(specOf('delete a\r\n').spread).toBeUndefined();
  });

  it('builds each part from its keys, gat with its exptime', () => {
    const parts = (line: string, groups: number[][]): string[] =>
      framed(line, (bytes, args) => memcachedCodec.splitRequest(memcachedCodec.classify(bytes, args), bytes, args, groups).map((b) => b.toString('latin1')));
    expect(parts('get a b  c d\r\n', [[0, 2], [1, 3]])).toEqual(['get a c\r\n', 'get b d\r\n']);
    expect(parts('gat 100 a b c\n', [[2], [0, 1]])).toEqual(['gat 100 c\r\n', 'gat 100 a b\r\n']);
  });

  it('merges VALUE blocks in key order by name, repeated keys repeated, misses left out', () => {
    const line = 'get a b c a d\r\n';
    expect(merge(line, 5, [reply([0, 2, 3], 'VALUE a 0 1\r\nA\r\nVALUE a 0 1\r\nA\r\nEND\r\n'), reply([1, 4], 'VALUE d 1 2\r\nDD\r\nEND\r\n')])).toBe(
      'VALUE a 0 1\r\nA\r\nVALUE a 0 1\r\nA\r\nVALUE d 1 2\r\nDD\r\nEND\r\n',
    );
    // A value that looks like protocol is data, framed by its length.
    expect(merge('gets x y\r\n', 2, [reply([1], 'VALUE y 0 5 9\r\nEND\r\n\r\nEND\r\n'), reply([0], 'END\r\n')])).toBe('VALUE y 0 5 9\r\nEND\r\n\r\nEND\r\n');
  });

  it('answers a failed or refusing part\'s keys as misses, and an error only when no part answered', () => {
    const line = 'get a b\r\n';
    expect(merge(line, 2, [reply([0], 'VALUE a 0 1\r\nA\r\nEND\r\n'), failed([1])])).toBe('VALUE a 0 1\r\nA\r\nEND\r\n');
    expect(merge(line, 2, [reply([0], 'VALUE a 0 1\r\nA\r\nSERVER_ERROR out of memory\r\n'), reply([1], 'VALUE b 0 1\r\nB\r\nEND\r\n')])).toBe('VALUE b 0 1\r\nB\r\nEND\r\n');
    expect(merge(line, 2, [failed([0]), failed([1])])).toMatch(/^SERVER_ERROR poolside REQUEST_TIMEOUT get across servers: /);
    expect(merge(line, 2, [reply([0], 'CLIENT_ERROR bad\r\n'), failed([1])])).toBe('CLIENT_ERROR bad\r\n');
    // A block for a key the part did not ask for: that part cannot be trusted.
    expect(merge(line, 2, [reply([0], 'VALUE zz 0 1\r\nZ\r\nEND\r\n'), reply([1], 'VALUE b 0 1\r\nB\r\nEND\r\n')])).toBe('VALUE b 0 1\r\nB\r\nEND\r\n');
  });

  it('wants OK from every server for flush_all and verbosity', () => {
    expect(merge('flush_all\r\n', 0, [reply([], 'OK\r\n'), reply([], 'OK\r\n')])).toBe('OK\r\n');
    expect(merge('flush_all\r\n', 0, [reply([], 'OK\r\n'), failed([])])).toMatch(/^SERVER_ERROR poolside REQUEST_TIMEOUT /);
    expect(merge('verbosity x\r\n', 0, [reply([], 'OK\r\n'), reply([], 'ERROR\r\n')])).toBe('ERROR\r\n');
  });

  it('merges STAT lists: counters summed, identity and sizes from the first server, set-up forms whole', () => {
    const one = 'STAT pid 10\r\nSTAT version 1.6.18\r\nSTAT curr_items 3\r\nSTAT rusage_user 0.1\r\nSTAT total_items 18446744073709551610\r\nEND\r\n';
    const two = 'STAT pid 20\r\nSTAT version 1.6.21\r\nSTAT curr_items 4\r\nSTAT rusage_user 0.2\r\nSTAT total_items 5\r\nEND\r\n';
    expect(merge('stats\r\n', 0, [reply([], one), reply([], two), failed([])])).toBe(
      'STAT pid 10\r\nSTAT version 1.6.18\r\nSTAT curr_items 7\r\nSTAT rusage_user 0.1\r\nSTAT total_items 18446744073709551615\r\nEND\r\n',
    );
    const slab = (used: number): string => `STAT 1:chunk_size 96\r\nSTAT 1:used_chunks ${used}\r\nSTAT active_slabs 1\r\nEND\r\n`;
    expect(merge('stats slabs\r\n', 0, [reply([], slab(2)), reply([], slab(3))])).toBe('STAT 1:chunk_size 96\r\nSTAT 1:used_chunks 5\r\nSTAT active_slabs 2\r\nEND\r\n');
    expect(merge('stats settings\r\n', 0, [reply([], 'STAT maxconns 1024\r\nEND\r\n'), reply([], 'STAT maxconns 4096\r\nEND\r\n')])).toBe('STAT maxconns 1024\r\nEND\r\n');
    expect(merge('stats reset\r\n', 0, [reply([], 'RESET\r\n'), reply([], 'RESET\r\n')])).toBe('RESET\r\n');
    expect(merge('stats\r\n', 0, [failed([]), failed([])])).toMatch(/^SERVER_ERROR poolside REQUEST_TIMEOUT /);
  });
});
