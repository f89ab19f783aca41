/**
 * Redis Cluster's key slot (src/cluster/slot.ts) against the answers of a real redis-server's
 * CLUSTER KEYSLOT (a cluster-enabled node answers it without being part of a cluster), and the
 * CLUSTER SHARDS / SLOTS readers (src/cluster/shards.ts) on replies shaped like Redis 7's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc16, keySlot } from '../../src/cluster/slot.js';
import { parseResp } from '../../src/cluster/resp-value.js';
import { readShards, readSlots } from '../../src/cluster/shards.js';
import { readRedirection } from '../../src/cluster/redirect.js';
import { Cleanup } from '../helpers/cleanup.js';
import { RawClient } from '../helpers/resp-client.js';
import { RedisServer } from '../helpers/servers.js';

const slot = (key: string | Buffer): number => {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  return keySlot(bytes, 0, bytes.length);
};

describe('key slot', () => {
  const cleanup = new Cleanup();
  let client: RawClient;
  beforeAll(async () => {
    const redis = cleanup.add(await RedisServer.start(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']), (s) => s.stop());
    client = cleanup.add(await RawClient.connect(redis.port), (c) => c.destroy());
  });
  afterAll(() => cleanup.run());

  it('is CRC16/XMODEM: the check value of "123456789" is 0x31C3', () => {
    expect(crc16(Buffer.from('123456789'), 0, 9)).toBe(0x31c3);
  });

  it('matches CLUSTER KEYSLOT for plain keys, hash tags, empty tags, binary keys and offsets', async () => {
    const keys: (string | Buffer)[] = [
      '', 'a', 'foo', 'bar', 'user:1000', '123456789', '{user1000}.following', '{user1000}.followers',
      'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', '{}', '{', '}', '}{', '{a', 'a}', 'x{y', '{}a{b}',
      Buffer.from([0, 1, 2, 255, 254, 0x7b, 0x41, 0x7d]), Buffer.from('é{ü}ß'),
    ];
    for (let i = 0; i < 200; i++) keys.push(`key:${i}:${'z'.repeat(i % 7)}`);
    for (const key of keys) {
      const expected = Number(await client.call('CLUSTER', 'KEYSLOT', key));
      expect(slot(key), `key ${JSON.stringify(key.toString())}`).toBe(expected);
    }
    // A key inside a larger buffer hashes the same as alone.
    const framed = Buffer.from('xx{user1000}.followingyy');
    expect(keySlot(framed, 2, framed.length - 2)).toBe(slot('{user1000}.following'));
  });
});

describe('topology replies', () => {
  it('reads CLUSTER SHARDS (RESP2 maps as flat lists), leaving out failed primaries and shards without slots', () => {
    const node = (id: string, port: number, role: string, health: string): string =>
      `*14\r\n$2\r\nid\r\n$${id.length}\r\n${id}\r\n$4\r\nport\r\n:${port}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$${role.length}\r\n${role}\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$${health.length}\r\n${health}\r\n`;
    const shard = (slots: number[], nodes: string[]): string =>
      `*4\r\n$5\r\nslots\r\n*${slots.length}\r\n${slots.map((s) => `:${s}\r\n`).join('')}$5\r\nnodes\r\n*${nodes.length}\r\n${nodes.join('')}`;
    const reply =
      '*3\r\n' +
      shard([0, 5460, 10923, 10924], [node('a', 7000, 'master', 'online'), node('b', 7003, 'replica', 'online')]) +
      shard([5461, 10922], [node('c', 7001, 'master', 'online'), node('d', 7004, 'replica', 'failed')]) +
      shard([], [node('e', 7002, 'master', 'online')]);
    const shards = readShards(parseResp(Buffer.from(reply)), false);
    expect(shards).toEqual([
      { ranges: [[0, 5460], [10923, 10924]], primary: { host: '127.0.0.1', port: 7000, id: 'a', health: 'online' }, replicas: [{ host: '127.0.0.1', port: 7003, id: 'b', health: 'online' }] },
      { ranges: [[5461, 10922]], primary: { host: '127.0.0.1', port: 7001, id: 'c', health: 'online' }, replicas: [] },
    ]);
  });

  it('reads CLUSTER SLOTS, one shard per primary however many ranges it has', () => {
    const entry = (start: number, end: number, ports: number[]): string =>
      `*${2 + ports.length}\r\n:${start}\r\n:${end}\r\n${ports.map((p) => `*3\r\n$9\r\n127.0.0.1\r\n:${p}\r\n$2\r\nn${p % 10}\r\n`).join('')}`;
    const reply = '*3\r\n' + entry(0, 99, [7000, 7003]) + entry(100, 199, [7001]) + entry(200, 200, [7000]);
    expect(readSlots(parseResp(Buffer.from(reply)))).toEqual([
      { ranges: [[0, 99], [200, 200]], primary: { host: '127.0.0.1', port: 7000, id: 'n0', health: null }, replicas: [{ host: '127.0.0.1', port: 7003, id: 'n3', health: null }] },
      { ranges: [[100, 199]], primary: { host: '127.0.0.1', port: 7001, id: 'n1', health: null }, replicas: [] },
    ]);
    // A slot in two ranges is no node's view: refused rather than applied.
    const overlapping = '*2\r\n' + entry(0, 16383, [7000]) + entry(200, 200, [7001]);
    expect(() => readSlots(parseResp(Buffer.from(overlapping)))).toThrow(/overlap/);
  });
});

describe('redirections', () => {
  const read = (text: string) => readRedirection(Buffer.from(text));
  it('reads MOVED and ASK with IPv4, IPv6, hostnames and an empty host', () => {
    expect(read('-MOVED 3999 127.0.0.1:6381\r\n')).toEqual({ kind: 'moved', slot: 3999, host: '127.0.0.1', port: 6381 });
    expect(read('-ASK 0 [::1]:7000\r\n')).toEqual({ kind: 'ask', slot: 0, host: '::1', port: 7000 });
    expect(read('-MOVED 16383 redis-2.internal:6379\r\n')).toEqual({ kind: 'moved', slot: 16383, host: 'redis-2.internal', port: 6379 });
    expect(read('-MOVED 12 :6380\r\n')).toEqual({ kind: 'moved', slot: 12, host: '', port: 6380 });
  });

  it('reads TRYAGAIN and CLUSTERDOWN, and nothing else', () => {
    expect(read('-TRYAGAIN Multiple keys request during rehashing of slot\r\n')).toEqual({ kind: 'tryagain' });
    expect(read('-CLUSTERDOWN The cluster is down\r\n')).toEqual({ kind: 'clusterdown' });
    for (const other of ['+OK\r\n', '-ERR MOVED 1 a:1\r\n', '-MOVED\r\n', '-MOVED x 1.2.3.4:1\r\n', '-MOVED 1 host\r\n', '-ASK 1 h:0\r\n', '$5\r\nMOVED\r\n', '-CROSSSLOT Keys\r\n']) {
      expect(read(other), other).toBeNull();
    }
  });
});
