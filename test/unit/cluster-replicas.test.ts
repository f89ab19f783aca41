/**
 * read_from's choice of replica (src/cluster/replicas.ts) over real, unstarted ServerPools (no
 * connection: health `starting`, nothing ready): `replica` waits for a replica in routing,
 * `prefer_replica` never waits, `primary` has none; the replica set follows each new map, and a
 * replica promoted to primary is neither kept as a replica nor drained.
 */
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ReplicaReads } from '../../src/cluster/replicas.js';
import type { NodeAddress } from '../../src/cluster/shards.js';
import { codecFor } from '../../src/codec/registry.js';
import { parseConfig } from '../../src/config/load.js';
import type { ReadFrom } from '../../src/config/schema.js';
import { ServerPool } from '../../src/pool/server-pool.js';
import { Cleanup } from '../helpers/cleanup.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { quietLog } from '../helpers/proxy.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const config = parseConfig(YAML.stringify({ admin: false, pools: { c: { protocol: 'redis', listen: ['127.0.0.1:0'], routing: 'cluster', servers: ['127.0.0.1:7000'] } } }), 'test.yaml').pools[0];

function node(port: number): ServerPool {
  const server = new ServerPool({ ...config.servers[0], address: { kind: 'tcp', host: '127.0.0.1', port }, name: `127.0.0.1:${port}` }, config, codecFor('redis'), new FakeClock(), quietLog(), {
    onConnectionReady() {},
    onHealthChange() {},
    everyServerEjected: () => false,
    onInternalError(error: unknown) {
      throw error;
    },
  });
  return cleanup.add(server, (s) => s.close());
}

const address = (port: number, health: string | null = 'online'): NodeAddress => ({ host: '127.0.0.1', port, id: null, health });

/** A map of one shard (primary 7000) with the given replicas; nodes are made on demand and remembered. */
function setup(mode: ReadFrom): { reads: ReplicaReads; primary: ServerPool; apply: (replicas: NodeAddress[], primaries?: ServerPool[]) => ServerPool[]; made: Map<string, ServerPool> } {
  const reads = new ReplicaReads(mode);
  const primary = node(7000);
  const made = new Map<string, ServerPool>();
  const apply = (replicas: NodeAddress[], primaries: ServerPool[] = [primary]): ServerPool[] =>
    reads.apply([{ primary, replicas }], new Set(primaries), (key, a) => {
      const found = made.get(key) ?? node(a.port);
      made.set(key, found);
      return found;
    });
  return { reads, primary, apply, made };
}

describe('ReplicaReads', () => {
  it('primary: creates no replica node and picks none', () => {
    const { reads, primary, apply, made } = setup('primary');
    expect(apply([address(7001)])).toEqual([]);
    expect(made.size).toBe(0);
    expect(reads.pick(primary)).toBeNull();
    expect(reads.enabled).toBe(false);
  });

  it('replica: a replica still connecting takes the read (it is waited for); one the cluster calls loading does not', () => {
    const { reads, primary, apply } = setup('replica');
    apply([address(7001)]);
    expect(reads.pick(primary)?.name).toBe('127.0.0.1:7001');
    apply([address(7001, 'loading')]);
    expect(reads.pick(primary)).toBeNull();
  });

  it('prefer_replica: a replica with no ready connection is passed over for the primary', () => {
    const { reads, primary, apply } = setup('prefer_replica');
    apply([address(7001)]);
    expect(reads.replicasOf(primary).map((s) => s.name)).toEqual(['127.0.0.1:7001']);
    expect(reads.pick(primary)).toBeNull();
  });

  it('follows the map: failed replicas left out, gone ones handed back to drain, a promoted one kept as a primary', () => {
    const { reads, primary, apply, made } = setup('replica');
    expect(apply([address(7001), address(7002), address(7003, 'fail')])).toEqual([]);
    expect([...reads.servers()].map((s) => s.name)).toEqual(['127.0.0.1:7001', '127.0.0.1:7002']);
    // Both replicas take turns.
    expect(new Set([reads.pick(primary)?.name, reads.pick(primary)?.name])).toEqual(new Set(['127.0.0.1:7001', '127.0.0.1:7002']));
    // 7002 left the topology: drained; the same 7001 node is kept.
    const first = made.get('127.0.0.1:7001');
    expect(apply([address(7001)]).map((s) => s.name)).toEqual(['127.0.0.1:7002']);
    expect(reads.find('127.0.0.1:7001')).toBe(first);
    // 7001 promoted (a primary of the new map): not a replica any more, and not drained either.
    const promoted = made.get('127.0.0.1:7001');
    if (promoted === undefined) throw new Error('7001 was never made');
    expect(apply([], [primary, promoted])).toEqual([]);
    expect([...reads.servers()]).toEqual([]);
    expect(reads.pick(primary)).toBeNull();
  });
});
