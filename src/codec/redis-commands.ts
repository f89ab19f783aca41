/**
 * What poolside does with each Redis command: where its keys are (for ketama routing), whether it
 * may be retried on another connection, and whether it needs a connection of its own.
 * docs/redis-commands.md is the user-facing copy of these tables: keep them in step.
 */

/**
 * How a command uses connections:
 * - `shared`: pipelined with other clients' requests on a shared connection.
 * - `select`: SELECT n; kept in the session and replayed on whichever shared connection serves it.
 * - `pin-open`: starts state that lives on one connection (MULTI, WATCH); the session is pinned to
 *   an exclusive connection until a `pin-close` command's reply.
 * - `pin-close`: ends that state (EXEC, DISCARD, UNWATCH).
 * - `pin-once`: blocks the connection (BLPOP…): runs alone on an exclusive connection, released
 *   after its reply.
 * - `pin-session`: changes connection state that cannot be replayed (AUTH, HELLO 3, CLIENT
 *   SETNAME…): the session keeps its exclusive connection until it leaves; the connection is
 *   RESET before anyone else gets it.
 * - `relay`: turns the connection into a push stream (SUBSCRIBE, MONITOR): pinned until the client
 *   leaves, every frame relayed, the connection closed afterwards.
 * - `quit`: answered +OK, then the client is closed.
 * - `ok`: answered +OK by poolside without forwarding (CLIENT SETINFO: library metadata that would
 *   label a shared connection with one client's name).
 * - `unsupported`: refused with UNSUPPORTED_COMMAND; the client stays connected.
 */
export type LeaseUse =
  | 'shared'
  | 'select'
  | 'pin-open'
  | 'pin-close'
  | 'pin-once'
  | 'pin-session'
  | 'relay'
  | 'quit'
  | 'ok'
  | 'unsupported';

/** Where the keys of a command are, for routing by key. */
export type KeySpec =
  | { kind: 'none' }
  /** args[first], args[first + step], … up to args[last] (negative: from the end). */
  | { kind: 'range'; first: number; last: number; step: number }
  /** EVAL script numkeys key… / FCALL fn numkeys key… */
  | { kind: 'numkeys'; at: number }
  /** XREAD/XREADGROUP … STREAMS key… id…: the first half of what follows STREAMS. */
  | { kind: 'streams' };

export interface CommandSpec {
  name: string;
  use: LeaseUse;
  keys: KeySpec;
  /** Safe to send again on another connection when no byte of the reply was read. */
  idempotent: boolean;
  /** Why it is refused or pinned, for the error text and the pin metric. */
  note: string;
}

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

// Reads of one key: safe to retry.
define(
  `GET STRLEN GETRANGE SUBSTR GETBIT BITCOUNT BITPOS BITFIELD_RO TYPE TTL PTTL EXPIRETIME PEXPIRETIME DUMP
   HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HRANDFIELD HSCAN
   LINDEX LLEN LRANGE LPOS SCARD SISMEMBER SMISMEMBER SMEMBERS SRANDMEMBER SSCAN
   ZCARD ZCOUNT ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX ZRANK ZREVRANK
   ZSCORE ZMSCORE ZLEXCOUNT ZRANDMEMBER ZSCAN XRANGE XREVRANGE XLEN XPENDING
   GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH SORT_RO LCS`,
  'shared', FIRST, true,
);
define('MGET EXISTS TOUCH PFCOUNT SINTER SUNION SDIFF', 'shared', ALL, true);
define('ZINTER ZUNION ZDIFF SINTERCARD ZINTERCARD', 'shared', NUMKEYS_1, true);
define('XREAD', 'shared', STREAMS, true);
define('EVAL_RO EVALSHA_RO FCALL_RO', 'shared', NUMKEYS_2, true);
define('XINFO OBJECT MEMORY', 'shared', { kind: 'range', first: 2, last: 2, step: 1 }, true);
define('PING ECHO TIME DBSIZE LASTSAVE RANDOMKEY KEYS SCAN INFO COMMAND LOLWUT ROLE', 'shared', NONE, true);

// Writes: never retried, a second run could apply them twice.
define('DEL UNLINK MSETNX', 'shared', ALL, false);
define('MSET', 'shared', PAIRS, false);
define('RENAME RENAMENX SMOVE LMOVE RPOPLPUSH COPY', 'shared', TWO, false);
define('SINTERSTORE SUNIONSTORE SDIFFSTORE PFMERGE', 'shared', ALL, false);
define('ZINTERSTORE ZUNIONSTORE ZDIFFSTORE GEORADIUS GEORADIUSBYMEMBER', 'shared', FIRST, false);
define('EVAL EVALSHA FCALL', 'shared', NUMKEYS_2, false);
define('LMPOP ZMPOP', 'shared', NUMKEYS_1, false);
define('XREADGROUP', 'shared', STREAMS, false);
define(
  `PUBLISH SPUBLISH FLUSHDB FLUSHALL SCRIPT FUNCTION CONFIG SLOWLOG LATENCY SAVE BGSAVE BGREWRITEAOF
   SWAPDB ACL`,
  'shared', NONE, false,
);

define('SELECT', 'select', NONE, false);
define('MULTI WATCH', 'pin-open', NONE, false, 'transaction');
define('EXEC DISCARD UNWATCH', 'pin-close', NONE, false);
define('BLPOP BRPOP BZPOPMIN BZPOPMAX', 'pin-once', ALL_BUT_LAST, false, 'blocking');
define('BRPOPLPUSH BLMOVE', 'pin-once', TWO, false, 'blocking');
define('BLMPOP BZMPOP', 'pin-once', { kind: 'numkeys', at: 2 }, false, 'blocking');
define('WAIT WAITAOF', 'pin-once', NONE, false, 'blocking');
define('AUTH HELLO READONLY READWRITE RESET', 'pin-session', NONE, false, 'session_state');
// UNSUBSCRIBE a b answers once per channel even outside subscribe mode: not one reply per request,
// so it can never share a connection's reply FIFO either.
define('SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE MONITOR', 'relay', NONE, false, 'subscribe');
define('QUIT', 'quit', NONE, false);
define(
  `SHUTDOWN DEBUG SYNC PSYNC REPLCONF SLAVEOF REPLICAOF FAILOVER CLUSTER MODULE MIGRATE ASKING`,
  'unsupported', NONE, false,
  'is not supported through poolside',
);

/** CLIENT subcommands: some read, some change this connection's state, some act on others. */
const clientSubcommands = new Map<string, CommandSpec>();
function defineClient(subs: string, use: LeaseUse, note = ''): void {
  for (const sub of subs.split(/\s+/).filter(Boolean)) {
    clientSubcommands.set(sub, { name: `CLIENT ${sub}`, use, keys: NONE, idempotent: use === 'shared', note });
  }
}
defineClient('ID INFO LIST GETNAME GETREDIR TRACKINGINFO HELP', 'shared');
defineClient('SETINFO', 'ok');
defineClient('SETNAME TRACKING CACHING NO-EVICT NO-TOUCH', 'pin-session', 'session_state');
defineClient('KILL PAUSE UNPAUSE UNBLOCK', 'unsupported', 'acts on other clients and is not supported through poolside');
// Without one reply per request, no connection's reply FIFO can be trusted.
defineClient('REPLY', 'unsupported', 'breaks one-reply-per-request and is not supported through poolside');

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
  if (name === 'CLIENT' && count >= 2) {
    const sub = bytes.toString('latin1', starts[1], ends[1]).toUpperCase();
    return clientSubcommands.get(sub) ?? { name: `CLIENT ${sub}`, use: 'shared', keys: NONE, idempotent: false, note: '' };
  }
  let unknown = unknownCache.get(name);
  if (unknown === undefined) {
    unknown = { name, ...UNKNOWN_DEFAULT };
    if (unknownCache.size < UNKNOWN_CACHE_MAX && PLAUSIBLE_NAME.test(name)) unknownCache.set(name, unknown);
  }
  return unknown;
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
    case 'numkeys': {
      if (count <= keys.at) return 0;
      const numkeys = Number(bytes.toString('latin1', starts[keys.at], ends[keys.at]));
      if (!Number.isInteger(numkeys) || numkeys < 0) return 0;
      const last = Math.min(count - 1, keys.at + numkeys);
      let n = 0;
      for (let i = keys.at + 1; i <= last; i++, n++) visit(starts[i], ends[i]);
      return n;
    }
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

/** SELECT's argument when it is a plain non-negative integer, else -1 (the server will refuse it). */
export function selectIndex(bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): number {
  if (count !== 2) return -1;
  const len = ends[1] - starts[1];
  if (len < 1 || len > 5) return -1;
  let n = 0;
  for (let i = starts[1]; i < ends[1]; i++) {
    const c = bytes[i];
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + (c - 0x30);
  }
  return n;
}
