import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/log.js';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Codec } from '../../src/codec/registry.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import type { CommandSpec } from '../../src/codec/redis/commands.js';
import { DEFAULT_ALLOW, DEFAULT_DENY } from '../../src/codec/redis/policy.js';
import { encodeCommand, RespRequestDecoder } from '../../src/codec/redis/resp.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { DEFAULTS } from '../../src/config/schema.js';
import type { PoolConfig } from '../../src/config/schema.js';

function poolCodec(commands: PoolConfig['commands'] = DEFAULTS.pool.commands): Codec {
  return redisCodec.forPool({ name: 'main', commands, clientAuth: null } as PoolConfig, { clock: systemClock, log: silentLogger });
}

function classify(codec: Codec, ...args: string[]): CommandSpec {
  let out: CommandSpec | undefined;
  new RespRequestDecoder({ onRequest: (bytes, view) => (out = codec.classify(bytes, view)) }).push(encodeCommand(args));
  if (out === undefined) throw new Error('no request framed');
  return out;
}

describe('default command policy', () => {
  const codec = poolCodec();
  const use = (...args: string[]) => classify(codec, ...args).use;

  it('denies administrative and cross-host commands, with the pool in the reason', () => {
    for (const args of [
      ['CONFIG', 'GET', 'requirepass'], ['config', 'set', 'timeout', '1'], ['CONFIG', 'REWRITE'], ['CONFIG'],
      ['ACL', 'SETUSER', 'x', 'on'], ['ACL', 'LIST'], ['MIGRATE', 'h', '1', 'k', '0', '1000'], ['FLUSHALL'], ['FLUSHDB'],
      ['SWAPDB', '0', '1'], ['SAVE'], ['BGSAVE'], ['MONITOR'], ['SCRIPT', 'KILL'], ['FUNCTION', 'FLUSH'], ['SLOWLOG', 'RESET'],
    ]) {
      expect(use(...args), args.join(' ')).toBe('denied');
    }
    expect(classify(codec, 'CONFIG', 'GET', 'requirepass').note).toBe('is denied by the command policy of pool main');
  });

  it('keeps application commands and harmless introspection working', () => {
    for (const args of [
      ['GET', 'k'], ['SET', 'k', 'v'], ['EVAL', 'return 1', '0'], ['SCRIPT', 'LOAD', 'return 1'], ['FUNCTION', 'LIST'],
      ['ACL', 'WHOAMI'], ['ACL', 'CAT'], ['KEYS', '*'], ['INFO'], ['SLOWLOG', 'GET'], ['OBJECT', 'ENCODING', 'k'], ['PUBLISH', 'c', 'm'],
    ]) {
      expect(use(...args), args.join(' ')).toBe('shared');
    }
    expect(use('SUBSCRIBE', 'c')).toBe('relay');
  });

  it('leaves refusals that no policy can lift as unsupported', () => {
    expect(use('SCRIPT', 'DEBUG', 'YES')).toBe('unsupported');
    expect(use('SHUTDOWN')).toBe('unsupported');
    expect(use('CLIENT', 'PAUSE', '1000')).toBe('unsupported');
  });

  it('is documented row by row in docs/redis-commands.md', () => {
    const doc = fs.readFileSync(new URL('../../docs/redis-commands.md', import.meta.url), 'utf8');
    const row = (title: string) => {
      const line = doc.split('\n').find((l) => l.startsWith(`| ${title} |`));
      if (line === undefined) throw new Error(`no "${title}" row`);
      return [...line.split('|')[2].matchAll(/`([A-Z][A-Z -]*?)`/g)].map((m) => m[1]);
    };
    expect(row('denied by default')).toEqual(DEFAULT_DENY);
    expect(row('allowed by default')).toEqual(DEFAULT_ALLOW);
  });
});

describe('a pool command policy', () => {
  it('lets one subcommand of a denied command through with allow', () => {
    const codec = poolCodec({ allow: ['CONFIG GET'], deny: [] });
    expect(classify(codec, 'CONFIG', 'GET', 'maxmemory').use).toBe('shared');
    expect(classify(codec, 'CONFIG', 'SET', 'maxmemory', '1').use).toBe('denied');
  });

  it('denies more, down to one subcommand, and the most specific name wins', () => {
    const codec = poolCodec({ allow: ['FUNCTION LIST', 'FLUSHDB'], deny: ['KEYS', 'FUNCTION'] });
    expect(classify(codec, 'KEYS', '*').use).toBe('denied');
    expect(classify(codec, 'FUNCTION', 'LOAD', '#!lua name=x').use).toBe('denied');
    expect(classify(codec, 'FUNCTION', 'LIST').use).toBe('shared');
    expect(classify(codec, 'FLUSHDB').use).toBe('shared');
    expect(classify(codec, 'FLUSHALL').use).toBe('denied');
  });

  it('returns the very same spec object for allowed commands (no per-request allocation)', () => {
    const codec = poolCodec();
    expect(classify(codec, 'GET', 'a')).toBe(classify(codec, 'GET', 'b'));
    expect(classify(codec, 'CONFIG', 'GET', 'a')).toBe(classify(codec, 'CONFIG', 'GET', 'b'));
    expect(classify(codec, 'EVAL', "redis.call('MIGRATE')", '0')).toBe(classify(codec, 'EVAL', "redis.call('migrate', 1)", '0'));
  });
});

describe('scripts under a command policy', () => {
  const codec = poolCodec({ allow: [], deny: ['KEYS'] });
  const use = (...args: string[]) => classify(codec, ...args).use;

  it('refuses scripts whose string literals name a denied command, in any case', () => {
    expect(use('EVAL', "return redis.call('MIGRATE', ARGV[1], 6379, KEYS[1], 0, 5000)", '1', 'k', '10.0.0.9')).toBe('denied');
    expect(use('EVAL', 'return redis.call("flushall")', '0')).toBe('denied');
    expect(use('EVAL_RO', "return redis.call('keys', '*')", '0')).toBe('denied');
    expect(use('SCRIPT', 'LOAD', "redis.call('SWAPDB', 0, 1)")).toBe('denied');
    expect(use('FUNCTION', 'LOAD', "#!lua name=l\nredis.register_function('f', function() return redis.call('FLUSHDB') end)")).toBe('denied');
    expect(use('FUNCTION', 'LOAD', 'REPLACE', "#!lua name=l\nredis.register_function('f', function() return redis.call('MIGRATE') end)")).toBe('denied');
    expect(classify(codec, 'EVAL', "redis.call('MIGRATE')", '0').note).toContain('its script names MIGRATE');
  });

  it('lets through scripts that only use allowed commands, or words that are not literals', () => {
    expect(use('EVAL', "return redis.call('GET', KEYS[1])", '1', 'k')).toBe('shared');
    expect(use('EVAL', "local config = 1; return redis.call('SET', KEYS[1], 'flushall now')", '1', 'k')).toBe('shared');
    expect(use('EVAL', "return redis.call('ACL', 'WHOAMI')", '0')).toBe('shared');
    expect(use('EVAL', "return redis.call('FUNCTION', 'list')", '0')).toBe('shared');
    expect(use('EVAL', 'return "it\\"s \'MIGRATE\' inside a string"', '0')).toBe('shared');
  });

  it('refuses a partly denied command unless an allowed subcommand follows it', () => {
    expect(use('EVAL', "return redis.call('FUNCTION', 'FLUSH')", '0')).toBe('denied');
    expect(use('EVAL', "return redis.call('ACL', 'SETUSER', 'x')", '0')).toBe('denied');
    expect(use('EVAL', "return redis.call('ACL', ARGV[1])", '0')).toBe('denied');
  });

  it('is not thrown off by quotes in comments or an unterminated literal', () => {
    expect(use('EVAL', "-- don't\nreturn redis.call('MIGRATE')", '0')).toBe('denied');
    expect(use('EVAL', "--[[ it's\n a long comment ]] return redis.call('MIGRATE')", '0')).toBe('denied');
    expect(use('EVAL', "local s = 'oops\nreturn redis.call('MIGRATE')", '0')).toBe('denied');
    expect(use('EVAL', "-- redis.call('MIGRATE') is what we do not do\nreturn 1", '0')).toBe('shared');
  });

  it('cannot see names built at run time (documented limit)', () => {
    expect(use('EVAL', "return redis.call('MIG' .. 'RATE')", '0')).toBe('shared');
  });
});

describe('commands: in the config', () => {
  const load = (commands: string) =>
    parseConfig(['pools:', '  p:', '    protocol: redis', '    listen: 127.0.0.1:0', '    servers: [127.0.0.1:6379]', `    commands: ${commands}`].join('\n'), 'c.yaml');
  const problems = (commands: string): string[] => {
    try {
      load(commands);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
      throw error;
    }
    return [];
  };

  it('normalizes names: any case, CONFIG|GET, a single name for a list', () => {
    expect(load('{ allow: [config get, "FUNCTION|flush"], deny: keys }').pools[0].commands).toEqual({ allow: ['CONFIG GET', 'FUNCTION FLUSH'], deny: ['KEYS'] });
    expect(load('{ allow: [], deny: [] }').pools[0].commands).toEqual({ allow: [], deny: [] });
  });

  it('rejects unknown commands and subcommands with where they are and a suggestion', () => {
    expect(problems('{ allow: [CONFIG GTE], deny: [KEYZ, GET STUFF] }')).toEqual([
      '6:25 pools.p.commands.allow[0]: CONFIG has no subcommand GTE; did you mean CONFIG GET?',
      '6:45 pools.p.commands.deny[0]: unknown Redis command "KEYZ"; did you mean KEYS?',
      '6:51 pools.p.commands.deny[1]: GET has no subcommands, got "GET STUFF"',
    ]);
  });

  it('rejects allowing what poolside cannot support, and a name in both lists', () => {
    expect(problems('{ allow: [SCRIPT DEBUG, KEYS], deny: [keys] }')).toEqual([
      '6:25 pools.p.commands.allow[0]: SCRIPT DEBUG turns the connection into a Lua debugger and is not supported through poolside, so no policy can allow it',
      '6:53 pools.p.commands.deny[0]: KEYS is already listed at pools.p.commands.allow[1] (line 6:39)',
    ]);
    expect(problems('{ allowed: [KEYS] }')).toEqual(['6:17 pools.p.commands.allowed: unknown key; did you mean allow?']);
  });
});
