/**
 * A real Redis Cluster for integration tests: N primaries with R replicas each, every node a
 * redis-server (`--cluster-enabled yes`) on free loopback ports in its own temp directory, joined
 * with `redis-cli --cluster create`. The cluster is the oracle: tests change its topology on
 * demand (slot migration by hand or with `redis-cli --cluster reshard`, manual failover, a killed
 * or frozen primary) and every operation waits, by polling until a deadline, until the change is
 * done and every running node agrees on it.
 *
 *   const cluster = await startCluster(cleanup, { primaries: 3, replicasPerPrimary: 1 });
 *   const owner = await cluster.ownerOfKey('user:1');
 *   const held = await cluster.migrateSlot(slot, target, { stopAt: 'migrating' }); // ASK now
 *   await held.finish();
 *   const promoted = await cluster.killPrimary(owner);
 *
 * `cluster-node-timeout` is small (1000ms by default) so failure detection and promotion take a
 * few seconds; `cluster-replica-validity-factor 0` lets any replica take over however long its link
 * was down, and `cluster-allow-replica-migration no` keeps replicas where the test put them.
 */
import { execFile } from 'node:child_process';
import type { Cleanup } from './cleanup.js';
import { RawClient, RespError } from './resp-client.js';
import type { RespValue } from './resp-client.js';
import { freePort, RedisServer, requireBinary, waitFor } from './servers.js';

export const SLOTS = 16384;

export type NodeRole = 'primary' | 'replica';

/** Whether the test process left the node running, froze it (SIGSTOP), or killed it. */
export type NodeProcessState = 'running' | 'paused' | 'killed';

/** One redis-server of the cluster. Its id and ports stay the same across restart(). */
export class ClusterNode {
  readonly id: string;
  readonly #server: RedisServer;
  #state: NodeProcessState = 'running';

  constructor(server: RedisServer, id: string) {
    this.#server = server;
    this.id = id;
  }

  get port(): number {
    return this.#server.port;
  }

  get address(): string {
    return this.#server.address;
  }

  get pid(): number {
    return this.#server.pid;
  }

  get state(): NodeProcessState {
    return this.#state;
  }

  /** A short name for messages: `127.0.0.1:port (abcdef12)`. */
  toString(): string {
    return `${this.address} (${this.id.slice(0, 8)})`;
  }

  /** @internal ClusterNode's process is driven by its RedisCluster only. */
  async kill(): Promise<void> {
    await this.#server.kill();
    this.#state = 'killed';
  }

  /** @internal */
  async start(): Promise<void> {
    await this.#server.restart();
    this.#state = 'running';
  }

  /** @internal */
  async pause(): Promise<void> {
    await this.#server.freeze();
    this.#state = 'paused';
  }

  /** @internal */
  resume(): void {
    this.#server.signal('SIGCONT');
    this.#state = 'running';
  }

  /** @internal */
  async stop(): Promise<void> {
    this.#server.signal('SIGCONT');
    await this.#server.stop();
    this.#state = 'killed';
  }
}

/** One node as the cluster sees it (CLUSTER NODES of a running node). */
export interface NodeView {
  id: string;
  port: number;
  role: NodeRole;
  /** The primary a replica follows; null for a primary. */
  primaryId: string | null;
  /** Flagged FAIL by the cluster (PFAIL, a single node's suspicion, is not counted). */
  failed: boolean;
  /** Slot ranges [first, last] this primary serves. */
  slots: [number, number][];
  /** Slots the node marks MIGRATING or IMPORTING (only its own, CLUSTER NODES shows no others). */
  migrating: number[];
}

export interface ClusterOptions {
  primaries?: number;
  replicasPerPrimary?: number;
  /** cluster-node-timeout: how long a node may be unreachable before it is suspected. */
  nodeTimeoutMs?: number;
  /** Extra redis-server arguments for every node. */
  extraArgs?: string[];
}

/** The per-node timeout of commands the harness sends (a frozen node must not hang a test). */
const COMMAND_TIMEOUT_MS = 3000;
/** How long a topology change may take to settle before the harness gives up. */
const SETTLE_MS = 20_000;
const POLL_MS = 50;

/** A slot held in the middle of a migration: some keys moved, source MIGRATING, target IMPORTING. */
export interface SlotMigration {
  readonly slot: number;
  readonly from: ClusterNode;
  readonly to: ClusterNode;
  /** MIGRATEs up to `count` more keys of the slot from source to target (all by default); returns how many moved. */
  moveKeys(count?: number): Promise<number>;
  /** Moves every key left, gives the slot to the target on every primary, and waits until the cluster agrees. */
  finish(): Promise<void>;
}

export class RedisCluster {
  readonly nodes: readonly ClusterNode[];
  readonly #redisCli: string;

  private constructor(nodes: ClusterNode[], redisCli: string) {
    this.nodes = nodes;
    this.#redisCli = redisCli;
  }

  /**
   * Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every node
   * says cluster_state:ok and all agree on the slot map and the roles.
   */
  static async start(options: ClusterOptions = {}): Promise<RedisCluster> {
    requireBinary('redis-server', 'redis-server');
    const redisCli = requireBinary('redis-cli', 'redis-tools');
    const primaries = options.primaries ?? 3;
    const replicas = options.replicasPerPrimary ?? 1;
    const args = [
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1000),
      '--cluster-replica-validity-factor', '0',
      '--cluster-allow-replica-migration', 'no',
      '--cluster-require-full-coverage', 'yes',
      // A replica's full sync starts at once, not after redis's 5s wait for more replicas to batch.
      '--repl-diskless-sync-delay', '0',
      ...(options.extraArgs ?? []),
    ];
    const settled = await Promise.allSettled(Array.from({ length: primaries * (1 + replicas) }, () => startNode(args)));
    const nodes = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const cluster = new RedisCluster(nodes, redisCli);
    try {
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      await cluster.#redisCliRun(['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes']);
      await cluster.waitStable();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Sends one command to `node` on a fresh connection; an error reply is returned as a RespError, not thrown. */
  async command(node: ClusterNode, ...args: (string | number)[]): Promise<RespValue> {
    const client = await withTimeout(RawClient.connect(node.port), COMMAND_TIMEOUT_MS, `connect to ${node}`);
    try {
      client.send(...args);
      return await client.reply(COMMAND_TIMEOUT_MS);
    } finally {
      client.destroy();
    }
  }

  /** As command(), but an error reply throws. */
  async must(node: ClusterNode, ...args: (string | number)[]): Promise<RespValue> {
    const reply = await this.command(node, ...args);
    if (reply instanceof RespError) throw new Error(`${args.join(' ')} on ${node}: ${reply.message}`);
    return reply;
  }

  node(id: string): ClusterNode {
    const found = this.nodes.find((n) => n.id === id);
    if (found === undefined) throw new Error(`no node ${id} in this cluster`);
    return found;
  }

  /** Every node as a running node sees it now. */
  async view(): Promise<NodeView[]> {
    for (const node of this.#running()) {
      try {
        return parseClusterNodes(String(await this.must(node, 'CLUSTER', 'NODES')));
      } catch {
        // try the next running node
      }
    }
    throw new Error('no running node of the cluster answers CLUSTER NODES');
  }

  async roleOf(node: ClusterNode): Promise<NodeRole> {
    return viewOf(await this.view(), node.id).role;
  }

  /** The primaries that serve slots now. */
  async primaries(): Promise<ClusterNode[]> {
    return (await this.view()).filter((v) => v.role === 'primary' && v.slots.length > 0).map((v) => this.node(v.id));
  }

  async replicasOf(primary: ClusterNode): Promise<ClusterNode[]> {
    return (await this.view()).filter((v) => v.role === 'replica' && v.primaryId === primary.id).map((v) => this.node(v.id));
  }

  async ownerOfSlot(slot: number): Promise<ClusterNode> {
    const owner = (await this.view()).find((v) => v.role === 'primary' && v.slots.some(([a, b]) => slot >= a && slot <= b));
    if (owner === undefined) throw new Error(`no primary serves slot ${slot}`);
    return this.node(owner.id);
  }

  /** The slot of `key`, by CLUSTER KEYSLOT (hash tags included). */
  async slotOf(key: string): Promise<number> {
    const node = this.#running()[0];
    if (node === undefined) throw new Error('no running node');
    return Number(await this.must(node, 'CLUSTER', 'KEYSLOT', key));
  }

  async ownerOfKey(key: string): Promise<ClusterNode> {
    return this.ownerOfSlot(await this.slotOf(key));
  }

  /** The slots `primary` serves now, one by one. */
  async slotsOf(primary: ClusterNode): Promise<number[]> {
    const view = viewOf(await this.view(), primary.id);
    return view.slots.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
  }

  /**
   * Moves `slot` to primary `to` by hand: SETSLOT IMPORTING on the target, MIGRATING on the source,
   * MIGRATE of its keys (GETKEYSINSLOT), SETSLOT NODE on target, source and the other primaries.
   * With `stopAt: 'migrating'` it stops after moving half of the slot's keys (rounded down) so a
   * test can watch the ASK redirections for the moved (and new) keys while the source still serves
   * the others; the returned SlotMigration finishes it. With 'done' (default) it is finished.
   */
  async migrateSlot(slot: number, to: ClusterNode, options: { stopAt?: 'migrating' | 'done' } = {}): Promise<SlotMigration> {
    const from = await this.ownerOfSlot(slot);
    if (from === to) throw new Error(`slot ${slot} is already on ${to}`);
    await this.must(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
    await this.must(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
    const moveKeys = async (count = Infinity): Promise<number> => {
      let moved = 0;
      while (moved < count) {
        const batch = Math.min(100, count - moved);
        const keys = (await this.must(from, 'CLUSTER', 'GETKEYSINSLOT', slot, batch)) as string[];
        if (keys.length === 0) break;
        await this.must(from, 'MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys);
        moved += keys.length;
      }
      return moved;
    };
    const finish = async (): Promise<void> => {
      await moveKeys();
      // The target first (it may then answer for the slot), the source next (it stops sending ASK),
      // then every other primary; replicas learn it from their primaries.
      await this.must(to, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      await this.must(from, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      for (const primary of await this.primaries()) {
        if (primary !== to && primary !== from && primary.state === 'running') await this.must(primary, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      }
      await this.waitStable();
      const owner = await this.ownerOfSlot(slot);
      if (owner !== to) throw new Error(`slot ${slot} ended on ${owner}, not ${to}`);
    };
    const migration: SlotMigration = { slot, from, to, moveKeys, finish };
    if ((options.stopAt ?? 'done') === 'done') {
      await finish();
    } else {
      const count = Number(await this.must(from, 'CLUSTER', 'COUNTKEYSINSLOT', slot));
      await moveKeys(Math.floor(count / 2));
    }
    return migration;
  }

  /** `redis-cli --cluster reshard`: moves `count` slots from primary `from` to primary `to`; returns the slots moved. */
  async reshard(count: number, from: ClusterNode, to: ClusterNode): Promise<number[]> {
    await this.waitStable();
    const before = new Set(await this.slotsOf(to));
    await this.#redisCliRun([
      '--cluster', 'reshard', from.address,
      '--cluster-from', from.id, '--cluster-to', to.id, '--cluster-slots', String(count),
      '--cluster-yes',
    ]);
    await this.waitStable();
    return (await this.slotsOf(to)).filter((s) => !before.has(s));
  }

  /** CLUSTER FAILOVER on `replica`; waits until every running node sees it as the primary and its old primary as its replica. */
  async manualFailover(replica: ClusterNode): Promise<void> {
    const view = viewOf(await this.view(), replica.id);
    if (view.role !== 'replica' || view.primaryId === null) throw new Error(`${replica} is not a replica`);
    const old = this.node(view.primaryId);
    await this.must(replica, 'CLUSTER', 'FAILOVER');
    await this.#waitAgreed(`manual failover of ${old} to ${replica}`, (v) => {
      const r = viewOf(v, replica.id);
      const o = viewOf(v, old.id);
      return r.role === 'primary' && r.slots.length > 0 && o.role === 'replica' && o.primaryId === replica.id;
    });
  }

  /**
   * SIGKILLs primary `node` and waits until one of its replicas is promoted, every running node
   * agrees and says cluster_state:ok. Returns the new primary. The node stays down until restart().
   */
  async killPrimary(node: ClusterNode): Promise<ClusterNode> {
    const replicas = await this.replicasOf(node);
    if (replicas.length === 0) throw new Error(`${node} has no replica to promote`);
    await node.kill();
    return this.#waitPromotion(node, replicas);
  }

  /** SIGKILLs any node without waiting for anything (restart() brings it back). */
  async kill(node: ClusterNode): Promise<void> {
    await node.kill();
  }

  /** Starts a killed node again on its port and directory (same node id) and waits until it has rejoined. */
  async restart(node: ClusterNode): Promise<void> {
    await node.start();
    await this.waitStable();
  }

  /** SIGSTOP: the node keeps its sockets and answers nothing, as a frozen host would (stopped on return). */
  async pause(node: ClusterNode): Promise<void> {
    await node.pause();
  }

  /** SIGCONT: does not wait; call waitStable() to wait for the node to catch up. */
  resume(node: ClusterNode): void {
    node.resume();
  }

  /** Waits until a replica of the frozen or killed primary `node` serves its slots everywhere (cluster_state:ok). */
  async waitPromotion(node: ClusterNode): Promise<ClusterNode> {
    return this.#waitPromotion(node, null);
  }

  /**
   * Waits until every running node says cluster_state:ok, all agree on roles, slots and which nodes
   * have failed, no slot is migrating, every slot has a primary, and every running replica's link
   * to its primary is up.
   */
  async waitStable(timeoutMs = SETTLE_MS): Promise<void> {
    await this.#waitAgreed('a stable cluster', () => true, timeoutMs);
  }

  /** Kills every node and removes its directory. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** A one-line-per-node picture of the cluster for failure messages. */
  async describe(): Promise<string> {
    try {
      return (await this.view()).map((v) => `${v.port} ${v.id.slice(0, 8)} ${v.role}${v.failed ? ' FAIL' : ''} ${v.slots.map(([a, b]) => (a === b ? a : `${a}-${b}`)).join(',')}`).join('\n');
    } catch (err) {
      return String(err);
    }
  }

  async #waitPromotion(node: ClusterNode, candidates: ClusterNode[] | null): Promise<ClusterNode> {
    const before = viewOf(await this.view(), node.id);
    if (before.role !== 'primary' || before.slots.length === 0) throw new Error(`${node} serves no slots`);
    const slot = before.slots[0][0];
    await this.#waitAgreed(`a replica of ${node} promoted`, (v) => {
      const owner = v.find((n) => n.role === 'primary' && n.slots.some(([a, b]) => slot >= a && slot <= b));
      return owner !== undefined && owner.id !== node.id && (candidates === null || candidates.some((c) => c.id === owner.id));
    });
    return this.ownerOfSlot(slot);
  }

  #running(): ClusterNode[] {
    return this.nodes.filter((n) => n.state === 'running');
  }

  /** Polls until the stable condition holds and `also` is true of the (agreed) view. */
  async #waitAgreed(what: string, also: (view: NodeView[]) => boolean, timeoutMs = SETTLE_MS): Promise<void> {
    let last = 'nothing checked yet';
    try {
      await waitFor(
        async () => {
          const problem = await this.#instability(also);
          last = problem ?? 'ok';
          return problem === null;
        },
        what,
        timeoutMs,
        POLL_MS,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last problem: ${last}\n${await this.describe()}`);
    }
  }

  /** Null when the cluster is stable (and `also` holds), else what is not yet. */
  async #instability(also: (view: NodeView[]) => boolean): Promise<string | null> {
    const running = this.#running();
    if (running.length === 0) return 'no running node';
    let agreed: string | null = null;
    let agreedView: NodeView[] = [];
    for (const node of running) {
      let info: string;
      let nodesText: string;
      try {
        info = String(await this.must(node, 'CLUSTER', 'INFO'));
        nodesText = String(await this.must(node, 'CLUSTER', 'NODES'));
      } catch (err) {
        return `${node}: ${(err as Error).message}`;
      }
      if (!info.includes('cluster_state:ok')) return `${node} says cluster_state is not ok`;
      const view = parseClusterNodes(nodesText);
      const mine = view.find((v) => v.id === node.id);
      if (mine === undefined) return `${node} does not know itself`;
      if (mine.migrating.length > 0) return `${node} has slots migrating/importing: ${mine.migrating.join(',')}`;
      const key = canonical(view);
      if (agreed === null) {
        agreed = key;
        agreedView = view;
      } else if (key !== agreed) {
        return `${node} disagrees:\n${key}\nvs\n${agreed}`;
      }
      if (mine.role === 'replica') {
        const repl = String(await this.must(node, 'INFO', 'replication'));
        if (!repl.includes('master_link_status:up')) return `${node}: replication link not up`;
      }
    }
    for (const node of running) {
      const v = agreedView.find((n) => n.id === node.id);
      if (v === undefined) return `${node} is not known to the cluster`;
      if (v.failed) return `${node} is running but flagged FAIL`;
    }
    const covered = agreedView.filter((v) => v.role === 'primary' && !v.failed).reduce((n, v) => n + v.slots.reduce((m, [a, b]) => m + b - a + 1, 0), 0);
    if (covered !== SLOTS) return `live primaries serve ${covered} of ${SLOTS} slots`;
    if (!also(agreedView)) return 'the expected change is not there yet';
    return null;
  }

  async #redisCliRun(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.#redisCli, args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`redis-cli ${args.slice(0, 2).join(' ')} failed: ${err.message}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`));
        else resolve(stdout);
      });
    });
  }
}

/** A cluster for one test, stopped by `cleanup` (frozen nodes are resumed and killed). */
export async function startCluster(cleanup: Cleanup, options: ClusterOptions = {}): Promise<RedisCluster> {
  return cleanup.add(await RedisCluster.start(options), (c) => c.stop());
}

/** One node on a free port with a free cluster-bus port (`cluster-port`: port+10000 may be taken or above 65535). */
async function startNode(args: string[]): Promise<ClusterNode> {
  for (let attempt = 0; ; attempt++) {
    let server: RedisServer | null = null;
    try {
      server = await RedisServer.start([...args, '--cluster-port', String(await freePort())]);
      const id = String(await rawReply(server.port, ['CLUSTER', 'MYID']));
      return new ClusterNode(server, id);
    } catch (err) {
      await server?.stop();
      if (attempt >= 3) throw err;
    }
  }
}

async function rawReply(port: number, args: string[]): Promise<RespValue> {
  const client = await RawClient.connect(port);
  try {
    client.send(...args);
    const reply = await client.reply(COMMAND_TIMEOUT_MS);
    if (reply instanceof RespError) throw new Error(`${args.join(' ')}: ${reply.message}`);
    return reply;
  } finally {
    client.destroy();
  }
}

function viewOf(view: NodeView[], id: string): NodeView {
  const found = view.find((v) => v.id === id);
  if (found === undefined) throw new Error(`node ${id} is not in the cluster's view`);
  return found;
}

/**
 * Parses CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <primary|-> <ping> <pong> <epoch>
 * <link> <slot ranges…>`, with `[slot->-id]`/`[slot-<-id]` for a slot migrating or importing.
 */
export function parseClusterNodes(text: string): NodeView[] {
  const out: NodeView[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    if (fields.length < 8) continue;
    const [id, addr, flagText, primary] = fields;
    const flags = flagText.split(',');
    const port = Number(/:(\d+)@/.exec(addr)?.[1] ?? 0);
    const slots: [number, number][] = [];
    const migrating: number[] = [];
    for (const s of fields.slice(8)) {
      if (s.startsWith('[')) {
        migrating.push(Number(/^\[(\d+)/.exec(s)?.[1]));
      } else if (s.includes('-')) {
        const [a, b] = s.split('-').map(Number);
        slots.push([a, b]);
      } else if (s !== '') {
        slots.push([Number(s), Number(s)]);
      }
    }
    out.push({
      id,
      port,
      role: flags.includes('slave') ? 'replica' : 'primary',
      primaryId: primary === '-' ? null : primary,
      failed: flags.includes('fail'),
      slots,
      migrating,
    });
  }
  return out;
}

/** The parts of a view every node must agree on, as one string. */
function canonical(view: NodeView[]): string {
  return [...view]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((v) => `${v.id} ${v.port} ${v.role} ${v.primaryId ?? '-'}${v.failed ? ' fail' : ''} ${v.slots.map(([a, b]) => `${a}-${b}`).join(',')}`)
    .join('\n');
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
    }),
  ]);
}

// The key → slot function of the Redis Cluster spec (CRC-16/XMODEM of the key or of its first
// non-empty {hash tag}, mod 16384), written out here so tests can place keys without a round trip
// and without poolside's own implementation; the harness test checks it against CLUSTER KEYSLOT.
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n << 8;
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    table[n] = c;
  }
  return table;
})();

function crc16(bytes: Buffer): number {
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff];
  return crc;
}

/** The slot of `key`: CRC16 of its first non-empty {hash tag}, or of the whole key. */
export function keySlot(key: string | Buffer): number {
  const bytes = Buffer.isBuffer(key) ? key : Buffer.from(key);
  const open = bytes.indexOf('{');
  if (open >= 0) {
    const close = bytes.indexOf('}', open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

/** A short hash tag whose slot is `slot`: `{tag}anything` lands there. */
export function tagForSlot(slot: number): string {
  for (let n = 0; ; n++) {
    const tag = n.toString(36);
    if (keySlot(tag) === slot) return tag;
  }
}
