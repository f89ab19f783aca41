import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ArgView } from '../../src/codec/codec.js';
import { redisCodec } from '../../src/codec/redis.js';
import type { CommandSpec, LeaseUse } from '../../src/codec/redis-commands.js';
import { encodeCommand, RespRequestDecoder } from '../../src/codec/resp.js';

/** Frames one command the way a session does and hands its bytes and args to `use`. */
function framed<T>(args: string[], use: (bytes: Buffer, view: ArgView) => T): T {
  let out: T | undefined;
  const decoder = new RespRequestDecoder({ onRequest: (bytes, view) => (out = use(bytes, view)) });
  decoder.push(encodeCommand(args));
  if (out === undefined) throw new Error('no request framed');
  return out;
}

const spec = (...args: string[]): CommandSpec => framed(args, (bytes, view) => redisCodec.classify(bytes, view));

function keys(...args: string[]): string[] {
  return framed(args, (bytes, view) => {
    const found: string[] = [];
    const s = redisCodec.classify(bytes, view);
    redisCodec.forEachKey(s, bytes, view, (start, end) => found.push(bytes.toString('latin1', start, end)));
    return found;
  });
}

describe('redis command table', () => {
  it('agrees with docs/redis-commands.md', () => {
    const doc = fs.readFileSync(new URL('../../docs/redis-commands.md', import.meta.url), 'utf8');
    const uses: Record<string, LeaseUse> = {
      select: 'select',
      'pin until closed': 'pin-open',
      'pin once': 'pin-once',
      'pin for the session': 'pin-session',
      relay: 'relay',
      refused: 'unsupported',
      'answered for the poolside client': 'local',
    };
    let checked = 0;
    for (const line of doc.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      const use = uses[cells[1]];
      if (use === undefined) continue;
      for (const [, command] of cells[2].matchAll(/`([A-Z][A-Z -]*?)(?: n)?`/g)) {
        const words = command.trim().split(' ');
        // `HELLO` is listed with its pinning form; XREAD … BLOCK with its option.
        const args = words[0] === 'HELLO' ? ['HELLO', '3'] : command.includes('…') ? [] : words;
        if (args.length === 0) continue;
        expect(spec(...args).use, command).toBe(use);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
    expect(spec('XREAD', 'BLOCK', '0', 'STREAMS', 's', '$').use).toBe('pin-once');
    expect(spec('XREADGROUP', 'GROUP', 'g', 'c', 'BLOCK', '0', 'STREAMS', 's', '>').use).toBe('pin-once');
    expect(spec('QUIT').use).toBe('quit');
    expect(spec('CLIENT', 'SETINFO', 'lib-name', 'x').use).toBe('ok');
  });

  it('matches command names in any case', () => {
    expect(spec('get', 'k').name).toBe('GET');
    expect(spec('MuLtI').use).toBe('pin-open');
    expect(spec('client', 'kill', 'id', '1').use).toBe('local');
  });

  it('runs XREAD without BLOCK and HELLO 2 on shared connections', () => {
    expect(spec('XREAD', 'COUNT', '1', 'STREAMS', 's', '0').use).toBe('shared');
    expect(spec('HELLO').use).toBe('shared');
    expect(spec('HELLO', '2').use).toBe('shared');
    expect(spec('HELLO', '3').use).toBe('pin-session');
  });

  it('retries reads and never writes', () => {
    for (const read of [['GET', 'k'], ['MGET', 'a', 'b'], ['HGETALL', 'h'], ['LRANGE', 'l', '0', '-1'], ['PING']]) {
      expect(spec(...read).idempotent, read[0]).toBe(true);
    }
    for (const write of [['SET', 'k', 'v'], ['INCR', 'k'], ['LPUSH', 'l', 'x'], ['EVAL', 's', '0'], ['DEL', 'k'], ['NOSUCHCOMMAND', 'k']]) {
      expect(spec(...write).idempotent, write[0]).toBe(false);
    }
  });

  it('finds the keys of every key layout', () => {
    expect(keys('GET', 'k')).toEqual(['k']);
    expect(keys('MGET', 'a', 'b', 'c')).toEqual(['a', 'b', 'c']);
    expect(keys('MSET', 'a', '1', 'b', '2')).toEqual(['a', 'b']);
    expect(keys('BLPOP', 'a', 'b', '0')).toEqual(['a', 'b']);
    expect(keys('EVAL', 'return 1', '2', 'x', 'y', 'arg')).toEqual(['x', 'y']);
    expect(keys('EVAL', 'return 1', '0', 'arg')).toEqual([]);
    expect(keys('ZUNION', '2', 'z1', 'z2', 'WEIGHTS', '1', '2')).toEqual(['z1', 'z2']);
    expect(keys('XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0')).toEqual(['s1', 's2']);
    expect(keys('RENAME', 'a', 'b')).toEqual(['a', 'b']);
    expect(keys('PING')).toEqual([]);
    expect(keys('SOMEMODULE.CMD', 'key', 'arg')).toEqual(['key']);
  });

  it('reads SELECT arguments it can trust and leaves the rest to the server', () => {
    const index = (...args: string[]) => framed(args, (bytes, view) => redisCodec.selectIndex(bytes, view));
    expect(index('SELECT', '3')).toBe(3);
    expect(index('SELECT', '0')).toBe(0);
    expect(index('SELECT', 'abc')).toBe(-1);
    expect(index('SELECT', '-1')).toBe(-1);
    expect(index('SELECT', '1', '2')).toBe(-1);
    expect(index('SELECT', '')).toBe(-1);
  });
});
