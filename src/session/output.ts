/**
 * The write side of one client's socket: replies batched per turn, handed to the socket a chunk
 * at a time, the output limits, whether the client's requests are read, and the FIN after the
 * last reply.
 *
 *   session ─▶ write(reply) ─▶ #turn ─(end of turn)─▶ #queue ─▶ #pump: up to CHUNK ─▶ socket ─▶ kernel
 *                                                                  ▲ again on 'drain'
 *
 * Why a queue of our own rather than writing everything to the socket at once: a Node socket
 * counts a write as pending until all of it is in the kernel, so a 200 MB reply would look like
 * 200 MB unread however fast the client reads it. Handed over a chunk at a time, every chunk the
 * socket takes is visible progress, and "unread" means what it says. The limits follow Redis's
 * client-output-buffer-limit, adapted so that one large reply in transit is never the problem:
 *
 * - hard: replies queued behind the one being written pass `outputHardBytes`: reset at once.
 * - soft: at `outputSoftBytes` unsent the client's reads pause (it is sent nothing new to answer
 *   until it reads); if it then takes none of its replies for `outputSoftMs`, it is reset.
 */
import type net from 'node:net';
import type { Timer } from '../util/clock.js';
import { Fifo } from '../util/fifo.js';
import { writeBatch } from '../util/write-batch.js';
import type { ClientLimits, OverflowCause } from './limits.js';

/**
 * Where a reply streaming to this client comes from (a server connection). While the client is
 * `soft` bytes behind, the source is asked to hold its reads, so a client reading a large reply
 * slower than the server sends it costs poolside about `soft`, not the reply's size. The source
 * decides: it holds only while nothing else waits on it, and reads again the moment something
 * does (Connection.holdReads), so no other request ever waits on a slow reader.
 */
export interface StreamSource {
  holdReads(): void;
  releaseReads(): void;
}

/** Why the client's requests are not being read; reads resume when no reason is left ('closing' never leaves). */
export type ReadPause = 'output' | 'input' | 'closing';

const PAUSE_BIT: Record<ReadPause, number> = { output: 1, input: 2, closing: 4 };

/**
 * Most bytes handed to the socket at once, and the most it may hold before it gets more. Large
 * enough that a busy client's replies go out in few writes, small enough that a client reading a
 * large reply shows progress many times a second.
 */
const CHUNK = 256 * 1024;

/**
 * A stall timer that fires this much later than due means poolside itself was not running (a
 * long GC, a blocked loop): the client could not have been seen reading, so it gets a new window.
 */
const LATE_MS = 500;

/** open → ending (end() called, replies still queued) → ended (FIN sent); closed from any. */
type State = 'open' | 'ending' | 'ended' | 'closed';

export class ClientOutput {
  readonly #socket: net.Socket;
  readonly #limits: ClientLimits;
  /** outputSoftBytes, but at least the socket's high-water mark, so that a 'drain' always follows a pause. */
  readonly #softBytes: number;
  #state: State = 'open';
  /** Replies written this turn. */
  #turn: Buffer[] = [];
  /** The other turn array, reused so that a turn costs no array; null while a flush holds it (and until the first flush). */
  #spare: Buffer[] | null = null;
  /** Replies not yet handed to the socket, oldest first; the head may be partly handed over. */
  readonly #queue = new Fifo<Buffer>();
  #headOffset = 0;
  #queued = 0;
  /**
   * Positions in the client's reply stream: bytes written here so far, and handed to the socket
   * so far. Each streamed reply (written in pieces) not yet wholly handed over spans [start, end),
   * its end Infinity until its last piece: at the head, it is the one reply in transit.
   */
  #in = 0;
  #out = 0;
  readonly #streamed = new Fifo<{ start: number; end: number }>(4);
  #open: { start: number; end: number } | null = null;
  /** Where the open streamed reply comes from. */
  #openSource: StreamSource | null = null;
  #pausedBy = 0;
  #closeAfterEnd = false;
  /** endLingering(): how long to keep reading after the FIN; null: end() as asked. */
  #lingerMs: number | null = null;
  #lingerTimer: Timer | null = null;
  /** While at least soft bytes are unsent: when the client last took some; null otherwise. */
  #progressAt: number | null = null;
  #stallTimer: Timer | null = null;
  #stallDueAt = 0;
  /** The 'drain' listener, added the first time the socket holds back bytes (most clients never make it). */
  #onDrain: (() => void) | null = null;

  /** Scratch for one chunk's pieces, shared by every output: filled and emptied within one #pump. */
  static readonly #batch: Buffer[] = [];

  /**
   * Outputs written to this turn, flushed by one process.nextTick for all of them, run when the
   * callback that wrote them returns (as a microtask would be). Not queueMicrotask: Node's costs
   * an AsyncResource and a bound function per call (~270 bytes; a nextTick's object is a third of
   * that), and a client sending one command at a time gets one turn per reply.
   */
  static readonly #written: ClientOutput[] = [];
  static #flushQueued = false;

  static #atEndOfTurn(output: ClientOutput): void {
    ClientOutput.#written.push(output);
    if (!ClientOutput.#flushQueued) {
      ClientOutput.#flushQueued = true;
      process.nextTick(ClientOutput.#flushWritten);
    }
  }

  static readonly #flushWritten = (): void => {
    const written = ClientOutput.#written;
    ClientOutput.#flushQueued = false;
    // By index: a flush may (through a limit's reset and the session's close) lead to more writes.
    // One client's failure must not keep the others' replies waiting for the next turn's writes.
    try {
      for (let i = 0; i < written.length; i++) {
        try {
          (written[i] as ClientOutput).#flushTurn();
        } catch (err) {
          (written[i] as ClientOutput).#failed(err);
        }
      }
    } finally {
      written.length = 0;
    }
  };

  constructor(socket: net.Socket, limits: ClientLimits) {
    this.#socket = socket;
    this.#limits = limits;
    this.#softBytes = Math.max(limits.outputSoftBytes, socket.writableHighWaterMark);
  }

  /**
   * Listens for 'drain' from now on: called wherever bytes are left queued or reads paused, before
   * the turn ends, so the 'drain' that follows is never missed. A short-lived client whose replies
   * always fit in the socket never gets the listener (nor its closure).
   */
  #awaitDrain(): void {
    if (this.#onDrain !== null) return;
    this.#onDrain = (): void => {
      if (this.#progressAt !== null) this.#progressAt = this.#limits.clock.now();
      this.#pump();
    };
    this.#socket.on('drain', this.#onDrain);
  }

  /** Reply bytes not yet taken by the kernel: queued here, in this turn, or held by the socket. */
  get pending(): number {
    let turn = 0;
    for (const bytes of this.#turn) turn += bytes.length;
    return this.#queued + turn + this.#socket.writableLength;
  }

  /** A streamed reply is part-way out: nothing may be written but its rest. */
  get midReply(): boolean {
    return this.#open !== null;
  }

  /** Queues reply bytes; everything written in one turn goes out together at the end of it. Ignored once end() was called. */
  write(bytes: Buffer): void {
    if (this.#state !== 'open' || bytes.length === 0) return;
    this.#in += bytes.length;
    this.#turn.push(bytes);
    if (this.#turn.length === 1) ClientOutput.#atEndOfTurn(this);
  }

  /**
   * A piece of one large reply, written as it arrives (`end` on its last piece). The pieces count
   * as one reply for the hard limit: a reply in transit is never what it is about.
   */
  writePart(bytes: Buffer, end: boolean, source: StreamSource | null): void {
    if (this.#state !== 'open') return;
    let open = this.#open;
    if (open === null) {
      // Forget the streamed replies already handed over: a client that keeps up keeps none.
      this.#pruneStreamed();
      open = { start: this.#in, end: Infinity };
      this.#open = open;
      this.#openSource = source;
      this.#streamed.push(open);
    }
    if (end) {
      open.end = this.#in + bytes.length;
      this.#open = null;
      // Its last piece is here: what comes next on that connection is other replies.
      this.#releaseSource();
    }
    this.write(bytes);
  }

  /**
   * Sends everything written so far, then a FIN. The session calls it after the last reply it owes.
   * `close`: destroy the socket once the FIN is out rather than wait for the client's (after QUIT
   * or an error nothing it still sends is read, as Redis does); a client that half-closed has
   * sent its FIN already.
   */
  end(close: boolean): void {
    if (this.#state !== 'open') return;
    this.#closeAfterEnd = close;
    this.#flushTurn();
    if (this.#state !== 'open') return; // the turn broke a limit
    this.#state = 'ending';
    this.#pump();
  }

  /**
   * Sends everything written so far, then a FIN, and keeps reading (the session drops what it
   * reads: nothing is buffered) until the client's FIN, or `lingerMs` after ours is out; then
   * closes. Closing a socket with unread bytes makes the kernel answer RST, which can destroy
   * replies the client has not read yet; a request that crosses the FIN is read and dropped
   * instead, and the client sees an orderly end of the connection.
   */
  endLingering(lingerMs: number): void {
    if (this.#state !== 'open') return;
    this.#lingerMs = lingerMs;
    this.end(false);
  }

  /** poolside's own fault while writing to this client: it is closed, and the process carries on. */
  #failed(err: unknown): void {
    this.#drop();
    this.#socket.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  /** Resets the client (RST, not FIN: it is not reading, so it would never see a FIN behind its replies). */
  reset(): void {
    if (this.#state === 'closed') return;
    this.#drop();
    const socket = this.#socket;
    try {
      socket.resetAndDestroy();
    } catch {
      // An RST is TCP's: on a unix socket Node throws ERR_INVALID_HANDLE_TYPE, and closing is all
      // there is (the client sees EOF). Uncaught here, it took the whole process down.
      socket.destroy();
    }
  }

  pauseReads(reason: ReadPause): void {
    const before = this.#pausedBy;
    this.#pausedBy |= PAUSE_BIT[reason];
    if (before === 0 && this.#state !== 'closed') this.#socket.pause();
  }

  resumeReads(reason: ReadPause): void {
    if ((this.#pausedBy & PAUSE_BIT[reason]) === 0) return;
    this.#pausedBy &= ~PAUSE_BIT[reason];
    if (this.#pausedBy === 0 && this.#state !== 'closed') this.#socket.resume();
  }

  #flushTurn(): void {
    const turn = this.#turn;
    if (turn.length === 0) return;
    this.#turn = this.#spare ?? [];
    this.#spare = null;
    this.#writeTurn(turn);
    turn.length = 0;
    this.#spare = turn;
  }

  #writeTurn(turn: Buffer[]): void {
    if (this.#state !== 'open') return;
    const socket = this.#socket;
    if (this.#queued === 0 && socket.writableLength < CHUNK) {
      // The usual case, a turn's small replies to a client that keeps up: straight to the socket.
      let total = 0;
      for (const bytes of turn) total += bytes.length;
      if (total <= CHUNK) {
        this.#out += total;
        if (!socket.destroyed) writeBatch(socket, turn);
        if (socket.writableLength >= this.#softBytes) this.#checkLimits();
        return;
      }
    }
    for (const bytes of turn) {
      this.#queue.push(bytes);
      this.#queued += bytes.length;
    }
    this.#pump();
    this.#checkLimits();
  }

  /** Hands queued bytes to the socket while it holds less than a chunk. */
  #pump(): void {
    const socket = this.#socket;
    if (this.#state === 'closed' || socket.destroyed) return;
    const queue = this.#queue;
    const batch = ClientOutput.#batch;
    while (this.#queued > 0 && socket.writableLength < CHUNK) {
      batch.length = 0; // a write that threw left it filled
      let room = CHUNK;
      for (let head = queue.peek(); head !== undefined && room > 0; head = queue.peek()) {
        const offset = this.#headOffset;
        const left = head.length - offset;
        if (left <= room) {
          batch.push(offset === 0 ? head : head.subarray(offset));
          queue.shift();
          this.#headOffset = 0;
          this.#queued -= left;
          room -= left;
        } else {
          batch.push(head.subarray(offset, offset + room));
          this.#headOffset = offset + room;
          this.#queued -= room;
          room = 0;
        }
      }
      this.#out += CHUNK - room;
      writeBatch(socket, batch);
      batch.length = 0;
    }
    if (this.#queued > 0) this.#awaitDrain();
    if (this.#queued === 0 && this.#state === 'ending') {
      this.#state = 'ended';
      // The client already sent its FIN (every byte of it was read) and the socket holds nothing
      // unwritten: close() sends the FIN after what the kernel holds, so shutdown() first would
      // only cost a syscall, a request object and a callback turn per client (the PHP-FPM case).
      if (socket.readableEnded && socket.writableLength === 0) socket.destroy();
      else if (this.#closeAfterEnd) socket.destroySoon();
      else socket.end();
      if (this.#lingerMs !== null) this.#linger(this.#lingerMs);
    }
    if (this.#progressAt !== null && this.#queued + socket.writableLength < this.#softBytes / 2) {
      this.#progressAt = null;
      this.#openSource?.releaseReads();
      this.resumeReads('output');
    }
  }

  /** After our FIN: read (and drop) until the client's FIN, or lingerMs once the FIN is out. */
  #linger(ms: number): void {
    const socket = this.#socket;
    this.#pausedBy = 0;
    socket.resume();
    // The client's FIN: once ours is out too the socket closes by itself (autoDestroy); here
    // in case it was out first. Replies still in the socket are never dropped for it.
    socket.once('end', () => {
      if (socket.writableFinished) socket.destroy();
    });
    socket.once('finish', () => {
      if (this.#state === 'closed') return;
      this.#lingerTimer = this.#limits.clock.setTimeout(() => socket.destroy(), ms);
      this.#lingerTimer.unref();
    });
  }

  #releaseSource(): void {
    const source = this.#openSource;
    if (source === null) return;
    this.#openSource = null;
    source.releaseReads();
  }

  #checkLimits(): void {
    const pending = this.#queued + this.#socket.writableLength;
    if (pending < this.#softBytes) return;
    const behind = this.#queued - this.#inTransit();
    if (behind >= this.#limits.outputHardBytes) {
      this.#overflow('output_hard', pending);
      return;
    }
    this.#awaitDrain();
    this.pauseReads('output');
    this.#openSource?.holdReads();
    this.#progressAt ??= this.#limits.clock.now();
    if (this.#stallTimer === null) this.#armStallTimer(this.#limits.outputSoftMs);
  }

  /** Queued bytes of the reply at the head: all of a streamed reply's, however many pieces. */
  #inTransit(): number {
    const out = this.#out;
    this.#pruneStreamed();
    const first = this.#streamed.peek();
    if (first !== undefined && first.start <= out) return Math.min(first.end, this.#in) - out;
    const head = this.#queue.peek();
    return head === undefined ? 0 : head.length - this.#headOffset;
  }

  /** Drops the streamed replies wholly handed to the socket. */
  #pruneStreamed(): void {
    const streamed = this.#streamed;
    for (let first = streamed.peek(); first !== undefined && first.end <= this.#out; first = streamed.peek()) streamed.shift();
  }

  #armStallTimer(ms: number): void {
    this.#stallDueAt = this.#limits.clock.now() + ms;
    this.#stallTimer = this.#limits.clock.setTimeout(() => this.#checkStall(), ms);
    this.#stallTimer.unref();
  }

  #checkStall(): void {
    this.#stallTimer = null;
    if (this.#state === 'closed' || this.#progressAt === null) return;
    const now = this.#limits.clock.now();
    if (now - this.#stallDueAt > LATE_MS) {
      this.#progressAt = now;
      this.#armStallTimer(this.#limits.outputSoftMs);
      return;
    }
    const idle = now - this.#progressAt;
    if (idle >= this.#limits.outputSoftMs) this.#overflow('output_stalled', this.#queued + this.#socket.writableLength);
    else this.#armStallTimer(this.#limits.outputSoftMs - idle);
  }

  #overflow(cause: OverflowCause, pending: number): void {
    this.#limits.overflowed(cause, pending);
    this.reset();
  }

  /** Forgets everything queued (the client is gone or being reset) so its memory is freed now. */
  #drop(): void {
    this.#state = 'closed';
    this.#turn.length = 0;
    this.#queue.clear();
    this.#queued = 0;
    this.#headOffset = 0;
    this.#streamed.clear();
    this.#open = null;
    // The connection carries other clients' replies after this one: it reads again, and what is
    // left of this reply is read and dropped.
    this.#releaseSource();
    this.#progressAt = null;
    if (this.#stallTimer !== null) this.#limits.clock.clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    if (this.#lingerTimer !== null) this.#limits.clock.clearTimeout(this.#lingerTimer);
    this.#lingerTimer = null;
  }

  /** The session's 'close' listener calls it (one listener per socket, not one per object). */
  closed(): void {
    if (this.#state !== 'closed') this.#drop();
    if (this.#onDrain !== null) this.#socket.off('drain', this.#onDrain);
  }
}
