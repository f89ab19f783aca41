/**
 * A cluster pool's topology as metrics and /stats read it (metrics.ts ClusterView), built from the
 * topology's counters and slot map at scrape time: one pass over the 16384 slots for the ranges,
 * nothing kept between scrapes.
 */
import type { ClusterNodeView, ClusterView } from '../metrics.js';
import type { ServerPool } from '../pool/server-pool.js';
import { nodeKey } from './shards.js';
import { SLOTS } from './slot.js';
import type { ClusterTopology } from './topology.js';
import { REFRESH_TRIGGERS } from './topology.js';

export function clusterView(topology: ClusterTopology): ClusterView {
  const stats = topology.stats();
  const refreshes = new Map<string, { success: number; failure: number }>();
  for (const trigger of REFRESH_TRIGGERS) refreshes.set(trigger, { success: stats.refreshes.ok[trigger], failure: stats.refreshes.failed[trigger] });
  const nodes: ClusterNodeView[] = [];
  // Before the first map the nodes are only seeds: no roles to tell yet.
  if (stats.lastRefreshOk > 0) {
    const ranges = slotRanges(topology);
    for (const primary of topology.primaries()) {
      nodes.push({ server: primary.name, role: 'primary', primary: null, slots: ranges.get(primary) ?? [] });
      const connected = topology.replicasOf(primary);
      if (connected.length > 0) {
        for (const replica of connected) nodes.push({ server: replica.name, role: 'replica', primary: primary.name, slots: [] });
        continue;
      }
      // read_from: primary: replicas have no connections (no server of the pool), but they are
      // the cluster's nodes all the same.
      for (const address of topology.describe(primary)?.replicas ?? []) {
        if (address.health === 'fail' || address.health === 'failed') continue;
        nodes.push({ server: nodeKey(address.host, address.port), role: 'replica', primary: primary.name, slots: [] });
      }
    }
  }
  return {
    epoch: stats.epoch,
    slotsCovered: stats.slotsCovered,
    redirections: stats.redirections,
    refreshes,
    refreshesCoalesced: stats.refreshesCoalesced,
    lastRefreshAt: stats.lastRefreshOk,
    nodes,
  };
}

/** Each owner's slots as inclusive ranges, in slot order. */
function slotRanges(topology: ClusterTopology): Map<ServerPool, [number, number][]> {
  const out = new Map<ServerPool, [number, number][]>();
  let owner: ServerPool | null = null;
  let first = 0;
  const close = (last: number): void => {
    if (owner === null) return;
    let list = out.get(owner);
    if (list === undefined) out.set(owner, (list = []));
    list.push([first, last]);
  };
  for (let slot = 0; slot < SLOTS; slot++) {
    const node = topology.nodeForSlot(slot);
    if (node === owner) continue;
    close(slot - 1);
    owner = node;
    first = slot;
  }
  close(SLOTS - 1);
  return out;
}
