import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisCodec } from '../../src/codec/redis/codec.js';
import { allSpecs, tableEntry } from '../../src/codec/redis/commands.js';
import type { CommandSpec, LeaseUse } from '../../src/codec/redis/commands.js';
import { Cleanup } from '../helpers/cleanup.js';
import { framed, serverCommands } from '../helpers/redis-commands.js';
import type { ServerCommand } from '../helpers/redis-commands.js';

const spec = (...args: string[]): CommandSpec => framed(args, (bytes, view) => redisCodec.classify(bytes, view));

function keys(...args: string[]): string[] {
  return framed(args, (bytes, view) => {
    const found: string[] = [];
    const s = redisCodec.classify(bytes, view);
    redisCodec.forEachKey(s, bytes, view, (start, end) => found.push(bytes.toString('latin1', start, end)));
    return found;
  });
}

/** Each backticked command on the doc's table rows, with the `how` of its row. */
function documentedUses(rows: Record<string, LeaseUse>): Map<string, LeaseUse> {
  const doc = fs.readFileSync(new URL('../../docs/redis-commands.md', import.meta.url), 'utf8');
  const found = new Map<string, LeaseUse>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const use = rows[cells[1]];
    if (use === undefined) continue;
    for (const [, command] of cells[2].matchAll(/`([A-Z][A-Z -]*?)(?: n)?`/g)) {
      // XREAD … BLOCK is listed with its option: the table's XREAD itself is shared.
      if (!command.includes('…')) found.set(command.trim(), use);
    }
  }
  return found;
}

const DOC_ROWS: Record<string, LeaseUse> = {
  select: 'select',
  'pin until closed': 'pin-open',
  'close the pin': 'pin-close',
  'pin once': 'pin-once',
  'pin for the session': 'pin-session',
  relay: 'relay',
  quit: 'quit',
  'answered by poolside': 'ok',
  'answered for the poolside client': 'local',
  refused: 'unsupported',
};

describe('redis command table against a real redis-server', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());
  let commands: ServerCommand[] = [];
  beforeAll(async () => {
    commands = await serverCommands(cleanup);
  });

  it('classifies every command and subcommand the server knows explicitly', () => {
    expect(commands.length).toBeGreaterThan(300);
    const missing = commands
      .filter((c) => !(c.sub === undefined && commands.some((o) => o.name === c.name && o.sub !== undefined)))
      .filter((c) => tableEntry(c.name, c.sub) === undefined)
      .map((c) => (c.sub === undefined ? c.name : `${c.name} ${c.sub}`));
    expect(missing).toEqual([]);
    // Containers answer their bare form too (the server refuses it, poolside must not guess a key).
    for (const c of commands.filter((c) => c.sub !== undefined)) expect(tableEntry(c.name)?.keys.kind, c.name).toBe('none');
  });

  it('classifies each as documented in docs/redis-commands.md (unlisted means shared)', () => {
    const documented = documentedUses(DOC_ROWS);
    const wrong: string[] = [];
    for (const c of commands) {
      const name = c.sub === undefined ? c.name : `${c.name} ${c.sub}`;
      const expected = documented.get(name) ?? documented.get(c.name) ?? 'shared';
      const use = tableEntry(c.name, c.sub)?.use;
      if (use !== expected) wrong.push(`${name}: ${use} in the tables, ${expected} in the doc`);
    }
    expect(wrong).toEqual([]);
    // And every documented name is one the tables know, under that classification.
    for (const [name, use] of documented) {
      const [command, sub] = name.split(' ');
      expect(tableEntry(command, sub)?.use, name).toBe(use);
    }
  });

  it('finds keys where the server says they are', () => {
    const wrong: string[] = [];
    for (const c of commands) {
      const spec = tableEntry(c.name, c.sub);
      // Refused commands never reach a server, so they are never routed either.
      if (spec === undefined || spec.use === 'unsupported' || c.flags.includes('movablekeys')) continue;
      // No key position (containers, PING, KEYS…): poolside must not route by an argument.
      const expected = c.firstKey === 0 ? { kind: 'none' } : { kind: 'range', first: c.firstKey, last: c.lastKey, step: c.step };
      if (JSON.stringify(spec.keys) !== JSON.stringify(expected)) wrong.push(`${spec.name}: ${JSON.stringify(spec.keys)}, server ${JSON.stringify(expected)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('marks as read-only exactly the keyed reads the server flags readonly (what a replica may answer)', () => {
    const wrong: string[] = [];
    for (const c of commands) {
      const spec = tableEntry(c.name, c.sub);
      if (spec === undefined) continue;
      const keyed = c.firstKey !== 0 || c.flags.includes('movablekeys');
      const serverSays = keyed && c.flags.includes('readonly') && !c.flags.includes('write') && !c.flags.includes('blocking');
      // XREAD may block (BLOCK): only its blocking form pins, so the table's XREAD is read-only.
      const expected = serverSays || spec.name === 'XREAD';
      if ((spec.readOnly === true) !== expected) wrong.push(`${spec.name}: readOnly ${String(spec.readOnly === true)}, server flags ${c.flags.join(',')}`);
    }
    expect(wrong).toEqual([]);
  });

  it('retries only what the server does not flag as a write', () => {
    for (const c of commands) {
      const spec = tableEntry(c.name, c.sub);
      if (spec?.idempotent === true) expect(c.flags, spec.name).not.toContain('write');
    }
  });
});

describe('redis command table', () => {
  it('agrees with docs/redis-commands.md', () => {
    let checked = 0;
    for (const [command, use] of documentedUses(DOC_ROWS)) {
      const words = command.split(' ');
      // `HELLO` is listed with its pinning form.
      const args = words[0] === 'HELLO' ? ['HELLO', '3'] : words[0] === 'CLIENT' && words[1] === 'SETINFO' ? [...words, 'lib-name', 'x'] : words;
      expect(spec(...args).use, command).toBe(use);
      checked++;
    }
    expect(checked).toBeGreaterThan(40);
    expect(spec('XREAD', 'BLOCK', '0', 'STREAMS', 's', '$').use).toBe('pin-once');
    expect(spec('XREADGROUP', 'GROUP', 'g', 'c', 'BLOCK', '0', 'STREAMS', 's', '>').use).toBe('pin-once');
  });

  it('classifies subcommands on their own, in any case, and the bare container as itself', () => {
    expect(spec('script', 'debug', 'yes').use).toBe('unsupported');
    expect(spec('SCRIPT', 'LOAD', 'return 1').use).toBe('shared');
    expect(spec('OBJECT', 'encoding', 'k').name).toBe('OBJECT ENCODING');
    expect(keys('OBJECT', 'FREQ', 'k')).toEqual(['k']);
    expect(keys('MEMORY', 'USAGE', 'k', 'SAMPLES', '5')).toEqual(['k']);
    expect(keys('XGROUP', 'CREATE', 's', 'g', '$')).toEqual(['s']);
    expect(spec('CONFIG').name).toBe('CONFIG');
    expect(spec('CONFIG', 'NOSUCH').name).toBe('CONFIG');
    expect(spec('CLUSTER', 'NOSUCH').use).toBe('unsupported');
  });

  it('matches command names in any case', () => {
    expect(spec('get', 'k').name).toBe('GET');
    expect(spec('MuLtI').use).toBe('pin-open');
    expect(spec('client', 'kill', 'id', '1').use).toBe('local');
  });

  it('gives the same spec however often a name is classified, in any case, whatever shares its cache entry', () => {
    // Classification caches plain commands by their name's bytes: a hit must be the table's spec,
    // and names that depend on their arguments, or that are not commands, must never be served from it.
    const names = [...new Set(allSpecs().map((s) => s.name.split(' ')[0] as string))];
    for (let round = 0; round < 3; round++) {
      for (const name of names) {
        const want = tableEntry(name);
        expect(spec(name, 'k').name, name).toBe(want?.name ?? name);
        expect(spec(name.toLowerCase(), 'k'), name).toBe(spec(name, 'k'));
      }
      expect(spec('HELLO', '3').use).toBe('pin-session');
      expect(spec('HELLO').use).toBe('shared');
      expect(spec('XREAD', 'BLOCK', '0', 'STREAMS', 's', '$').use).toBe('pin-once');
      expect(spec('XREAD', 'STREAMS', 's', '0').use).toBe('shared');
      expect(spec('GEt', 'k').name).toBe('GET');
      expect(spec('GETX', 'k').name).toBe('GETX');
      expect(spec('GE', 'k').name).toBe('GE');
      expect(spec('G\u00c9T', 'k').name).not.toBe('GET');
    }
  });

  it('marks keyed reads read-only, never writes, blocking forms or keyless commands', () => {
    for (const read of [['GET', 'k'], ['MGET', 'a', 'b'], ['OBJECT', 'ENCODING', 'k'], ['XREAD', 'STREAMS', 's', '0'], ['EVAL_RO', 's', '1', 'k']]) {
      expect(spec(...read).readOnly, read.join(' ')).toBe(true);
    }
    for (const other of [['SET', 'k', 'v'], ['DEL', 'k'], ['EVAL', 's', '1', 'k'], ['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'], ['PING'], ['DBSIZE'], ['BLPOP', 'k', '0'], ['NOSUCHCOMMAND', 'k']]) {
      expect(spec(...other).readOnly, other.join(' ')).toBeUndefined();
    }
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
    expect(keys('MSETNX', 'a', '1', 'b', '2')).toEqual(['a', 'b']);
    expect(keys('BITOP', 'AND', 'dest', 'a', 'b')).toEqual(['dest', 'a', 'b']);
    expect(keys('LCS', 'a', 'b')).toEqual(['a', 'b']);
    expect(keys('ZUNIONSTORE', 'dest', '2', 'z1', 'z2', 'WEIGHTS', '1', '2')).toEqual(['dest', 'z1', 'z2']);
    expect(keys('ZDIFFSTORE', 'dest', '1', 'z1')).toEqual(['dest', 'z1']);
    expect(keys('MIGRATE', 'h', '1', 'k', '0', '5000')).toEqual(['k']);
    expect(keys('PING')).toEqual([]);
    expect(keys('SOMEMODULE.CMD', 'key', 'arg')).toEqual(['key']);
  });

  it('reads SELECT arguments it can trust and leaves the rest to the server', () => {
    const index = (...args: string[]) => framed(args, (bytes, view) => redisCodec.selectIndex(bytes, view));
    expect(index('SELECT', '3')).toBe(3);
    expect(index('SELECT', '0')).toBe(0);
    expect(index('SELECT', 'abc')).toBeNull();
    expect(index('SELECT', '-1')).toBeNull();
    expect(index('SELECT', '1', '2')).toBeNull();
    expect(index('SELECT', '')).toBeNull();
  });
});
