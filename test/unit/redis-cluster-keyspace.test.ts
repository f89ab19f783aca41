import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArgView, FanoutPart } from '../../src/codec/codec.js';
import { ClusterClassifier, clusterRule, clusterRules } from '../../src/codec/redis/cluster-keyspace.js';
import type { ClusterRule } from '../../src/codec/redis/cluster-keyspace.js';
import { tableEntry } from '../../src/codec/redis/commands.js';
import { mergeReplies } from '../../src/codec/redis/fanout.js';
import type { Merge } from '../../src/codec/redis/fanout.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import { encodeCommand } from '../../src/codec/redis/resp.js';
import { encodeCursor, nextStart, parseCursor, replaceArg, scanReplyMap, SlotOrder } from '../../src/codec/redis/scan-cursor.js';
import { Cleanup } from '../helpers/cleanup.js';
import { framed, serverCommands } from '../helpers/redis-commands.js';

/** The `how` column of docs/redis-cluster-keyspace.md and the rule each row stands for. */
const DOC_ROWS: Record<string, string> = {
  'one node': 'any',
  'every primary, summed': 'primaries:sum',
  'every primary, concatenated': 'primaries:concat',
  'every primary, each once': 'primaries:union',
  'every primary, counts summed': 'primaries:pairs-sum',
  'every primary, the same reply': 'primaries:same',
  'every primary, 1 where all say 1': 'primaries:and',
  'every primary, one at random': 'primaries:random',
  'every primary, +OK from all': 'primaries:all-ok',
  'every primary, +OK from any': 'primaries:any-ok',
  'cursor across primaries': 'scan',
  "to the slot's owner": 'slot',
  refused: 'refuse',
};

function ruleKey(rule: ClusterRule): string {
  return rule.how === 'primaries' ? `primaries:${rule.merge}` : rule.how;
}

function documented(): Map<string, string> {
  const doc = fs.readFileSync(new URL('../../docs/redis-cluster-keyspace.md', import.meta.url), 'utf8');
  const found = new Map<string, string>();
  const rows = new Set<string>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const how = DOC_ROWS[cells[1]];
    if (how === undefined) continue;
    rows.add(cells[1]);
    for (const [, command] of cells[2].matchAll(/`([A-Z][A-Z_ -]*?)`/g)) found.set(command.trim(), how);
  }
  expect([...rows].sort()).toEqual(Object.keys(DOC_ROWS).sort());
  return found;
}

describe('cluster keyspace table', () => {
  it('agrees with docs/redis-cluster-keyspace.md, both ways', () => {
    const doc = documented();
    const wrong: string[] = [];
    for (const [name, rule] of clusterRules()) {
      if (doc.get(name) !== ruleKey(rule)) wrong.push(`${name}: ${ruleKey(rule)} in the code, ${doc.get(name) ?? 'missing'} in the doc`);
    }
    for (const [name, how] of doc) if (clusterRule(name) === undefined) wrong.push(`${name}: ${how} in the doc, missing in the code`);
    expect(wrong).toEqual([]);
  });

  it('names only commands the tables know', () => {
    for (const name of clusterRules().keys()) {
      const [command, sub] = name.split(' ');
      expect(tableEntry(command, sub), name).toBeDefined();
    }
  });

  it('adjusts specs: every primary spreads to all, refused is unsupported, CLUSTER INFO runs, denied stays denied', () => {
    const classifier = new ClusterClassifier();
    const classify = (...args: string[]) => framed(args, (bytes, view) => classifier.apply(redisCodec.classify(bytes, view)));
    expect(classify('KEYS', '*').spread).toBe('all');
    expect(classify('SCRIPT', 'LOAD', 'return 1').spread).toBe('all');
    expect(classify('SWAPDB', '0', '1').use).toBe('unsupported');
    expect(classify('SWAPDB', '0', '1').note).toContain('database 0');
    expect(classify('WAIT', '1', '0').use).toBe('unsupported');
    expect(classify('CLUSTER', 'INFO').use).toBe('shared');
    expect(classify('CLUSTER', 'KEYSLOT', 'k').use).toBe('shared');
    expect(classify('CLUSTER', 'SETSLOT', '1', 'STABLE').use).toBe('unsupported');
    expect(classify('GET', 'k').spread).toBeUndefined();
    // The same object every time: one Map lookup per request.
    expect(classify('KEYS', '*')).toBe(classify('KEYS', 'x*'));
    const denied = { ...redisCodec.classify(...framedArgs('FLUSHALL')), use: 'denied' as const };
    expect(classifier.apply(denied)).toBe(denied);
  });
});

function framedArgs(...args: string[]): [Buffer, ArgView] {
  return framed(args, (bytes, view) => [bytes, { count: view.count, starts: view.starts.slice(), ends: view.ends.slice() }] as [Buffer, ArgView]);
}

describe('cluster keyspace table against a real redis-server', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());
  let commands: { name: string; firstKey: number }[] = [];
  beforeAll(async () => {
    commands = (await serverCommands(cleanup)).map((c) => ({ name: c.sub === undefined ? c.name : `${c.name} ${c.sub}`, firstKey: c.firstKey }));
  });

  it('decides every keyless command poolside forwards (and every CLUSTER subcommand that only reads)', () => {
    const undecided: string[] = [];
    for (const c of commands) {
      const [command, sub] = c.name.split(' ');
      const spec = tableEntry(command, sub);
      if (spec === undefined) continue; // redis-commands.test.ts fails on those
      const keyless = spec.keys.kind === 'none' || spec.keys.kind === 'numkeys';
      const forwarded = spec.use === 'shared' || (command === 'CLUSTER' && sub !== undefined);
      if (keyless && forwarded && clusterRule(spec.name) === undefined && !CLUSTER_WRITES.has(spec.name)) undecided.push(spec.name);
    }
    expect(undecided).toEqual([]);
  });
});

/** CLUSTER subcommands that change the cluster: refused on every pool by commands.ts. */
const CLUSTER_WRITES = new Set(
  `ADDSLOTS ADDSLOTSRANGE BUMPEPOCH DELSLOTS DELSLOTSRANGE FAILOVER FLUSHSLOTS FORGET MEET REPLICATE RESET SAVECONFIG SET-CONFIG-EPOCH SETSLOT`
    .split(' ')
    .map((s) => `CLUSTER ${s}`),
);

const spec = (name: string) => {
  const [command, sub] = name.split(' ');
  const found = tableEntry(command, sub);
  if (found === undefined) throw new Error(name);
  return found;
};
const reply = (text: string): FanoutPart => ({ kind: 'reply', keys: [], bytes: Buffer.from(text, 'latin1') });
const merge = (name: string, how: Merge, parts: FanoutPart[], random = () => 0): string =>
  mergeReplies(spec(name), 0, parts, redisCodec.errorReply, how, random).toString('latin1');

describe('keyspace merges', () => {
  it('concat, union, sum', () => {
    expect(merge('KEYS', 'concat', [reply('*2\r\n$1\r\na\r\n$1\r\nb\r\n'), reply('*0\r\n'), reply('*1\r\n$1\r\nc\r\n')])).toBe('*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n');
    expect(merge('PUBSUB CHANNELS', 'union', [reply('*2\r\n$1\r\na\r\n$1\r\nb\r\n'), reply('*2\r\n$1\r\nb\r\n$1\r\nc\r\n')])).toBe('*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n');
    expect(merge('SLOWLOG GET', 'concat', [reply('*1\r\n*2\r\n:1\r\n:2\r\n'), reply('*1\r\n*1\r\n:3\r\n')])).toBe('*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n:3\r\n');
    expect(merge('DBSIZE', 'sum', [reply(':3\r\n'), reply(':4\r\n')])).toBe(':7\r\n');
  });

  it('same: one reply when all agree, an error when they do not', () => {
    const sha = '$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n';
    expect(merge('SCRIPT LOAD', 'same', [reply(sha), reply(sha), reply(sha)])).toBe(sha);
    expect(merge('SCRIPT LOAD', 'same', [reply(sha), reply('$1\r\nx\r\n')])).toMatch(/^-ERR poolside SERVER_ERROR/);
    expect(merge('FUNCTION LOAD', 'same', [reply('$3\r\nlib\r\n'), reply("-ERR Library 'lib' already exists\r\n")])).toBe("-ERR Library 'lib' already exists\r\n");
  });

  it('and: 1 only where every node said 1', () => {
    expect(merge('SCRIPT EXISTS', 'and', [reply('*3\r\n:1\r\n:1\r\n:0\r\n'), reply('*3\r\n:1\r\n:0\r\n:0\r\n')])).toBe('*3\r\n:1\r\n:0\r\n:0\r\n');
  });

  it('random: a non-nil reply, nil only when all are nil', () => {
    const nil = reply('$-1\r\n');
    expect(merge('RANDOMKEY', 'random', [nil, reply('$1\r\na\r\n'), reply('$1\r\nb\r\n')], () => 0)).toBe('$1\r\na\r\n');
    expect(merge('RANDOMKEY', 'random', [nil, reply('$1\r\na\r\n'), reply('$1\r\nb\r\n')], () => 0.99)).toBe('$1\r\nb\r\n');
    expect(merge('RANDOMKEY', 'random', [nil, nil])).toBe('$-1\r\n');
    expect(merge('RANDOMKEY', 'random', [reply('_\r\n'), reply('_\r\n')])).toBe('_\r\n');
  });

  it('any-ok: +OK from one node wins over the others NOTBUSY', () => {
    const notbusy = reply('-NOTBUSY No scripts in execution right now.\r\n');
    expect(merge('SCRIPT KILL', 'any-ok', [notbusy, reply('+OK\r\n'), notbusy])).toBe('+OK\r\n');
    expect(merge('SCRIPT KILL', 'any-ok', [notbusy, notbusy])).toBe('-NOTBUSY No scripts in execution right now.\r\n');
    expect(merge('SCRIPT KILL', 'any-ok', [{ kind: 'failed', keys: [], reason: 'REQUEST_TIMEOUT', message: 'x' }, notbusy])).toMatch(/REQUEST_TIMEOUT/);
  });

  it('pairs-sum: counts per channel summed, RESP2 arrays and RESP3 maps', () => {
    expect(merge('PUBSUB NUMSUB', 'pairs-sum', [reply('*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n'), reply('*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:5\r\n')])).toBe(
      '*4\r\n$1\r\na\r\n:3\r\n$1\r\nb\r\n:5\r\n',
    );
    expect(merge('PUBSUB SHARDNUMSUB', 'pairs-sum', [reply('%1\r\n$1\r\na\r\n:1\r\n'), reply('%1\r\n$1\r\na\r\n:0\r\n')])).toBe('%1\r\n$1\r\na\r\n:1\r\n');
  });

  it('a failed part or an error reply is the answer, never a partial merge', () => {
    expect(merge('KEYS', 'concat', [reply('*0\r\n'), { kind: 'failed', keys: [], reason: 'NO_HEALTHY_SERVER', message: 'gone' }])).toMatch(/^-ERR poolside NO_HEALTHY_SERVER KEYS across servers: gone/);
    expect(merge('FLUSHALL', 'all-ok', [reply('+OK\r\n'), reply('-READONLY x\r\n')])).toBe('-READONLY x\r\n');
  });
});

describe('SCAN cursor across primaries', () => {
  const starts = { firstSlots: () => [0, 5461, 10923] };

  it('encodes the server cursor and the first slot of the node in one decimal cursor', () => {
    expect(parseCursor('0')).toEqual({ server: 0n, slot: 0 });
    expect(encodeCursor({ server: 5n, slot: 5461 })).toBe(String(5 * 16384 + 5461));
    expect(parseCursor(String(5 * 16384 + 5461))).toEqual({ server: 5n, slot: 5461 });
    // Beyond 2^53: exact, as BigInt.
    const big = ((1n << 63n) * 16384n + 10923n).toString();
    expect(parseCursor(big)).toEqual({ server: 1n << 63n, slot: 10923 });
    expect(parseCursor('abc')).toBeNull();
    expect(parseCursor('-1')).toBeNull();
    expect(parseCursor(((1n << 64n) * 16384n).toString())).toBeNull();
  });

  it('moves to the next primary in slot order when a node is done, 0 after the last', () => {
    expect(nextStart([0, 5461, 10923], 0)).toBe(5461);
    expect(nextStart([0, 5461, 10923], 10923)).toBeNull();
    // A cursor whose slot is no node's first any more (a resharding): the next one after it.
    expect(nextStart([0, 5461, 10923], 6000)).toBe(10923);
    const keys = '*1\r\n$1\r\nk\r\n';
    const map = (slot: number, cursor: string) => scanReplyMap(slot, starts)(Buffer.from(`*2\r\n$${cursor.length}\r\n${cursor}\r\n${keys}`, 'latin1'))?.toString('latin1');
    expect(map(5461, '17')).toBe(`*2\r\n$${String(17 * 16384 + 5461).length}\r\n${17 * 16384 + 5461}\r\n${keys}`);
    expect(map(0, '0')).toBe(`*2\r\n$4\r\n5461\r\n${keys}`);
    expect(map(10923, '0')).toBe(`*2\r\n$1\r\n0\r\n${keys}`);
    expect(scanReplyMap(0, starts)(Buffer.from('-ERR x\r\n'))?.toString()).toBe('-ERR x\r\n');
  });

  it("finds each primary's first slot from the slot map, in slot order", () => {
    const a = {};
    const b = {};
    const c = {};
    // a owns 0-99 and 5000-16383, b 100-4999 but 200 (c's), nothing is unowned.
    const owner = (slot: number) => (slot === 200 ? c : slot >= 100 && slot < 5000 ? b : a);
    expect(new SlotOrder(owner).firstSlots()).toEqual([0, 100, 200]);
    expect(new SlotOrder((slot) => (slot < 10 ? null : a)).firstSlots()).toEqual([10]);
  });

  it('rewrites only the cursor; MATCH, COUNT and TYPE pass as they are', () => {
    const out = framed(['SCAN', String(3 * 16384 + 5461), 'MATCH', 'user:*', 'COUNT', '100', 'TYPE', 'string'], (bytes, view) => replaceArg(bytes, view, 1, '3'));
    expect(out.equals(encodeCommand(['SCAN', '3', 'MATCH', 'user:*', 'COUNT', '100', 'TYPE', 'string']))).toBe(true);
  });
});
