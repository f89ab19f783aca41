/**
 * What each memcached command does through poolside: how its request is framed (a data block or
 * not), what its response looks like, where its key is, whether it may be retried, and how it
 * spreads over the servers of a sharded pool. docs/memcached-commands.md is the user-facing copy
 * of this table; test/unit/memcached-commands.test.ts checks that the two agree.
 */
import type { CommandSpec, KeySpec, LeaseUse } from '../codec.js';
import { isUint64, KEY_MAX_BYTES, MAX_DATA_BYTES, META_MAX_TOKENS, parseInt32, parseUnsigned, tokenIs } from './text.js';

/**
 * How a response to the command is framed (the response decoder reads it through headExpectation):
 * - `line`: one line (`STORED`, `DELETED`, a number, `VERSION …`, `OK`, `ME …`).
 * - `values`: `VALUE <key> <flags> <bytes> [<cas>]` lines each with a data block, up to `END`.
 * - `meta`: one line, with a data block after it when it is `VA <bytes> …`.
 * - `list`: `STAT`/`ITEM`/`PREFIX` lines up to `END` (or one line: `RESET`, `OK`, an error).
 * Any response may instead be one error line (`ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`), which
 * also ends a `values` or `list` response begun before it.
 */
export type McExpect = 'line' | 'values' | 'meta' | 'list';

/**
 * Where a command goes in a sharded (ketama) pool: `one` server (by its key, or any server for a
 * keyless one such as `version`), `all` servers (flush_all, stats, verbosity: server-wide), or
 * each of its `keys` to the server that key lives on (multi-key retrievals, split and merged).
 * `local`: answered by poolside. `keys` and `all` become the spec's `spread`: the session splits or
 * broadcasts the request and fanout.ts merges the replies.
 */
export type Spread = 'one' | 'all' | 'keys' | 'local';

/** The request shapes intake (session-rules.ts) and the request decoder tell apart. */
export type McKind =
  | 'get'
  | 'gat'
  | 'store'
  | 'cas'
  | 'delete'
  | 'arith'
  | 'touch'
  | 'verbosity'
  | 'flush_all'
  | 'version'
  | 'stats'
  | 'quit'
  | 'mg'
  | 'ms'
  | 'md'
  | 'ma'
  | 'me'
  | 'mn'
  | 'refused'
  | 'unknown';

export interface McCommand {
  readonly kind: McKind;
  readonly spread: Spread;
  readonly spec: CommandSpec;
}

const NONE: KeySpec = { kind: 'none' };
const FIRST: KeySpec = { kind: 'range', first: 1, last: 1, step: 1 };
const ALL: KeySpec = { kind: 'range', first: 1, last: -1, step: 1 };
const AFTER_EXPTIME: KeySpec = { kind: 'range', first: 2, last: -1, step: 1 };

const ADMIN = 'administers the server (connect to it directly)';

const table = new Map<string, McCommand>();

function define(names: string, kind: McKind, use: LeaseUse, keys: KeySpec, spread: Spread, idempotent: boolean, expects: McExpect, note = ''): void {
  for (const name of names.split(/\s+/).filter(Boolean)) {
    // The session splits or broadcasts what the spec's spread says (fanout.ts merges the replies).
    const fans = spread === 'keys' || spread === 'all' ? { spread } : {};
    table.set(name, { kind, spread, spec: { name, use, keys, idempotent, note, expects, ...fans } });
  }
}

define('get gets', 'get', 'shared', ALL, 'keys', true, 'values');
define('gat gats', 'gat', 'shared', AFTER_EXPTIME, 'keys', true, 'values');
define('set add replace append prepend', 'store', 'shared', FIRST, 'one', false, 'line');
define('cas', 'cas', 'shared', FIRST, 'one', false, 'line');
define('delete', 'delete', 'shared', FIRST, 'one', false, 'line');
define('incr decr', 'arith', 'shared', FIRST, 'one', false, 'line');
define('touch', 'touch', 'shared', FIRST, 'one', false, 'line');
define('mg', 'mg', 'shared', FIRST, 'one', true, 'meta');
define('ms', 'ms', 'shared', FIRST, 'one', false, 'meta');
define('md', 'md', 'shared', FIRST, 'one', false, 'meta');
define('ma', 'ma', 'shared', FIRST, 'one', false, 'meta');
define('me', 'me', 'shared', FIRST, 'one', true, 'line');
define('mn', 'mn', 'shared', NONE, 'local', true, 'line');
define('version', 'version', 'shared', NONE, 'one', true, 'line');
define('stats', 'stats', 'shared', NONE, 'all', true, 'list');
define('flush_all', 'flush_all', 'shared', NONE, 'all', false, 'line');
define('verbosity', 'verbosity', 'shared', NONE, 'all', false, 'line');
define('quit', 'quit', 'quit', NONE, 'local', false, 'line');
define('shutdown', 'refused', 'unsupported', NONE, 'local', false, 'line', 'would stop the server for every client of the pool');
define('watch', 'refused', 'unsupported', NONE, 'local', false, 'line', 'turns the connection into a log stream (connect to the server directly)');
define('lru_crawler', 'refused', 'unsupported', NONE, 'local', false, 'line', `${ADMIN}; its metadump streams the cache`);
define('slabs lru cache_memlimit extstore misbehave debugtime', 'refused', 'unsupported', NONE, 'local', false, 'line', ADMIN);

/** Anything else: memcached answers ERROR, and so does poolside, without forwarding it. */
const UNKNOWN: McCommand = { kind: 'unknown', spread: 'local', spec: { name: 'unknown', use: 'shared', keys: NONE, idempotent: true, note: '', expects: 'line' } };

/** Every command in the table, for the docs check. */
export function commandTable(): ReadonlyMap<string, McCommand> {
  return table;
}

/** The command a request line names (its first token), or UNKNOWN. */
export function lookup(bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): McCommand {
  if (count === 0) return UNKNOWN;
  const length = ends[0] - starts[0];
  if (length < 2 || length > 14) return UNKNOWN;
  return table.get(bytes.toString('latin1', starts[0], ends[0])) ?? UNKNOWN;
}

export function commandOf(spec: CommandSpec): McCommand {
  return table.get(spec.name) ?? UNKNOWN;
}

/**
 * A storage request line (set/add/replace/append/prepend/cas, ms) as memcached reads it:
 * - `error`: memcached answers `reply` without reading a data block (the bytes that follow are
 *   the next command line); `quiet`: noreply hides it.
 * - `data`: a data block of `size` bytes and `\r\n` follows; `noreply`: the text `noreply`
 *   token is the last (ms: never; its `q` flag is handled by intake).
 * Shared by the request decoder (how many bytes to read) and intake (what to answer), so both
 * always agree on where the next request starts.
 */
export type StorageLine = { kind: 'error'; reply: string; quiet: boolean } | { kind: 'data'; size: number; noreply: boolean };

export function storageLine(kind: McKind, bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): StorageLine {
  if (kind === 'ms') {
    if (count < 2) return { kind: 'error', reply: 'ERROR', quiet: false };
    if (ends[1] - starts[1] > KEY_MAX_BYTES || count === 2) return { kind: 'error', reply: 'CLIENT_ERROR bad command line format', quiet: false };
    if (count + 1 > META_MAX_TOKENS) return { kind: 'error', reply: 'CLIENT_ERROR options flags too long', quiet: false };
    const size = parseInt32(bytes, starts[2], ends[2]);
    if (size === null || size < 0 || size > MAX_DATA_BYTES) return { kind: 'error', reply: 'CLIENT_ERROR bad command line format', quiet: false };
    return { kind: 'data', size, noreply: false };
  }
  // set k flags exptime bytes [noreply] / cas k flags exptime bytes unique [noreply]
  const base = kind === 'cas' ? 6 : 5;
  if (count !== base && count !== base + 1) return { kind: 'error', reply: 'ERROR', quiet: false };
  const noreply = tokenIs(bytes, starts, ends, count - 1, 'noreply');
  const bad: StorageLine = { kind: 'error', reply: 'CLIENT_ERROR bad command line format', quiet: noreply };
  if (ends[1] - starts[1] > KEY_MAX_BYTES) return bad;
  if (parseUnsigned(bytes, starts[2], ends[2], 0xffff_ffff) === null || parseInt32(bytes, starts[3], ends[3]) === null) return bad;
  const size = parseInt32(bytes, starts[4], ends[4]);
  if (size === null) return bad;
  if (kind === 'cas' && !isUint64(bytes, starts[5], ends[5])) return bad;
  if (size < 0 || size > MAX_DATA_BYTES) return bad;
  return { kind: 'data', size, noreply };
}

/** Whether the request carries a data block: its size, or null. */
export function dataBlockSize(command: McCommand, bytes: Buffer, starts: Int32Array, ends: Int32Array, count: number): number | null {
  const kind = command.kind;
  if (kind !== 'store' && kind !== 'cas' && kind !== 'ms') return null;
  const line = storageLine(kind, bytes, starts, ends, count);
  return line.kind === 'data' ? line.size : null;
}
