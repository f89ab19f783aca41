/**
 * What poolside does with each Redis command: where its keys are (for ketama routing), whether it
 * may be retried on another connection, whether it only reads (a cluster replica may answer it),
 * and whether it needs a connection of its own.
 * docs/redis-commands.md is the user-facing copy of these tables: keep them in step.
 */

export type { CommandSpec, KeySpec, LeaseUse } from '../codec.js';
import type { ArgView, CommandSpec, KeySpec, LeaseUse } from '../codec.js';
import { commandName } from './resp-request.js';
import { SPREADS } from './fanout.js';

const NONE: KeySpec = { kind: 'none' };
const FIRST: KeySpec = { kind: 'range', first: 1, last: 1, step: 1 };
const ALL: KeySpec = { kind: 'range', first: 1, last: -1, step: 1 };
const PAIRS: KeySpec = { kind: 'range', first: 1, last: -1, step: 2 };
const ALL_BUT_LAST: KeySpec = { kind: 'range', first: 1, last: -2, step: 1 };
const TWO: KeySpec = { kind: 'range', first: 1, last: 2, step: 1 };
const NUMKEYS_1: KeySpec = { kind: 'numkeys', at: 1 };
const NUMKEYS_2: KeySpec = { kind: 'numkeys', at: 2 };
const STREAMS: KeySpec = { kind: 'streams' };

const table = new Map<string, CommandSpec>();

function define(names: string, use: LeaseUse, keys: KeySpec, idempotent: boolean, note = ''): void {
  for (const name of names.split(/\s+/).filter(Boolean)) table.set(name, { name, use, keys, idempotent, note });
}

/**
 * A command whose first argument names what it does (CONFIG GET, SCRIPT DEBUG, CLIENT KILL): each
 * subcommand has a spec of its own, because one container holds reads, state changes and admin
 * actions alike. `bare` answers the container alone and subcommands the tables do not know (the
 * server refuses both).
 */
interface Container {
  bare: CommandSpec;
  /** Uppercased subcommand names and their specs, searched in order without allocating. */
  names: string[];
  specs: CommandSpec[];
}

const containers = new Map<string, Container>();

function container(name: string, use: LeaseUse, idempotent: boolean, note = ''): void {
  containers.set(name, { bare: { name, use, keys: NONE, idempotent, note }, names: [], specs: [] });
}

function defineSub(parent: string, subs: string, use: LeaseUse, keys: KeySpec, idempotent: boolean, note = ''): void {
  const c = containers.get(parent);
  if (c === undefined) throw new Error(`${parent} is not a container command`);
  for (const sub of subs.split(/\s+/).filter(Boolean)) {
    c.names.push(sub);
    c.specs.push({ name: `${parent} ${sub}`, use, keys, idempotent, note });
  }
}

const UNSUPPORTED = 'is not supported through poolside';
const OTHERS = 'acts on other clients and is not supported through poolside';

// Reads of one key: safe to retry.
define(
  `GET STRLEN GETRANGE SUBSTR GETBIT BITCOUNT BITPOS BITFIELD_RO TYPE TTL PTTL EXPIRETIME PEXPIRETIME DUMP
   HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HRANDFIELD HSCAN
   LINDEX LLEN LRANGE LPOS SCARD SISMEMBER SMISMEMBER SMEMBERS SRANDMEMBER SSCAN
   ZCARD ZCOUNT ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX ZRANK ZREVRANK
   ZSCORE ZMSCORE ZLEXCOUNT ZRANDMEMBER ZSCAN XRANGE XREVRANGE XLEN XPENDING
   GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH SORT_RO`,
  'shared', FIRST, true,
);
define('LCS', 'shared', TWO, true);
define('MGET EXISTS TOUCH PFCOUNT SINTER SUNION SDIFF', 'shared', ALL, true);
define('ZINTER ZUNION ZDIFF SINTERCARD ZINTERCARD', 'shared', NUMKEYS_1, true);
define('XREAD', 'shared', STREAMS, true);
define('EVAL_RO EVALSHA_RO FCALL_RO', 'shared', NUMKEYS_2, true);
define('PING ECHO TIME DBSIZE LASTSAVE RANDOMKEY KEYS SCAN INFO LOLWUT ROLE', 'shared', NONE, true);

// Writes: never retried, a second run could apply them twice.
define(
  `SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND SETRANGE SETBIT BITFIELD INCR INCRBY INCRBYFLOAT DECR DECRBY
   EXPIRE EXPIREAT PEXPIRE PEXPIREAT PERSIST MOVE RESTORE SORT
   HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT
   LPUSH LPUSHX RPUSH RPUSHX LPOP RPOP LINSERT LSET LREM LTRIM
   SADD SREM SPOP PFADD
   ZADD ZINCRBY ZREM ZPOPMIN ZPOPMAX ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE
   XADD XACK XCLAIM XAUTOCLAIM XDEL XTRIM XSETID GEOADD SPUBLISH`,
  'shared', FIRST, false,
);
define('DEL UNLINK', 'shared', ALL, false);
define('MSET MSETNX', 'shared', PAIRS, false);
define('BITOP', 'shared', { kind: 'range', first: 2, last: -1, step: 1 }, false);
define('RENAME RENAMENX SMOVE LMOVE RPOPLPUSH COPY GEOSEARCHSTORE ZRANGESTORE', 'shared', TWO, false);
define('SINTERSTORE SUNIONSTORE SDIFFSTORE PFMERGE', 'shared', ALL, false);
// The sources count too: on a ketama pool, a source on another server would read as empty.
define('ZINTERSTORE ZUNIONSTORE ZDIFFSTORE', 'shared', { kind: 'store-numkeys' }, false);
define('GEORADIUS GEORADIUSBYMEMBER', 'shared', FIRST, false);
define('EVAL EVALSHA FCALL', 'shared', NUMKEYS_2, false);
define('LMPOP ZMPOP', 'shared', NUMKEYS_1, false);
define('XREADGROUP', 'shared', STREAMS, false);
// MIGRATE copies a key to any host it is given; the default command policy denies it.
define('MIGRATE', 'shared', { kind: 'range', first: 3, last: 3, step: 1 }, false);
// Server-wide actions the default command policy denies (see policy.ts); shared when allowed.
define('PUBLISH FLUSHDB FLUSHALL SAVE BGSAVE BGREWRITEAOF SWAPDB PFSELFTEST', 'shared', NONE, false);

// Retried like a read: selecting the same database twice changes nothing.
define('SELECT', 'select', NONE, true);
define('MULTI', 'pin-open', NONE, false, 'transaction');
define('WATCH', 'pin-open', ALL, false, 'transaction');
define('EXEC DISCARD UNWATCH', 'pin-close', NONE, false);
define('BLPOP BRPOP BZPOPMIN BZPOPMAX', 'pin-once', ALL_BUT_LAST, false, 'blocking');
define('BRPOPLPUSH BLMOVE', 'pin-once', TWO, false, 'blocking');
define('BLMPOP BZMPOP', 'pin-once', { kind: 'numkeys', at: 2 }, false, 'blocking');
define('WAIT WAITAOF', 'pin-once', NONE, false, 'blocking');
define('AUTH HELLO READONLY READWRITE RESET', 'pin-session', NONE, false, 'session_state');
// UNSUBSCRIBE a b answers once per channel even outside subscribe mode: not one reply per request,
// so it can never share a connection's reply FIFO either.
define('SUBSCRIBE PSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE MONITOR', 'relay', NONE, false, 'subscribe');
define('SSUBSCRIBE SUNSUBSCRIBE', 'relay', ALL, false, 'subscribe');
define('QUIT', 'quit', NONE, false);
define('SHUTDOWN DEBUG PFDEBUG SYNC PSYNC REPLCONF SLAVEOF REPLICAOF FAILOVER ASKING RESTORE-ASKING', 'unsupported', NONE, false, UNSUPPORTED);

// CLIENT: some subcommands read, some change this connection's state, some act on others.
container('CLIENT', 'shared', false);
defineSub('CLIENT', 'GETNAME GETREDIR TRACKINGINFO HELP', 'shared', NONE, true);
// Answered for the poolside client, not a pooled connection many clients share (client-commands.ts).
defineSub('CLIENT', 'ID INFO LIST KILL UNBLOCK REPLY', 'local', NONE, false);
defineSub('CLIENT', 'SETINFO', 'ok', NONE, false);
defineSub('CLIENT', 'SETNAME TRACKING CACHING NO-EVICT NO-TOUCH', 'pin-session', NONE, false, 'session_state');
defineSub('CLIENT', 'PAUSE UNPAUSE', 'unsupported', NONE, false, OTHERS);

container('SCRIPT', 'shared', false);
defineSub('SCRIPT', 'EXISTS HELP', 'shared', NONE, true);
defineSub('SCRIPT', 'LOAD FLUSH KILL', 'shared', NONE, false);
// SCRIPT DEBUG YES|SYNC turns the connection's next EVAL into a debugger session: on a shared
// connection every later client's script would land in it, and RESET does not undo it on 7.0.
defineSub('SCRIPT', 'DEBUG', 'unsupported', NONE, false, 'turns the connection into a Lua debugger and is not supported through poolside');

container('FUNCTION', 'shared', false);
defineSub('FUNCTION', 'LIST DUMP STATS HELP', 'shared', NONE, true);
defineSub('FUNCTION', 'LOAD DELETE FLUSH RESTORE KILL', 'shared', NONE, false);

container('CONFIG', 'shared', false);
defineSub('CONFIG', 'GET HELP', 'shared', NONE, true);
defineSub('CONFIG', 'SET REWRITE RESETSTAT', 'shared', NONE, false);

container('ACL', 'shared', false);
defineSub('ACL', 'WHOAMI CAT HELP LIST USERS GETUSER LOG DRYRUN', 'shared', NONE, true);
defineSub('ACL', 'GENPASS SETUSER DELUSER LOAD SAVE', 'shared', NONE, false);

container('OBJECT', 'shared', true);
defineSub('OBJECT', 'ENCODING FREQ IDLETIME REFCOUNT', 'shared', { kind: 'range', first: 2, last: 2, step: 1 }, true);
defineSub('OBJECT', 'HELP', 'shared', NONE, true);

container('MEMORY', 'shared', true);
defineSub('MEMORY', 'USAGE', 'shared', { kind: 'range', first: 2, last: 2, step: 1 }, true);
defineSub('MEMORY', 'DOCTOR STATS MALLOC-STATS HELP', 'shared', NONE, true);
defineSub('MEMORY', 'PURGE', 'shared', NONE, false);

container('XINFO', 'shared', true);
defineSub('XINFO', 'STREAM GROUPS CONSUMERS', 'shared', { kind: 'range', first: 2, last: 2, step: 1 }, true);
defineSub('XINFO', 'HELP', 'shared', NONE, true);

container('XGROUP', 'shared', false);
defineSub('XGROUP', 'CREATE CREATECONSUMER DELCONSUMER DESTROY SETID', 'shared', { kind: 'range', first: 2, last: 2, step: 1 }, false);
defineSub('XGROUP', 'HELP', 'shared', NONE, true);

container('COMMAND', 'shared', true);
defineSub('COMMAND', 'COUNT DOCS GETKEYS GETKEYSANDFLAGS HELP INFO LIST', 'shared', NONE, true);

container('PUBSUB', 'shared', true);
defineSub('PUBSUB', 'CHANNELS NUMSUB NUMPAT SHARDCHANNELS SHARDNUMSUB HELP', 'shared', NONE, true);

container('SLOWLOG', 'shared', false);
defineSub('SLOWLOG', 'GET LEN HELP', 'shared', NONE, true);
defineSub('SLOWLOG', 'RESET', 'shared', NONE, false);

container('LATENCY', 'shared', false);
defineSub('LATENCY', 'DOCTOR GRAPH HISTOGRAM HISTORY LATEST HELP', 'shared', NONE, true);
defineSub('LATENCY', 'RESET', 'shared', NONE, false);

// Cluster topology and module loading are the operator's, on the server itself.
container('CLUSTER', 'unsupported', false, UNSUPPORTED);
defineSub(
  'CLUSTER',
  `ADDSLOTS ADDSLOTSRANGE BUMPEPOCH COUNT-FAILURE-REPORTS COUNTKEYSINSLOT DELSLOTS DELSLOTSRANGE FAILOVER
   FLUSHSLOTS FORGET GETKEYSINSLOT HELP INFO KEYSLOT LINKS MEET MYID NODES REPLICAS REPLICATE RESET SAVECONFIG
   SET-CONFIG-EPOCH SETSLOT SHARDS SLAVES SLOTS`,
  'unsupported', NONE, false, UNSUPPORTED,
);
container('MODULE', 'unsupported', false, UNSUPPORTED);
defineSub('MODULE', 'HELP LIST LOAD LOADEX UNLOAD', 'unsupported', NONE, false, UNSUPPORTED);

// Split per server or sent to every server of a ketama pool, replies merged (fanout.ts).
for (const [name, spread] of SPREADS) {
  const spec = table.get(name);
  if (spec === undefined) throw new Error(`${name} spreads but is not in the tables`);
  table.set(name, { ...spec, spread });
}

// Reads of keys only (Redis's `readonly` flag, never `write`): a cluster pool with `read_from`
// may send them to a replica of the key's shard. Keyless reads (PING, DBSIZE, SCAN…) are not
// marked: where they go in a cluster is the keyspace table's call, not the read preference's.
// Blocking forms (XREAD BLOCK) pin a connection and are not marked either.
const READ_ONLY = `GET STRLEN GETRANGE SUBSTR GETBIT BITCOUNT BITPOS BITFIELD_RO TYPE TTL PTTL EXPIRETIME PEXPIRETIME DUMP
   HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HRANDFIELD HSCAN
   LINDEX LLEN LRANGE LPOS SCARD SISMEMBER SMISMEMBER SMEMBERS SRANDMEMBER SSCAN
   ZCARD ZCOUNT ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX ZRANK ZREVRANK
   ZSCORE ZMSCORE ZLEXCOUNT ZRANDMEMBER ZSCAN XRANGE XREVRANGE XLEN XPENDING
   GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH SORT_RO
   LCS MGET EXISTS TOUCH PFCOUNT SINTER SUNION SDIFF ZINTER ZUNION ZDIFF SINTERCARD ZINTERCARD XREAD
   EVAL_RO EVALSHA_RO FCALL_RO
   OBJECT|ENCODING OBJECT|FREQ OBJECT|IDLETIME OBJECT|REFCOUNT MEMORY|USAGE XINFO|STREAM XINFO|GROUPS XINFO|CONSUMERS`;
for (const entry of READ_ONLY.split(/\s+/).filter(Boolean)) {
  const [name, sub] = entry.split('|');
  if (sub === undefined) {
    const spec = table.get(name);
    if (spec === undefined) throw new Error(`${name} is read-only but not in the tables`);
    table.set(name, { ...spec, readOnly: true });
    continue;
  }
  const c = containers.get(name);
  const i = c === undefined ? -1 : c.names.indexOf(sub);
  if (c === undefined || i < 0) throw new Error(`${name} ${sub} is read-only but not in the tables`);
  c.specs[i] = { ...c.specs[i], readOnly: true };
}

/** A command not in the tables: its first argument is taken as its key, and it is never retried. */
const UNKNOWN_DEFAULT: Omit<CommandSpec, 'name'> = { use: 'shared', keys: FIRST, idempotent: false, note: '' };
/**
 * Specs of commands the tables do not know (module commands), built once per name. Only names
 * that could be a command are kept: the key comes from client bytes, and entries times bytes
 * must stay small (at most 1024 x 32 bytes) whatever clients send.
 */
const unknownCache = new Map<string, CommandSpec>();
const UNKNOWN_CACHE_MAX = 1024;
/** Module commands look like `JSON.GET`, `FT.SEARCH`, `BF.ADD`: letters, digits, `.`, `_`, `-`, `|`. */
const PLAUSIBLE_NAME = /^[A-Z0-9._|-]{1,32}$/;

const HELLO_PLAIN: CommandSpec = { name: 'HELLO', use: 'shared', keys: NONE, idempotent: true, note: '' };
const XREAD_BLOCK: CommandSpec = { name: 'XREAD', use: 'pin-once', keys: STREAMS, idempotent: false, note: 'blocking' };
const XREADGROUP_BLOCK: CommandSpec = { name: 'XREADGROUP', use: 'pin-once', keys: STREAMS, idempotent: false, note: 'blocking' };

/**
 * The spec the tables give a command name, or a subcommand when `sub` is given (both uppercase);
 * undefined when it is not in the tables. For tests and config validation, not the hot path.
 */
export function tableEntry(name: string, sub?: string): CommandSpec | undefined {
  if (sub === undefined) return table.get(name) ?? containers.get(name)?.bare;
  const c = containers.get(name);
  if (c === undefined) return undefined;
  const i = c.names.indexOf(sub);
  return i < 0 ? undefined : c.specs[i];
}

/** Every spec in the tables, containers' bare specs and subcommands included. */
export function allSpecs(): CommandSpec[] {
  const out = [...table.values()];
  for (const c of containers.values()) out.push(c.bare, ...c.specs);
  return out;
}

/** Whether `name` has subcommands of its own in the tables. */
export function isContainer(name: string): boolean {
  return containers.has(name);
}

function argEquals(bytes: Buffer, start: number, end: number, upper: string): boolean {
  if (end - start !== upper.length) return false;
  for (let i = 0; i < upper.length; i++) {
    let c = bytes[start + i];
    if (c >= 0x61 && c <= 0x7a) c -= 0x20; // ASCII lowercase to uppercase; digits stay digits
    if (c !== upper.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The spec of a request. `name` is the uppercased first argument; the arguments are consulted
 * only where one command behaves as two (CLIENT subcommands, HELLO 2 vs HELLO 3, XREAD BLOCK).
 */
export function commandSpec(name: string, bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): CommandSpec {
  const spec = table.get(name);
  if (spec !== undefined) {
    if (name === 'HELLO') {
      // HELLO alone or HELLO 2 only reports; HELLO 3 or with AUTH/SETNAME changes the connection.
      if (count === 1 || (count === 2 && argEquals(bytes, starts[1], ends[1], '2'))) return HELLO_PLAIN;
      return spec;
    }
    if (name === 'XREAD' || name === 'XREADGROUP') {
      for (let i = 1; i < count; i++) {
        if (argEquals(bytes, starts[i], ends[i], 'BLOCK')) return name === 'XREAD' ? XREAD_BLOCK : XREADGROUP_BLOCK;
        if (argEquals(bytes, starts[i], ends[i], 'STREAMS')) break;
      }
    }
    return spec;
  }
  const c = containers.get(name);
  if (c !== undefined) {
    if (count < 2) return c.bare;
    const names = c.names;
    for (let i = 0; i < names.length; i++) {
      if (argEquals(bytes, starts[1], ends[1], names[i])) return c.specs[i];
    }
    return c.bare;
  }
  let unknown = unknownCache.get(name);
  if (unknown === undefined) {
    unknown = { name, ...UNKNOWN_DEFAULT };
    if (unknownCache.size < UNKNOWN_CACHE_MAX && PLAUSIBLE_NAME.test(name)) unknownCache.set(name, unknown);
  }
  return unknown;
}

/**
 * Specs of plain table commands by the bytes of their name, so that classifying a request costs
 * no name string (built a byte at a time), no string hash and no Map lookup: a direct-mapped
 * cache of 256 entries, indexed by the name's length and its first, second and last bytes (ASCII
 * case folded), each entry checked byte by byte. Only commands whose spec does not depend on their
 * arguments are kept (not HELLO, XREAD, XREADGROUP or containers), and only names in the tables,
 * so what clients send cannot grow it.
 */
const CACHE_SIZE = 256;
const cachedNames: string[] = new Array<string>(CACHE_SIZE).fill('');
const cachedSpecs: (CommandSpec | null)[] = new Array<CommandSpec | null>(CACHE_SIZE).fill(null);

function upper(b: number): number {
  return b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
}

function cacheIndex(bytes: Buffer, start: number, end: number): number {
  const len = end - start;
  return (len * 37 + upper(bytes[start]) * 7 + upper(bytes[start + (len > 1 ? 1 : 0)]) * 3 + upper(bytes[end - 1])) & (CACHE_SIZE - 1);
}

/**
 * The spec of a request from its bytes (argument 0 the command name): commandSpec's answer,
 * without building the name for the commands most requests are (see the cache above).
 */
export function requestSpec(bytes: Buffer, args: ArgView): CommandSpec {
  const { starts, ends, count } = args;
  if (count > 0) {
    const start = starts[0];
    const end = ends[0];
    if (end > start) {
      const at = cacheIndex(bytes, start, end);
      const cachedName = cachedNames[at] as string;
      if (cachedName.length === end - start) {
        let i = 0;
        while (i < cachedName.length && upper(bytes[start + i]) === cachedName.charCodeAt(i)) i++;
        if (i === cachedName.length) return cachedSpecs[at] as CommandSpec;
      }
      const full = commandName(bytes, args);
      const spec = commandSpec(full, bytes, starts, ends, count);
      if (table.get(full) === spec && full !== 'HELLO' && full !== 'XREAD' && full !== 'XREADGROUP') {
        cachedNames[at] = full;
        cachedSpecs[at] = spec;
      }
      return spec;
    }
  }
  return commandSpec(commandName(bytes, args), bytes, starts, ends, count);
}

/**
 * Calls `visit(start, end)` for each key of the request, in order. Returns the number of keys.
 * Visiting by callback keeps the hot path free of per-key arrays.
 */
export function forEachKey(
  spec: CommandSpec,
  bytes: Buffer,
  starts: Int32Array,
  ends: Int32Array,
  count: number,
  visit: (start: number, end: number) => void,
): number {
  const keys = spec.keys;
  switch (keys.kind) {
    case 'none':
      return 0;
    case 'range': {
      const last = keys.last < 0 ? count + keys.last : Math.min(keys.last, count - 1);
      let n = 0;
      for (let i = keys.first; i <= last; i += keys.step, n++) visit(starts[i], ends[i]);
      return n;
    }
    case 'numkeys':
      return visitNumkeys(keys.at, bytes, starts, ends, count, visit);
    case 'store-numkeys':
      if (count < 2) return 0;
      visit(starts[1], ends[1]);
      return 1 + visitNumkeys(2, bytes, starts, ends, count, visit);
    case 'streams': {
      for (let i = 1; i < count; i++) {
        if (argEquals(bytes, starts[i], ends[i], 'STREAMS')) {
          const half = Math.floor((count - i - 1) / 2);
          for (let k = 0; k < half; k++) visit(starts[i + 1 + k], ends[i + 1 + k]);
          return half;
        }
      }
      return 0;
    }
  }
}

/** The keys counted by args[at] (EVAL's numkeys), which follow it. */
function visitNumkeys(
  at: number,
  bytes: Buffer,
  starts: Int32Array,
  ends: Int32Array,
  count: number,
  visit: (start: number, end: number) => void,
): number {
  if (count <= at) return 0;
  const numkeys = Number(bytes.toString('latin1', starts[at], ends[at]));
  if (!Number.isInteger(numkeys) || numkeys < 0) return 0;
  const last = Math.min(count - 1, at + numkeys);
  let n = 0;
  for (let i = at + 1; i <= last; i++, n++) visit(starts[i], ends[i]);
  return n;
}

/** SELECT's argument when it is a plain non-negative integer, else null (the server will refuse it). */
export function selectIndex(bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): number | null {
  if (count !== 2) return null;
  const len = ends[1] - starts[1];
  if (len < 1 || len > 5) return null;
  let n = 0;
  for (let i = starts[1]; i < ends[1]; i++) {
    const c = bytes[i];
    if (c < 0x30 || c > 0x39) return null;
    n = n * 10 + (c - 0x30);
  }
  return n;
}
