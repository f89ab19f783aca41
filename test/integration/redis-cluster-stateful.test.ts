/**
 * Stateful commands through a `routing: cluster` pool against a real 3 + 3 Redis Cluster
 * (test/helpers/cluster.ts): transactions pinned to the node of their first key, WATCH, blocking
 * pops, SUBSCRIBE from any node and SSUBSCRIBE on the shard channel's owner, SELECT, and the
 * session state a cluster pool refuses (docs/redis-cluster.md#stateful-commands). The cluster is
 * the oracle: what poolside wrote is read on the owning node directly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../src/pool/pool.js';
import type { Proxy } from '../../src/proxy.js';
import { Cleanup } from '../helpers/cleanup.js';
import { SLOTS, startCluster, tagForSlot } from '../helpers/cluster.js';
import type { ClusterNode, RedisCluster } from '../helpers/cluster.js';
import { portOf, startProxy } from '../helpers/proxy.js';
import { encode, poolsideReason, RawClient, RespError } from '../helpers/resp-client.js';
import type { RespValue } from '../helpers/resp-client.js';
import { waitFor } from '../helpers/servers.js';
import { phpFixture, requirePhpRedis, runPhp } from '../helpers/php.js';

const CROSSSLOT = new RespError("CROSSSLOT Keys in request don't hash to the same slot");
const EXECABORT = new RespError('EXECABORT Transaction discarded because of previous errors.');

const cleanup = new Cleanup();
/** Clients of one test, closed after it (the cluster and poolside live for the whole file). */
const perTest = new Cleanup();
let cluster: RedisCluster;
let proxy: Proxy;
let pool: Pool;
let port: number;
/** A hash tag on each primary, in the order of cluster.primaries() at the start. */
let tags: { node: ClusterNode; tag: string }[];

beforeAll(async () => {
  cluster = await startCluster(cleanup, { primaries: 3, replicasPerPrimary: 1 });
  proxy = cleanup.add(await startProxy([cluster.nodes[0].address], { routing: 'cluster', cluster: { refresh_interval: '1s' } }), (p) => p.close());
  const found = proxy.pools.get('p');
  if (found?.cluster == null) throw new Error('pool p is not a cluster pool');
  pool = found;
  port = portOf(proxy);
  await waitFor(() => pool.cluster?.stats().slotsCovered === SLOTS && pool.cluster.stats().nodes === 3, 'the slot map to be discovered', 10_000);
  tags = [];
  for (const node of await cluster.primaries()) {
    const slots = await cluster.slotsOf(node);
    // Two tags per node, in different slots: one for the node, one for "another slot on the same node".
    tags.push({ node, tag: tagForSlot(slots[0]) });
  }
}, 60_000);
afterAll(() => cleanup.run());

async function client(): Promise<RawClient> {
  return perTest.add(await RawClient.connect(port), (c) => c.destroy());
}

/** A key in the first slot of primary `i`: `{tag}name`. */
function keyOn(i: number, name: string): string {
  return `{${tags[i].tag}}${name}`;
}

/** A key on the same node as keyOn(i, …) but in another slot. */
async function otherSlotSameNode(i: number, name: string): Promise<string> {
  const slots = await cluster.slotsOf(tags[i].node);
  return `{${tagForSlot(slots[1])}}${name}`;
}

async function direct(key: string, ...args: (string | number)[]): Promise<RespValue> {
  return cluster.command(await cluster.ownerOfKey(key), ...args);
}

describe('transactions in a cluster pool', () => {
  it('runs MULTI/EXEC on each primary, on the node of the first key, keyless commands included', async () => {
    try {
      const c = await client();
      for (let i = 0; i < 3; i++) {
        const a = keyOn(i, 'tx:a');
        const n = keyOn(i, 'tx:n');
        expect(await c.call('MULTI')).toBe('OK');
        expect(await c.call('SET', a, `v${i}`)).toBe('QUEUED');
        expect(await c.call('PING')).toBe('QUEUED');
        expect(await c.call('INCR', n)).toBe('QUEUED');
        expect(await c.call('GET', a)).toBe('QUEUED');
        expect(await c.call('EXEC')).toEqual(['OK', 'PONG', 1, `v${i}`]);
        // On its owner, read directly: the transaction ran there.
        expect(await cluster.command(tags[i].node, 'GET', a)).toBe(`v${i}`);
        expect(await cluster.command(tags[i].node, 'GET', n)).toBe('1');
      }
      // Pipelined whole, as phpredis and predis send it.
      const k = keyOn(1, 'tx:pipe');
      c.send('MULTI');
      c.send('SET', k, 'x');
      c.send('APPEND', k, 'y');
      c.send('EXEC');
      expect(await c.take(4)).toEqual(['OK', 'QUEUED', 'QUEUED', ['OK', 2]]);
      expect(await direct(k, 'GET', k)).toBe('xy');
      // The exclusive connections went back: every node's pool lends nothing now.
      await waitFor(() => pool.servers.every((s) => s.stats().exclusive.borrowed === 0), 'the pinned connections to be given back');
    } finally {
      await perTest.run();
    }
  });

  it('answers an empty MULTI/EXEC and MULTI/DISCARD as Redis does, without a node', async () => {
    try {
      const c = await client();
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('EXEC')).toEqual([]);
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('DISCARD')).toBe('OK');
      // Nothing was left open: a plain command runs at once.
      const k = keyOn(0, 'tx:after-empty');
      expect(await c.call('SET', k, '1')).toBe('OK');
      expect(await c.call('EXEC')).toEqual(new RespError('ERR EXEC without MULTI'));
      // DISCARD after a queued command discards it.
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', k, '2')).toBe('QUEUED');
      expect(await c.call('DISCARD')).toBe('OK');
      expect(await c.call('GET', k)).toBe('1');
    } finally {
      await perTest.run();
    }
  });

  it('runs pipelined transactions back to back on different nodes, each on its own node', async () => {
    try {
      const c = await client();
      const a = keyOn(0, 'tx:b2b');
      const b = keyOn(1, 'tx:b2b');
      const w = keyOn(2, 'tx:b2b');
      // The second MULTI is read while the first EXEC is still in flight on node 0's pinned
      // connection: it must open its own transaction on node 1, not queue on node 0's.
      c.send('MULTI');
      c.send('SET', a, '1');
      c.send('EXEC');
      c.send('MULTI');
      c.send('SET', b, '2');
      c.send('EXEC');
      c.send('WATCH', w);
      c.send('MULTI');
      c.send('SET', w, '3');
      c.send('EXEC');
      c.send('MULTI');
      c.send('GET', b);
      c.send('DISCARD');
      expect(await c.take(13)).toEqual(['OK', 'QUEUED', ['OK'], 'OK', 'QUEUED', ['OK'], 'OK', 'OK', 'QUEUED', ['OK'], 'OK', 'QUEUED', 'OK']);
      expect(await direct(a, 'GET', a)).toBe('1');
      expect(await direct(b, 'GET', b)).toBe('2');
      expect(await direct(w, 'GET', w)).toBe('3');
      await waitFor(() => pool.servers.every((s) => s.stats().exclusive.borrowed === 0), 'the pinned connections to be given back');
    } finally {
      await perTest.run();
    }
  });

  it('answers a nested MULTI and a WATCH inside MULTI as Redis does, without choosing the transaction’s node by them', async () => {
    try {
      const c = await client();
      const a = keyOn(0, 'tx:nested');
      const b = keyOn(1, 'tx:nested');
      // Sent before the transaction's first command, neither may pin it (to any primary, or to b's node).
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('MULTI')).toEqual(new RespError('ERR MULTI calls can not be nested'));
      expect(await c.call('WATCH', b)).toEqual(new RespError('ERR WATCH inside MULTI is not allowed'));
      expect(await c.call('SET', a, 'n')).toBe('QUEUED');
      expect(await c.call('EXEC')).toEqual(['OK']);
      expect(await direct(a, 'GET', a)).toBe('n');
      await waitFor(() => pool.servers.every((s) => s.stats().exclusive.borrowed === 0), 'the pinned connection to be given back');
    } finally {
      await perTest.run();
    }
  });

  it('refuses a command on another slot with CROSSSLOT and aborts the transaction: nothing of it runs', async () => {
    try {
      const c = await client();
      const a = keyOn(0, 'tx:cross-a');
      const elsewhere = keyOn(1, 'tx:cross-b');
      const sameNode = await otherSlotSameNode(0, 'tx:cross-c');
      // Another node's key: Redis would say MOVED at queue time; poolside says CROSSSLOT, and EXEC aborts.
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', a, '1')).toBe('QUEUED');
      expect(await c.call('SET', elsewhere, '1')).toEqual(CROSSSLOT);
      expect(await c.call('EXEC')).toEqual(EXECABORT);
      // Another slot of the same node: queued, and EXEC refuses the whole transaction (the node's own CROSSSLOT).
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', a, '1')).toBe('QUEUED');
      expect(await c.call('SET', sameNode, '1')).toBe('QUEUED');
      expect(await c.call('EXEC')).toEqual(CROSSSLOT);
      // A multi-key command across slots inside MULTI is never split: CROSSSLOT, abort.
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('MSET', a, '1', elsewhere, '2')).toEqual(CROSSSLOT);
      expect(await c.call('SET', a, '1')).toBe('QUEUED');
      expect(await c.call('EXEC')).toEqual(EXECABORT);
      // Refused before the first key too: the transaction still aborts.
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('MGET', a, elsewhere)).toEqual(CROSSSLOT);
      expect(await c.call('EXEC')).toEqual(EXECABORT);
      for (const key of [a, elsewhere, sameNode]) expect(await direct(key, 'EXISTS', key)).toBe(0);
      // The session is usable afterwards, on any node.
      expect(await c.call('SET', elsewhere, 'ok')).toBe('OK');
      expect(await direct(elsewhere, 'GET', elsewhere)).toBe('ok');
    } finally {
      await perTest.run();
    }
  });

  it('detects a WATCH conflict made by another poolside client, and runs the transaction when there is none', async () => {
    try {
      const a = await client();
      const b = await client();
      for (let i = 0; i < 3; i++) {
        const k = keyOn(i, 'watch:k');
        expect(await a.call('SET', k, '0')).toBe('OK');
        expect(await a.call('WATCH', k)).toBe('OK');
        expect(await a.call('GET', k)).toBe('0');
        // Another client changes the watched key: A's EXEC must fail (nil) and change nothing.
        expect(await b.call('SET', k, 'from-b')).toBe('OK');
        expect(await a.call('MULTI')).toBe('OK');
        expect(await a.call('SET', k, 'from-a')).toBe('QUEUED');
        expect(await a.call('EXEC')).toBeNull();
        expect(await direct(k, 'GET', k)).toBe('from-b');
        // No conflict this time: it commits.
        expect(await a.call('WATCH', k)).toBe('OK');
        expect(await a.call('MULTI')).toBe('OK');
        expect(await a.call('SET', k, 'from-a')).toBe('QUEUED');
        expect(await a.call('EXEC')).toEqual(['OK']);
        expect(await direct(k, 'GET', k)).toBe('from-a');
      }
    } finally {
      await perTest.run();
    }
  });

  it('refuses WATCH across slots with CROSSSLOT, and a watched session still reads other nodes', async () => {
    try {
      const c = await client();
      const k = keyOn(0, 'watch:x');
      const elsewhere = keyOn(2, 'watch:y');
      expect(await c.call('WATCH', k, elsewhere)).toEqual(CROSSSLOT);
      expect(await direct(elsewhere, 'SET', elsewhere, 'there')).toBe('OK');
      expect(await c.call('WATCH', k)).toBe('OK');
      // Outside MULTI, a key of another node is read where it lives.
      expect(await c.call('GET', elsewhere)).toBe('there');
      // A keyspace-wide command while watching (not queued) answers for the whole cluster, as
      // outside the watch: the same count as a fresh client's.
      expect(await direct(keyOn(1, 'watch:z'), 'SET', keyOn(1, 'watch:z'), 'z')).toBe('OK');
      const fresh = await client();
      const total = await fresh.call('DBSIZE');
      expect(total).toBeGreaterThanOrEqual(2);
      expect(await c.call('DBSIZE')).toBe(total);
      expect(((await c.call('KEYS', '*')) as RespValue[]).length).toBe(total);
      // WATCH of another node's key while watching: CROSSSLOT (Redis: MOVED).
      expect(await c.call('WATCH', elsewhere)).toEqual(CROSSSLOT);
      expect(await c.call('UNWATCH')).toBe('OK');
      await waitFor(() => pool.servers.every((s) => s.stats().exclusive.borrowed === 0), 'UNWATCH to give the connection back');
    } finally {
      await perTest.run();
    }
  });
});

describe('blocking commands in a cluster pool', () => {
  it('blocks each pop on its key’s node and wakes it with a push from another client', async () => {
    try {
      const blocked = await Promise.all(tags.map(() => client()));
      const pusher = await client();
      const keys = tags.map((_, i) => keyOn(i, 'bl:list'));
      blocked.forEach((c, i) => c.send('BLPOP', keys[i], 0));
      // All three wait on their own node.
      await waitFor(async () => {
        for (let i = 0; i < 3; i++) {
          const info = String(await cluster.command(tags[i].node, 'INFO', 'clients'));
          if (!/blocked_clients:1\r?\n/.test(info)) return false;
        }
        return true;
      }, 'a client blocked on every primary');
      for (let i = 0; i < 3; i++) expect(await pusher.call('RPUSH', keys[i], `v${i}`)).toBe(1);
      for (let i = 0; i < 3; i++) expect(await blocked[i].reply()).toEqual([keys[i], `v${i}`]);
      // BLMOVE within one slot, and XREAD BLOCK, on another node.
      const src = keyOn(1, 'bl:src');
      const dst = keyOn(1, 'bl:dst');
      blocked[0].send('BLMOVE', src, dst, 'LEFT', 'RIGHT', 0);
      const stream = keyOn(2, 'bl:stream');
      blocked[1].send('XREAD', 'BLOCK', 0, 'STREAMS', stream, '$');
      await waitFor(async () => /blocked_clients:1\r?\n/.test(String(await cluster.command(tags[2].node, 'INFO', 'clients'))), 'XREAD to block');
      await waitFor(async () => /blocked_clients:1\r?\n/.test(String(await cluster.command(tags[1].node, 'INFO', 'clients'))), 'BLMOVE to block');
      expect(await pusher.call('RPUSH', src, 'm')).toBe(1);
      expect(await blocked[0].reply()).toBe('m');
      expect(await direct(dst, 'LRANGE', dst, 0, -1)).toEqual(['m']);
      const id = await pusher.call('XADD', stream, '*', 'f', 'v');
      expect(await blocked[1].reply()).toEqual([[stream, [[id, ['f', 'v']]]]]);
    } finally {
      await perTest.run();
    }
  });

  // As outside a cluster pool (docs/architecture.md, half-close): after the FIN no blocking
  // command is started. Watching, it used to go to the watch's node all the same.
  it('starts no blocking command for a watching client that half-closed', async () => {
    try {
      const c = await client();
      const list = keyOn(0, 'bl:fin');
      expect(await direct(list, 'RPUSH', list, 'x')).toBe(1);
      const slow = ['EVAL', 'local t = redis.call("TIME") while true do local n = redis.call("TIME") if (n[1] - t[1]) * 1000000 + n[2] - t[2] > 300000 then return "slow" end end', 1, keyOn(0, 'bl:w1')] as const;
      // The second WATCH waits for the EVAL's reply, and the BLPOP behind it: both are still held when the FIN is read.
      c.write(Buffer.concat([encode('WATCH', keyOn(0, 'bl:w1')), encode(...slow), encode('WATCH', keyOn(0, 'bl:w2')), encode('BLPOP', list, 0)]));
      c.socket.end();
      expect(await c.take(3)).toEqual(['OK', 'slow', 'OK']);
      expect(await c.closesWithin(2000)).toBe(true);
      expect(c.pending).toBe(0);
      expect(await direct(list, 'LLEN', list)).toBe(1);
    } finally {
      await perTest.run();
    }
  });

  it('refuses a blocking command across slots with CROSSSLOT, and WAIT outside a transaction', async () => {
    try {
      const c = await client();
      expect(await c.call('BLPOP', keyOn(0, 'bl:a'), keyOn(1, 'bl:b'), 1)).toEqual(CROSSSLOT);
      expect(await c.call('BLMOVE', keyOn(0, 'bl:a'), keyOn(1, 'bl:b'), 'LEFT', 'LEFT', 1)).toEqual(CROSSSLOT);
      expect(poolsideReason(await c.call('WAIT', 0, 0))).toBe('UNSUPPORTED_COMMAND');
      // Same slot, several keys: served, the timeout runs out on the node.
      expect(await c.call('BLPOP', keyOn(2, 'bl:a'), keyOn(2, 'bl:b'), '0.05')).toBeNull();
      expect(await c.call('PING')).toBe('PONG');
    } finally {
      await perTest.run();
    }
  });
});

describe('pub/sub in a cluster pool', () => {
  it('SUBSCRIBE hears a PUBLISH made on any node (cluster pub/sub is cluster-wide)', async () => {
    try {
      const sub = await client();
      sub.send('SUBSCRIBE', 'news');
      expect(await sub.reply()).toEqual(['subscribe', 'news', 1]);
      // Whichever node poolside subscribed on, a message published on each of the three arrives.
      const primaries = tags.map((t) => t.node);
      for (const [i, node] of primaries.entries()) expect(await cluster.command(node, 'PUBLISH', 'news', `m${i}`)).toBeTypeOf('number');
      // The cluster bus carries each node's message to the others on its own: no order among them.
      const messages = await sub.take(3);
      expect(messages.map((m) => JSON.stringify(m)).sort()).toEqual(primaries.map((_, i) => JSON.stringify(['message', 'news', `m${i}`])).sort());
      sub.send('UNSUBSCRIBE', 'news');
      expect(await sub.reply()).toEqual(['unsubscribe', 'news', 0]);
    } finally {
      await perTest.run();
    }
  });

  it('refuses SUBSCRIBE queued inside a transaction on its node, so the session never relays one node for all its keys', async () => {
    try {
      const c = await client();
      const a = keyOn(0, 'sub:tx');
      const b = keyOn(1, 'sub:tx');
      expect(await c.call('SET', b, 'b')).toBe('OK');
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', a, 'a')).toBe('QUEUED');
      // Queued, it would turn node 0's pinned connection into the session's relay after
      // DISCARD/EXEC, and every later request for another node's key would get that node's MOVED.
      expect(poolsideReason(await c.call('SUBSCRIBE', 'news'))).toBe('UNSUPPORTED_COMMAND');
      expect(await c.call('EXEC')).toEqual(EXECABORT);
      expect(await c.call('GET', b)).toBe('b');
      expect(await c.call('GET', a)).toBeNull();
      await waitFor(() => pool.servers.every((s) => s.stats().exclusive.borrowed === 0), 'the pinned connection to be given back');
    } finally {
      await perTest.run();
    }
  });

  it('SSUBSCRIBE goes to the shard channel’s owner and hears SPUBLISH through poolside; channels across slots get CROSSSLOT', async () => {
    try {
      const sub = await client();
      const pub = await client();
      expect(await sub.call('SSUBSCRIBE', keyOn(0, 'ch'), keyOn(1, 'ch'))).toEqual(CROSSSLOT);
      for (let i = 0; i < 3; i++) {
        const s = await client();
        const channel = keyOn(i, 'ch');
        s.send('SSUBSCRIBE', channel);
        expect(await s.reply()).toEqual(['ssubscribe', channel, 1]);
        // Subscribed on its owner: the owner counts one shard subscriber.
        expect(await cluster.command(tags[i].node, 'PUBSUB', 'SHARDNUMSUB', channel)).toEqual([channel, 1]);
        expect(await pub.call('SPUBLISH', channel, `hello${i}`)).toBe(1);
        expect(await s.reply()).toEqual(['smessage', channel, `hello${i}`]);
      }
    } finally {
      await perTest.run();
    }
  });
});

describe('connection state in a cluster pool', () => {
  it('accepts SELECT 0 and refuses any other database with Redis Cluster’s own error', async () => {
    try {
      const c = await client();
      expect(await c.call('SELECT', 0)).toBe('OK');
      expect(await c.call('SELECT', 1)).toEqual(new RespError('ERR SELECT is not allowed in cluster mode'));
      const k = keyOn(1, 'select:k');
      expect(await c.call('SET', k, 'db0')).toBe('OK');
      expect(await direct(k, 'GET', k)).toBe('db0');
    } finally {
      await perTest.run();
    }
  });

  it('refuses session state that cannot follow keys across nodes (forwarded AUTH, HELLO 3, CLIENT SETNAME), and the client carries on', async () => {
    try {
      const c = await client();
      for (const command of [['AUTH', 'secret'], ['HELLO', '3'], ['CLIENT', 'SETNAME', 'me'], ['CLIENT', 'TRACKING', 'on']]) {
        expect(poolsideReason(await c.call(...command)), command.join(' ')).toBe('UNSUPPORTED_COMMAND');
      }
      expect(await c.call('HELLO', '2')).toEqual(expect.arrayContaining(['proto', 2]));
      expect(await c.call('SET', keyOn(0, 'state:k'), 'v')).toBe('OK');
      // Inside MULTI the refusal aborts the transaction, as a command that failed to queue does.
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', keyOn(0, 'state:k'), 'w')).toBe('QUEUED');
      expect(poolsideReason(await c.call('CLIENT', 'SETNAME', 'me'))).toBe('UNSUPPORTED_COMMAND');
      expect(await c.call('EXEC')).toEqual(EXECABORT);
      expect(await direct(keyOn(0, 'state:k'), 'GET', keyOn(0, 'state:k'))).toBe('v');
    } finally {
      await perTest.run();
    }
  });
});

describe('a PHP worker on a plain phpredis client', () => {
  it('runs its transactions, WATCH, blocking pop and SELECT through a cluster pool as against one Redis', async () => {
    requirePhpRedis();
    const out = (await runPhp(phpFixture('redis-cluster-stateful.php'), [String(port), tags[0].tag, tags[1].tag])) as Record<string, unknown>;
    expect(out.tx).toEqual([true, 1, 'v1']);
    expect(out.watch_broken).toBe(false);
    expect(out.watch_ok).toEqual([true]);
    expect(out.after_watch).toBe('mine');
    expect(out.blpop).toEqual([`{${tags[1].tag}}php:list`, 'item']);
    expect(out.select0).toBe(true);
    expect(out.select1).toBe(false);
    // phpredis 5.3's getLastError() shows one extra character after this message; the text is the node's.
    expect(String(out.select_error)).toMatch(/^ERR SELECT is not allowed in cluster mode/);
    expect(out.ping).toBe(true);
  });
});

// Last: these change the cluster's topology.
describe('a cluster pool when the topology changes under pinned clients', () => {
  it('passes on the MOVED a blocked client gets when its slot moves, and the sunsubscribe of a moved shard channel', async () => {
    try {
      const blocked = await client();
      const sub = await client();
      const key = keyOn(0, 'moving:list');
      const channel = keyOn(0, 'moving:ch');
      const slot = (await cluster.slotsOf(tags[0].node))[0];
      blocked.send('BLPOP', key, 0);
      sub.send('SSUBSCRIBE', channel);
      expect(await sub.reply()).toEqual(['ssubscribe', channel, 1]);
      await waitFor(async () => /blocked_clients:1\r?\n/.test(String(await cluster.command(tags[0].node, 'INFO', 'clients'))), 'BLPOP to block');
      const to = tags[1].node;
      await cluster.migrateSlot(slot, to);
      expect(await blocked.reply()).toEqual(new RespError(`MOVED ${slot} ${to.address}`));
      expect(await sub.reply()).toEqual(['sunsubscribe', channel, 0]);
      // Passed on, not followed: the relaying connection is still the old node's, which refuses the channel now.
      sub.send('SSUBSCRIBE', channel);
      expect(await sub.reply()).toEqual(new RespError(`MOVED ${slot} ${to.address}`));
      // The blocked client carries on: its next pop goes to the slot's new owner.
      await waitFor(() => pool.cluster?.nodeForSlot(slot)?.name === to.address, 'poolside to learn the slot moved', 10_000);
      blocked.send('BLPOP', key, 0);
      await waitFor(async () => /blocked_clients:1\r?\n/.test(String(await cluster.command(to, 'INFO', 'clients'))), 'BLPOP to block on the new owner');
      expect(await cluster.command(to, 'RPUSH', key, 'after')).toBe(1);
      expect(await blocked.reply()).toEqual([key, 'after']);
      // Moved back, so the tags stay on their nodes for what follows.
      await cluster.migrateSlot(slot, tags[0].node);
      await waitFor(() => pool.cluster?.nodeForSlot(slot)?.name === tags[0].node.address, 'poolside to learn the slot moved back', 10_000);
    } finally {
      await perTest.run();
    }
  });

  it('closes a client whose pinned transaction’s node is killed, as a direct connection would be', async () => {
    try {
      const c = await client();
      const other = await client();
      const k = keyOn(2, 'killed:k');
      expect(await c.call('MULTI')).toBe('OK');
      expect(await c.call('SET', k, 'lost')).toBe('QUEUED');
      await cluster.killPrimary(tags[2].node);
      // The client learns its transaction is gone: an error for what it sends, then the connection closes.
      c.send('EXEC');
      const reply = await c.reply(10_000).catch((err: unknown) => err);
      if (!(reply instanceof Error)) expect(poolsideReason(reply as RespValue)).toBe('SERVER_ERROR');
      expect(await c.closesWithin(10_000)).toBe(true);
      // Nothing of it ran; other clients carry on against the promoted replica.
      await waitFor(async () => (await other.call('GET', k)) === null, 'the promoted replica to serve the slot', 15_000);
    } finally {
      await perTest.run();
    }
  });
});
