/**
 * One request, from the moment it is framed until its reply is written: its place in the
 * session's reply order, and the target its connection answers.
 */
import type { CommandSpec } from '../codec/codec.js';
import type { FailureReason } from '../errors.js';
import type { Connection, ResponseTarget } from '../pool/connection.js';
import type { ServerPool } from '../pool/server-pool.js';
import type { ReplyMap } from '../codec/session-rules.js';
import type { Fanout, PartOf } from './fanout.js';

export const EMPTY = Buffer.alloc(0);

/** Who hears a slot's outcome: its session. */
export interface SlotOwner {
  onSlotResponse(slot: Slot, bytes: Buffer): void;
  /** A piece of a large reply as it arrives (see ResponseTarget.onResponsePart). */
  onSlotResponsePart(slot: Slot, bytes: Buffer, end: boolean): void;
  onSlotFailure(slot: Slot, reason: FailureReason, message: string, retryable: boolean): void;
  /** The owner's own code threw handling this slot's outcome: poolside's fault, made loud by the owner. */
  onSlotError(slot: Slot, error: unknown): void;
}

export class Slot implements ResponseTarget {
  /** The reply to write, once done. */
  response: Buffer = EMPTY;
  done = false;
  /** Server and connection it was sent on (null before that, or when poolside answered). */
  server: ServerPool | null = null;
  conn: Connection | null = null;
  /** Its keys map to more than one server of a sharded pool, and it may not be split: refused. */
  crossServer = false;
  /** It goes to several servers (split or broadcast) in parts, merged into its reply (fanout.ts). */
  fanout: Fanout | null = null;
  /** It is one part of another slot's fan-out: never in the reply order, its outcome goes to the fanout. */
  part: PartOf | null = null;
  retried = false;
  /** routing: cluster: MOVED and ASK redirections followed for it so far (bounded by cluster.max_redirects). */
  redirects = 0;
  /** Its place in the order the client sent its requests in (ClientSession's #enqueue); a fan-out's parts go by their parent's. */
  order = 0;
  /** routing: cluster: TRYAGAIN/CLUSTERDOWN retries so far (its backoff; bounded by its deadline, not by max_redirects). */
  retries = 0;
  /** routing: cluster: where its next send goes (after MOVED or ASK; ASKING first for an ASK); null: where its key routes. */
  redirectTo: { server: ServerPool; asking: boolean } | null = null;
  /** For SELECT: the database it selects (null: unreadable, the server must judge it). */
  selectDb: number | null = null;
  /** Sent on the session's pinned connection: its reply goes through the pinned state first. */
  pinned = false;
  /**
   * A blocking command that blocks (sent outside MULTI, or held for a client that sent its FIN):
   * its reply may take as long as the client asked, and a half-closed client is dropped at it.
   */
  blocking = false;
  /** The pinned state's token for it (what its reply means there). */
  token: unknown = null;
  /** Answered with this when its turn comes (an error the rules give for the server). */
  answerWith: Buffer | null = null;
  /** The client gets this instead of the server's reply (an EXEC sent as DISCARD: EXECABORT). */
  replaceReply: Buffer | null = null;
  /** The client asked not to get its reply: framed and dropped, never written. */
  silent = false;
  /**
   * poolside could not answer it and the protocol has no error reply (framed RPC): when its turn
   * comes the client is closed instead, after the replies before it and before any behind it.
   */
  closes = false;
  /** What the client gets in place of its reply (the rules' ReplyMap), or null: the reply itself. */
  mapReply: ReplyMap | null = null;
  /** For requests poolside answers when their turn comes: the rules' parsed form. */
  local: unknown = null;
  /** Clock time when the request was framed; 0 for replies that answer no request. */
  startedAt = 0;
  /**
   * A reply arriving in pieces: the first piece (what the session's bookkeeping reads: a bulk
   * string's header), and, while the slot waits behind earlier replies, the pieces gathered.
   */
  firstPart: Buffer | null = null;
  parts: Buffer[] | null = null;
  partBytes = 0;
  /** Its reply is being written to the client as it arrives: it can only be finished or torn now. */
  streaming = false;

  constructor(
    readonly owner: SlotOwner,
    readonly bytes: Buffer,
    readonly spec: CommandSpec,
    /** Its key's hash in a sharded pool; null: no key (or not sharded). */
    readonly hash: number | null,
  ) {}

  /**
   * The request bytes poolside holds for it until its reply is written (clients.input_buffer):
   * its own, and the copies its fan-out parts carry. Fixed once it is in the reply order.
   */
  get held(): number {
    return this.bytes.length + (this.fanout?.partBytes ?? 0);
  }

  /** What its response will look like (the codec's value), for a response decoder that asks. */
  get expects(): unknown {
    return this.spec.expects;
  }

  onResponse(bytes: Buffer): void {
    try {
      this.owner.onSlotResponse(this, bytes);
    } catch (err) {
      this.owner.onSlotError(this, err);
    }
  }

  onResponsePart(bytes: Buffer, end: boolean): void {
    try {
      this.owner.onSlotResponsePart(this, bytes, end);
    } catch (err) {
      this.owner.onSlotError(this, err);
    }
  }

  onFailure(reason: FailureReason, message: string, retryable: boolean): void {
    try {
      this.owner.onSlotFailure(this, reason, message, retryable);
    } catch (err) {
      this.owner.onSlotError(this, err);
    }
  }
}

/** The spec of replies that answer no request of their own (pushed frames, a protocol error). */
export const UNASKED: CommandSpec = { name: '', use: 'shared', keys: { kind: 'none' }, idempotent: false, note: '' };
