/**
 * The CLIENT subcommands that name a client (or describe one), answered by poolside for the
 * poolside client rather than forwarded to a pooled connection that many clients share:
 *
 * - `CLIENT ID`: the session's poolside-wide id (a pooled connection's id is shared by many).
 * - `CLIENT INFO` / `CLIENT LIST [TYPE t] [ID id…]`: the poolside clients of this pool, in Redis's format.
 * - `CLIENT KILL ID id [SKIPME yes|no]`: closes a client of this pool (other filters are refused).
 * - `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: sent to the server for the connection that client is blocked on.
 * - `CLIENT REPLY ON|OFF|SKIP`: emulated: poolside frames every reply and drops the ones the client
 *   asked not to get.
 * - `CLIENT TRACKING … REDIRECT id`: the id is translated to the server-side id of that client's
 *   pinned connection (a RESP2 invalidation subscriber must be on the same server).
 */
import type { ArgView } from '../codec.js';
import { encodeCommand } from './resp-request.js';

export type ClientCommand =
  | { kind: 'id' }
  | { kind: 'info' }
  | { kind: 'list'; type: 'normal' | 'pubsub' | null; ids: number[] | null }
  | { kind: 'kill'; id: number; skipMe: boolean }
  | { kind: 'unblock'; id: number; mode: 'TIMEOUT' | 'ERROR' }
  | { kind: 'reply'; mode: 'ON' | 'OFF' | 'SKIP' }
  /** A native Redis error, as the server would answer it. */
  | { kind: 'error'; message: string }
  /** A form poolside does not support: UNSUPPORTED_COMMAND. */
  | { kind: 'refuse'; message: string };

function arg(bytes: Buffer, args: ArgView, i: number): string {
  return bytes.toString('latin1', args.starts[i], args.ends[i]);
}

function clientId(text: string): number | null {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) return null;
  return Number(text);
}

const SYNTAX: ClientCommand = { kind: 'error', message: 'ERR syntax error' };
const INVALID_ID: ClientCommand = { kind: 'error', message: 'ERR client-id should be greater than 0' };

/** Parses a CLIENT subcommand that poolside answers; args[1] is the subcommand. */
export function parseClientCommand(bytes: Buffer, args: ArgView): ClientCommand {
  const sub = arg(bytes, args, 1).toUpperCase();
  const n = args.count;
  switch (sub) {
    case 'ID':
      return n === 2 ? { kind: 'id' } : SYNTAX;
    case 'INFO':
      return n === 2 ? { kind: 'info' } : SYNTAX;
    case 'LIST': {
      let type: 'normal' | 'pubsub' | null = null;
      let ids: number[] | null = null;
      for (let i = 2; i < n; i++) {
        const word = arg(bytes, args, i).toUpperCase();
        if (word === 'TYPE' && i + 1 < n) {
          const t = arg(bytes, args, ++i).toLowerCase();
          if (t !== 'normal' && t !== 'pubsub') return { kind: 'error', message: `ERR Unknown client type '${t.slice(0, 32)}'` };
          type = t;
        } else if (word === 'ID' && i + 1 < n) {
          ids = [];
          for (i++; i < n; i++) {
            const id = clientId(arg(bytes, args, i));
            if (id === null) return { kind: 'error', message: 'ERR Invalid client ID' };
            ids.push(id);
          }
        } else {
          return SYNTAX;
        }
      }
      return { kind: 'list', type, ids };
    }
    case 'KILL': {
      let id: number | null = null;
      let skipMe = true;
      if (n < 4 || n % 2 !== 0) {
        return { kind: 'refuse', message: 'CLIENT KILL is supported through poolside only as CLIENT KILL ID <id> [SKIPME yes|no], for clients of this pool' };
      }
      for (let i = 2; i < n; i += 2) {
        const filter = arg(bytes, args, i).toUpperCase();
        const value = arg(bytes, args, i + 1);
        if (filter === 'ID') {
          id = clientId(value);
          if (id === null) return INVALID_ID;
        } else if (filter === 'SKIPME') {
          const v = value.toLowerCase();
          if (v !== 'yes' && v !== 'no') return SYNTAX;
          skipMe = v === 'yes';
        } else {
          return { kind: 'refuse', message: `CLIENT KILL ${filter.slice(0, 32)} is not supported through poolside: use CLIENT KILL ID <id>` };
        }
      }
      if (id === null) return { kind: 'refuse', message: 'CLIENT KILL needs ID <id> through poolside' };
      return { kind: 'kill', id, skipMe };
    }
    case 'UNBLOCK': {
      if (n !== 3 && n !== 4) return SYNTAX;
      const id = clientId(arg(bytes, args, 2));
      if (id === null) return { kind: 'error', message: 'ERR value is not an integer or out of range' };
      const mode = n === 4 ? arg(bytes, args, 3).toUpperCase() : 'TIMEOUT';
      if (mode !== 'TIMEOUT' && mode !== 'ERROR') return { kind: 'error', message: 'ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR' };
      return { kind: 'unblock', id, mode };
    }
    case 'REPLY': {
      const mode = n === 3 ? arg(bytes, args, 2).toUpperCase() : '';
      if (mode !== 'ON' && mode !== 'OFF' && mode !== 'SKIP') return SYNTAX;
      return { kind: 'reply', mode };
    }
    default:
      return SYNTAX;
  }
}

/** What CLIENT LIST shows of one poolside client. */
export interface ClientDescription {
  id: number;
  addr: string;
  laddr: string;
  name: string;
  ageS: number;
  idleS: number;
  db: number;
  /** Redis's flag letters: N (none), P (pub/sub), x (in MULTI), b (blocked). */
  flags: string;
  multi: number;
  cmd: string;
  resp: number;
}

/** One line of CLIENT LIST / CLIENT INFO, in Redis 7's field order. */
export function describeClient(d: ClientDescription): string {
  return (
    `id=${d.id} addr=${d.addr} laddr=${d.laddr} fd=-1 name=${d.name} age=${d.ageS} idle=${d.idleS} flags=${d.flags} ` +
    `db=${d.db} sub=0 psub=0 ssub=0 multi=${d.multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 ` +
    `tot-mem=0 events=r cmd=${d.cmd} user=default redir=-1 resp=${d.resp}`
  );
}

/** The request that unblocks a server-side connection. */
export function unblockRequest(connectionId: number, mode: 'TIMEOUT' | 'ERROR'): Buffer {
  return encodeCommand(['CLIENT', 'UNBLOCK', String(connectionId), mode]);
}

/** Server-side id of a connection, for the init request `CLIENT ID`. */
export const CLIENT_ID_REQUEST = encodeCommand(['CLIENT', 'ID']);

export function parseIntegerReply(bytes: Buffer): number | null {
  if (bytes[0] !== 0x3a /* : */) return null;
  const n = Number(bytes.toString('latin1', 1, bytes.length - 2));
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * `CLIENT TRACKING … REDIRECT <id>`: the request with the poolside id replaced by `translate(id)`;
 * null when there is no REDIRECT; an error text when the id names no usable client.
 */
export function rewriteRedirect(bytes: Buffer, args: ArgView, translate: (id: number) => number | null): Buffer | { error: string } | null {
  for (let i = 3; i + 1 < args.count; i++) {
    if (arg(bytes, args, i).toUpperCase() !== 'REDIRECT') continue;
    const id = clientId(arg(bytes, args, i + 1));
    const target = id === null ? null : translate(id);
    if (target === null) return { error: 'ERR The client ID you want redirect to does not exist' };
    const parts: Buffer[] = [];
    for (let k = 0; k < args.count; k++) parts.push(k === i + 1 ? Buffer.from(String(target)) : bytes.subarray(args.starts[k], args.ends[k]));
    return encodeCommand(parts);
  }
  return null;
}

/**
 * Commands that report on the connection's own writes (WAIT, WAITAOF): before them, on an exclusive
 * connection, poolside sends a write that is propagated to replicas, so that the connection's
 * replication offset covers every write the session made earlier on other connections.
 */
export const WRITE_FENCE_REQUEST = encodeCommand(['PUBLISH', '__poolside__:write-fence', '']);
export function needsWriteFence(commandName: string): boolean {
  return commandName === 'WAIT' || commandName === 'WAITAOF';
}
