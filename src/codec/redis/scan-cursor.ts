/**
 * SCAN across a Redis Cluster through one client cursor. Each primary has a keyspace (and a cursor)
 * of its own; poolside scans them one after another, in the order of the first slot each owns, and
 * the client's cursor says where it is:
 *
 *   client cursor = server cursor × 16384 + the first slot of the node being scanned   (decimal, BigInt)
 *
 *   SCAN 0 …          ─▶ SCAN 0 …      to the owner of slot 0
 *   reply cursor c≠0  ─▶ c × 16384 + s (same node, next time)
 *   reply cursor 0    ─▶ 0 × 16384 + s' where s' is the next primary's first slot; 0 after the last
 *
 * The request is rewritten to the server cursor and routed by the slot, as a key in that slot
 * would be (a cluster pool's key hash is its slot), so it follows the slot's owner like any key:
 * MOVED and failovers included. MATCH, COUNT and TYPE pass unchanged. A cursor 0 starts at slot 0.
 */
import type { ArgView } from '../codec.js';
import type { ReplyMap } from '../session-rules.js';

export const CLUSTER_SLOTS = 16384;
const SLOTS = BigInt(CLUSTER_SLOTS);
/** Redis's own cursors are unsigned 64-bit. */
const MAX_SERVER_CURSOR = (1n << 64n) - 1n;

/** Where a cluster's primaries begin, as SCAN needs them. */
export interface SlotStarts {
  /** The first slot of each primary, ascending (the slot-order of the nodes). */
  firstSlots(): readonly number[];
}

/**
 * The first slot of each primary, from the slot map: the slots where an owner appears for the
 * first time. Read only when a node's scan ends (16384 lookups), so it is never out of date.
 */
export class SlotOrder implements SlotStarts {
  readonly #owner: (slot: number) => object | null;

  constructor(owner: (slot: number) => object | null) {
    this.#owner = owner;
  }

  firstSlots(): readonly number[] {
    const seen = new Set<object>();
    const out: number[] = [];
    for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
      const owner = this.#owner(slot);
      if (owner === null || seen.has(owner)) continue;
      seen.add(owner);
      out.push(slot);
    }
    return out;
  }
}

export interface ScanPosition {
  /** The cursor to send to the node. */
  server: bigint;
  /** Routed as this slot: the first slot of the node being scanned. */
  slot: number;
}

/** The position a client cursor names, or null when it is not a cursor (Redis: `invalid cursor`). */
export function parseCursor(text: string): ScanPosition | null {
  if (!/^[0-9]{1,30}$/.test(text)) return null;
  const value = BigInt(text);
  const server = value / SLOTS;
  if (server > MAX_SERVER_CURSOR) return null;
  return { server, slot: Number(value % SLOTS) };
}

export function encodeCursor(position: ScanPosition): string {
  return (position.server * SLOTS + BigInt(position.slot)).toString();
}

/** The first primary after the one whose first slot is `slot`, in slot order, or null after the last. */
export function nextStart(starts: readonly number[], slot: number): number | null {
  for (const s of starts) if (s > slot) return s;
  return null;
}

/** The request with argument `index` replaced by `value` (the others' bytes copied as they are). */
export function replaceArg(bytes: Buffer, args: ArgView, index: number, value: string): Buffer {
  const pieces: Buffer[] = [Buffer.from(`*${args.count}\r\n`, 'latin1')];
  for (let i = 0; i < args.count; i++) {
    const arg = i === index ? Buffer.from(value, 'latin1') : bytes.subarray(args.starts[i], args.ends[i]);
    pieces.push(Buffer.from(`$${arg.length}\r\n`, 'latin1'), arg, CRLF);
  }
  return Buffer.concat(pieces);
}

const CRLF = Buffer.from('\r\n');

/**
 * What the client gets for a node's SCAN reply (`*2`, the node's cursor, the keys): the cursor
 * mapped to the client's, moving to the next primary when this one is done. Errors pass as they are.
 */
export function scanReplyMap(slot: number, starts: SlotStarts): ReplyMap {
  return (reply) => {
    // *2\r\n$<len>\r\n<cursor>\r\n<keys>
    if (reply[0] !== 0x2a /* * */) return reply;
    const lengthAt = reply.indexOf('\r\n') + 2;
    if (lengthAt < 2 || reply[lengthAt] !== 0x24 /* $ */) return reply;
    const lengthEnd = reply.indexOf('\r\n', lengthAt);
    const length = Number(reply.toString('latin1', lengthAt + 1, lengthEnd));
    const cursorAt = lengthEnd + 2;
    const text = reply.toString('latin1', cursorAt, cursorAt + length);
    if (!/^[0-9]+$/.test(text)) return reply;
    const server = BigInt(text);
    let next: string;
    if (server !== 0n) {
      next = encodeCursor({ server, slot });
    } else {
      const start = nextStart(starts.firstSlots(), slot);
      next = start === null ? '0' : encodeCursor({ server: 0n, slot: start });
    }
    const cursor = Buffer.from(next, 'latin1');
    return Buffer.concat([
      reply.subarray(0, lengthAt),
      Buffer.from(`$${cursor.length}\r\n`, 'latin1'),
      cursor,
      reply.subarray(cursorAt + length),
    ]);
  };
}
