/**
 * The Redis half of fan-out (codec/redis/fanout.ts): how one server's request is built from a
 * subset of the keys, and how the parts' replies become one reply.
 */
import { describe, expect, it } from 'vitest';
import type { CommandSpec, FanoutPart } from '../../src/codec/codec.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import { RespRequestDecoder } from '../../src/codec/redis/resp.js';
import { framed } from '../helpers/redis-commands.js';

function split(args: string[], groups: number[][]): string[][] {
  return framed(args, (bytes, view) => {
    const spec = redisCodec.classify(bytes, view);
    return redisCodec.splitRequest(spec, bytes, view, groups).map(decode);
  });
}

/** The arguments of one encoded request. */
function decode(request: Buffer): string[] {
  let args: string[] = [];
  new RespRequestDecoder({
    onRequest: (bytes, view) => {
      args = Array.from({ length: view.count }, (_, i) => bytes.toString('latin1', view.starts[i], view.ends[i]));
    },
  }).push(request);
  return args;
}

function specOf(...args: string[]): CommandSpec {
  return framed(args, (bytes, view) => redisCodec.classify(bytes, view));
}

const EMPTY_REQUEST = Buffer.alloc(0);
const reply = (keys: number[], text: string): FanoutPart => ({ kind: 'reply', keys, bytes: Buffer.from(text, 'latin1') });

describe('Redis fan-out', () => {
  it('marks the commands that spread, and no others', () => {
    expect(specOf('MGET', 'a', 'b').spread).toBe('keys');
    expect(specOf('MSET', 'a', '1').spread).toBe('keys');
    expect(specOf('DEL', 'a').spread).toBe('keys');
    expect(specOf('DBSIZE').spread).toBe('all');
    expect(specOf('MSETNX', 'a', '1').spread).toBeUndefined();
    expect(specOf('SUNION', 'a', 'b').spread).toBeUndefined();
    expect(specOf('GET', 'a').spread).toBeUndefined();
  });

  it('builds each part from its keys, with what belongs to each key', () => {
    expect(split(['MGET', 'a', 'b', 'c', 'd'], [[0, 2], [1], [3]])).toEqual([['MGET', 'a', 'c'], ['MGET', 'b'], ['MGET', 'd']]);
    expect(split(['MSET', 'a', '1', 'b', '2', 'c', '3'], [[0, 2], [1]])).toEqual([['MSET', 'a', '1', 'c', '3'], ['MSET', 'b', '2']]);
    expect(split(['del', 'x', 'y'], [[1], [0]])).toEqual([['del', 'y'], ['del', 'x']]);
  });

  it('merges MGET arrays into the client key order, RESP2 and RESP3 nulls alike', () => {
    const merged = redisCodec.mergeReplies(specOf('MGET', 'a', 'b', 'c'), EMPTY_REQUEST, 4, [reply([0, 2], '*2\r\n$1\r\nA\r\n$-1\r\n'), reply([1, 3], '*2\r\n_\r\n$3\r\nxyz\r\n')]);
    expect(merged.toString('latin1')).toBe('*4\r\n$1\r\nA\r\n_\r\n$-1\r\n$3\r\nxyz\r\n');
    // Elements of other types (a module's MGET-alike would not, but framing must not care) and empty strings.
    const mixed = redisCodec.mergeReplies(specOf('MGET', 'a', 'b'), EMPTY_REQUEST, 3, [reply([0, 2], '*2\r\n$0\r\n\r\n:7\r\n'), reply([1], '*1\r\n*1\r\n$1\r\nx\r\n')]);
    expect(mixed.toString('latin1')).toBe('*3\r\n$0\r\n\r\n*1\r\n$1\r\nx\r\n:7\r\n');
  });

  it('sums integers and wants +OK from every part', () => {
    expect(redisCodec.mergeReplies(specOf('DEL', 'a'), EMPTY_REQUEST, 3, [reply([0], ':1\r\n'), reply([1, 2], ':2\r\n')]).toString()).toBe(':3\r\n');
    expect(redisCodec.mergeReplies(specOf('DBSIZE'), EMPTY_REQUEST, 0, [reply([], ':10\r\n'), reply([], ':0\r\n'), reply([], ':5\r\n')]).toString()).toBe(':15\r\n');
    expect(redisCodec.mergeReplies(specOf('MSET', 'a', '1'), EMPTY_REQUEST, 2, [reply([0], '+OK\r\n'), reply([1], '+OK\r\n')]).toString()).toBe('+OK\r\n');
  });

  it('answers the first error in key order, a failed part as poolside error, and never a partial reply', () => {
    const spec = specOf('MGET', 'a', 'b');
    const refused = redisCodec.mergeReplies(specOf('MSET', 'a', '1'), EMPTY_REQUEST, 2, [reply([0], '+OK\r\n'), reply([1], '-NOREPLICAS Not enough good replicas to write.\r\n')]);
    expect(refused.toString()).toBe('-NOREPLICAS Not enough good replicas to write.\r\n');
    const failed = redisCodec.mergeReplies(spec, EMPTY_REQUEST, 2, [reply([0], '*1\r\n$1\r\nA\r\n'), { kind: 'failed', keys: [1], reason: 'REQUEST_TIMEOUT', message: 'no reply within 1s' }]);
    expect(failed.toString()).toMatch(/^-ERR poolside REQUEST_TIMEOUT MGET across servers: no reply within 1s\r\n$/);
    const wrongShape = redisCodec.mergeReplies(spec, EMPTY_REQUEST, 2, [reply([0], '*1\r\n$1\r\nA\r\n'), reply([1], ':1\r\n')]);
    expect(wrongShape.toString()).toMatch(/^-ERR poolside SERVER_ERROR /);
    const tooFew = redisCodec.mergeReplies(spec, EMPTY_REQUEST, 2, [reply([0], '*1\r\n$1\r\nA\r\n'), reply([1], '*0\r\n')]);
    expect(tooFew.toString()).toMatch(/^-ERR poolside SERVER_ERROR /);
  });
});
