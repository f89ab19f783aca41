/**
 * What a `routing: cluster` pool does with a request that has no key to route by: a keyless
 * command (PING, INFO, SCRIPT LOAD), a keyspace-wide one (DBSIZE, KEYS, SCAN, FLUSHALL), or a
 * command whose keys are counted and counted none (EVAL script 0). A request with keys goes to its
 * slot's owner whatever this table says. docs/redis-cluster-keyspace.md is the user-facing copy of
 * this table; test/unit/redis-cluster-keyspace.test.ts checks that the two agree, and that every
 * keyless command Redis 7.0 knows and poolside forwards has a rule here.
 *
 *   any        one node answers (route(null): the next healthy primary in turn)
 *   primaries  sent to every primary, the replies merged (fanout.ts: Merge)
 *   scan       SCAN: a cursor that names the node being scanned (scan-cursor.ts)
 *   slot       routed to the owner of the slot its argument names (CLUSTER COUNTKEYSINSLOT)
 *   refuse     -ERR poolside UNSUPPORTED_COMMAND with the reason
 *
 * Commands that change how a session uses connections (MULTI, SUBSCRIBE, AUTH, SELECT, WAIT, CLIENT
 * ID…) keep their rules from commands.ts and are not in this table, but for the ones a cluster
 * cannot serve the way one server does (below: READONLY, READWRITE, WAIT, WAITAOF).
 */
import type { CommandSpec } from './commands.js';
import { ketamaMerge } from './fanout.js';
import type { Merge } from './fanout.js';

export type ClusterRule =
  | { how: 'any' }
  | { how: 'primaries'; merge: Merge }
  | { how: 'scan' }
  | { how: 'slot'; at: number }
  | { how: 'refuse'; why: string };

const rules = new Map<string, ClusterRule>();

function rule(names: string, r: ClusterRule): void {
  for (const name of names.trim().split(/\s*,\s*|\n\s*/).filter(Boolean)) {
    if (rules.has(name)) throw new Error(`${name} has two cluster rules`);
    rules.set(name, r);
  }
}

const ANY: ClusterRule = { how: 'any' };
const primaries = (merge: Merge): ClusterRule => ({ how: 'primaries', merge });

// The server's vocabulary, its clock, one node's view of itself: any node answers the same, or
// what it answers is documented as one node's.
rule(
  `PING, ECHO, TIME, LOLWUT, LASTSAVE, ROLE, INFO, PFSELFTEST, PUBLISH
   COMMAND, COMMAND COUNT, COMMAND DOCS, COMMAND GETKEYS, COMMAND GETKEYSANDFLAGS, COMMAND HELP, COMMAND INFO, COMMAND LIST
   CONFIG, CONFIG GET, CONFIG HELP
   ACL, ACL WHOAMI, ACL CAT, ACL GENPASS, ACL HELP, ACL LIST, ACL USERS, ACL GETUSER, ACL LOG, ACL DRYRUN
   CLIENT, CLIENT GETNAME, CLIENT GETREDIR, CLIENT TRACKINGINFO, CLIENT HELP
   SCRIPT, SCRIPT HELP
   FUNCTION, FUNCTION LIST, FUNCTION DUMP, FUNCTION STATS, FUNCTION HELP
   MEMORY, MEMORY DOCTOR, MEMORY STATS, MEMORY MALLOC-STATS, MEMORY HELP
   LATENCY, LATENCY DOCTOR, LATENCY GRAPH, LATENCY HISTOGRAM, LATENCY HISTORY, LATENCY LATEST, LATENCY HELP
   SLOWLOG, SLOWLOG HELP
   OBJECT, OBJECT HELP, XINFO, XINFO HELP, XGROUP, XGROUP HELP, PUBSUB, PUBSUB HELP
   CLUSTER INFO, CLUSTER KEYSLOT, CLUSTER HELP`,
  ANY,
);
// Counted keys, none given: a script that names no key runs on any node, as cluster clients send
// it; the rest the node refuses (ZUNION 0 …) as Redis does.
rule('EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, FCALL, FCALL_RO, ZINTER, ZUNION, ZDIFF, SINTERCARD, ZINTERCARD, LMPOP, ZMPOP', ANY);

// The keyspace is the sum of the primaries'.
rule('DBSIZE', primaries('sum'));
rule('KEYS', primaries('concat'));
rule('RANDOMKEY', primaries('random'));
rule('SCAN', { how: 'scan' });
rule('FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION FLUSH, FUNCTION DELETE, FUNCTION RESTORE', primaries('all-ok'));
// Scripts and functions are each node's own: loaded on every primary, so EVALSHA and FCALL find
// them wherever their keys lead.
rule('SCRIPT LOAD, FUNCTION LOAD', primaries('same'));
rule('SCRIPT EXISTS', primaries('and'));
// Only the node running the script can kill it; the others say NOTBUSY.
rule('SCRIPT KILL, FUNCTION KILL', primaries('any-ok'));
rule('SAVE, BGSAVE, BGREWRITEAOF', primaries('same'));
rule('CONFIG RESETSTAT, MEMORY PURGE, SLOWLOG RESET', primaries('all-ok'));
rule('SLOWLOG LEN, LATENCY RESET, PUBSUB NUMPAT', primaries('sum'));
rule('SLOWLOG GET', primaries('concat'));
// Subscriptions live on the node a client subscribed on.
rule('PUBSUB CHANNELS, PUBSUB SHARDCHANNELS', primaries('union'));
rule('PUBSUB NUMSUB, PUBSUB SHARDNUMSUB', primaries('pairs-sum'));

rule('CLUSTER COUNTKEYSINSLOT, CLUSTER GETKEYSINSLOT', { how: 'slot', at: 2 });

const ONE_DB = { how: 'refuse', why: 'has no meaning in a cluster, which has only database 0' } as const;
rule('SWAPDB', ONE_DB);
const TOPOLOGY: ClusterRule = {
  how: 'refuse',
  why: 'would hand the client the nodes themselves; poolside holds the topology, connect with a plain client',
};
rule('CLUSTER NODES, CLUSTER SLOTS, CLUSTER SHARDS, CLUSTER MYID, CLUSTER LINKS, CLUSTER REPLICAS, CLUSTER SLAVES, CLUSTER COUNT-FAILURE-REPORTS', TOPOLOGY);
const PER_NODE: ClusterRule = {
  how: 'refuse',
  why: "changes one node's configuration; poolside sees only the primaries, so set it on every node (replicas too) directly",
};
rule('CONFIG SET, CONFIG REWRITE, ACL SETUSER, ACL DELUSER, ACL LOAD, ACL SAVE', PER_NODE);
rule('READONLY, READWRITE', {
  how: 'refuse',
  why: "is poolside's to send: reads go to replicas by the pool's read_from",
});
rule('WAIT, WAITAOF', {
  how: 'refuse',
  why: "counts one node's replicas, and a client's writes in a cluster pool go to several primaries",
});

/** The cluster rule of a command or subcommand by its spec name (`SCRIPT LOAD`), if it has one. */
export function clusterRule(name: string): ClusterRule | undefined {
  return rules.get(name);
}

/** Every rule, for the test against the documentation. */
export function clusterRules(): ReadonlyMap<string, ClusterRule> {
  return rules;
}

/**
 * How a cluster pool classifies a request: the spec commands.ts (and the pool's policy) gave it,
 * adjusted by its rule. Specs are mapped once per spec object and cached: per request this costs
 * one Map lookup.
 */
export class ClusterClassifier {
  readonly #adjusted = new Map<CommandSpec, CommandSpec>();

  /** The spec this pool uses for `spec`. A refusal by the command policy (use `denied`) stays one. */
  apply(spec: CommandSpec): CommandSpec {
    if (spec.use === 'denied') return spec;
    let adjusted = this.#adjusted.get(spec);
    if (adjusted === undefined) {
      adjusted = adjust(spec);
      // The tables' specs are a bounded set; a module command's spec has no rule and stays itself.
      if (adjusted !== spec || this.#adjusted.size < 4096) this.#adjusted.set(spec, adjusted);
    }
    return adjusted;
  }
}

function adjust(spec: CommandSpec): CommandSpec {
  const r = rules.get(spec.name);
  if (r === undefined) return spec;
  switch (r.how) {
    case 'refuse':
      return { name: spec.name, use: 'unsupported', keys: spec.keys, idempotent: false, note: `${r.why} (cluster pool)` };
    case 'primaries':
      return { ...spec, use: 'shared', spread: 'all' };
    case 'any':
    case 'scan':
    case 'slot':
      // CLUSTER INFO and its kin are refused on other pools: here they run like any read.
      return spec.use === 'unsupported' ? { ...spec, use: 'shared', idempotent: true, note: '' } : spec;
  }
}

/**
 * How a cluster pool merges a request's parts: its keyspace rule's merge for a keyless command
 * sent to every primary, else the ketama merge (a split MGET, DEL…: by key).
 */
export function clusterMerge(spec: CommandSpec): Merge | undefined {
  const r = rules.get(spec.name);
  return r !== undefined && r.how === 'primaries' ? r.merge : ketamaMerge(spec);
}
