/**
 * Redis transaction and watch state of one pinned connection, tracked from the server's replies,
 * never from what was sent: a `MULTI` the server refused opens nothing, a `DISCARD` without `MULTI`
 * (an error) leaves a `WATCH` in place, and a `SELECT` queued in a transaction moves the connection
 * only if `EXEC` committed it.
 *
 * Two views, because a client pipelines: the *sent* view (a `MULTI` went out and no `EXEC`/`DISCARD`
 * after it) decides what poolside may add to the stream (never a `SELECT` inside a queued
 * transaction); the *replied* view decides what the connection is (open transaction, watched keys,
 * database), and so whether it can be given back clean.
 */
import type { ResponseSink } from '../codec.js';
import { RespResponseDecoder } from './resp-response.js';
import type { DbChange } from '../session-rules.js';

/** What a request means for transaction state: decided when it is sent, applied to its reply. */
export type TxRole = 'multi' | 'exec' | 'discard' | 'watch' | 'unwatch' | 'select' | 'reset' | 'other';

const ROLES: ReadonlyMap<string, TxRole> = new Map([
  ['MULTI', 'multi'],
  ['EXEC', 'exec'],
  ['DISCARD', 'discard'],
  ['WATCH', 'watch'],
  ['UNWATCH', 'unwatch'],
  ['SELECT', 'select'],
  ['RESET', 'reset'],
]);

export function txRole(commandName: string): TxRole {
  return ROLES.get(commandName) ?? 'other';
}


const NO_CHANGE: DbChange = { kind: 'none' };
const UNKNOWN: DbChange = { kind: 'unknown' };

export const EXECABORT = Buffer.from('-EXECABORT Transaction discarded because of previous errors.\r\n');
export const DISCARD_REQUEST = Buffer.from('*1\r\n$7\r\nDISCARD\r\n');

function isError(bytes: Buffer): boolean {
  return bytes[0] === 0x2d /* - */ || bytes[0] === 0x21 /* ! */;
}

function isSimple(bytes: Buffer, text: string): boolean {
  return bytes.length === text.length + 3 && bytes[0] === 0x2b /* + */ && bytes.toString('latin1', 1, 1 + text.length) === text;
}

export class RedisTransaction {
  /** Replied view: the server acknowledged MULTI and no EXEC/DISCARD has ended it. */
  #open = false;
  /** Replied view: WATCHed keys that no EXEC, DISCARD or UNWATCH has released. */
  #watching = false;
  /** Sent view: a MULTI was sent and no EXEC or DISCARD after it. */
  #sentOpen = false;
  /** Sent view: a SELECT was sent inside the transaction being queued. */
  #selectSent = false;
  /** Commands the server answered +QUEUED in the open transaction. */
  #queued = 0;
  /** SELECTs queued in the open transaction: their position among the queued commands and target. */
  #queuedSelects: { index: number; db: number | null }[] = [];
  /** poolside refused a command inside the transaction being queued: its EXEC must abort. */
  #poisoned = false;

  /** A transaction or watch holds the connection (by the replies so far). */
  get holding(): boolean {
    return this.#open || this.#watching;
  }

  /** Between a sent MULTI and its EXEC/DISCARD: poolside must add nothing to the stream. */
  get queuing(): boolean {
    return this.#sentOpen;
  }

  /** Transaction state that may exist or come to exist (sent or replied): the connection is not clean. */
  get dirty(): boolean {
    return this.#open || this.#watching || this.#sentOpen;
  }

  /**
   * Records a request about to be sent. Returns 'abort' for an EXEC that must not run (poolside
   * refused a command of its transaction): the caller sends DISCARD instead and answers EXECABORT,
   * as Redis does when a command fails to queue.
   */
  onSend(role: TxRole): 'send' | 'abort' {
    switch (role) {
      case 'multi':
        if (!this.#sentOpen) {
          this.#sentOpen = true;
          this.#selectSent = false;
          this.#poisoned = false;
        }
        return 'send';
      case 'exec':
      case 'discard': {
        const abort = role === 'exec' && this.#sentOpen && this.#poisoned;
        this.#sentOpen = false;
        this.#poisoned = false;
        return abort ? 'abort' : 'send';
      }
      case 'select':
        if (this.#sentOpen) this.#selectSent = true;
        return 'send';
      case 'reset':
        // RESET discards a transaction being queued and is never queued itself.
        this.#sentOpen = false;
        this.#poisoned = false;
        this.#selectSent = false;
        return 'send';
      default:
        return 'send';
    }
  }

  /**
   * Whether nothing may be sent on the session's behalf until this request's reply is in: an EXEC
   * that may commit a queued SELECT, or a RESET (it moves the connection to database 0). Call
   * before onSend.
   */
  needsBarrier(role: TxRole): boolean {
    return role === 'reset' || this.execMaySelect(role);
  }

  /** poolside answered a request itself (refused it) while a transaction was being queued. */
  refusedInside(): void {
    if (this.#sentOpen) this.#poisoned = true;
  }

  /**
   * Whether an EXEC being sent may change the database (a SELECT was queued before it): nothing
   * may be sent on the session's behalf until its reply says what happened. Call before onSend.
   */
  execMaySelect(role: TxRole): boolean {
    return role === 'exec' && this.#sentOpen && this.#selectSent;
  }

  /** Applies one reply, in order. `selectDb`: for a SELECT, the database it names (null: unreadable). */
  onReply(role: TxRole, selectDb: number | null, bytes: Buffer): DbChange {
    const error = isError(bytes);
    switch (role) {
      case 'multi':
        if (!error && !this.#open) {
          this.#open = true;
          this.#queued = 0;
          this.#queuedSelects = [];
        }
        return NO_CHANGE;
      case 'exec': {
        if (!this.#open) return NO_CHANGE; // EXEC without MULTI: nothing changes, a WATCH stays
        this.#open = false;
        this.#watching = false; // EXEC unwatches whatever it answers: results, nil or EXECABORT
        const selects = this.#queuedSelects;
        this.#queuedSelects = [];
        if (selects.length === 0 || error) return NO_CHANGE;
        return committedSelect(bytes, selects);
      }
      case 'discard':
        if (!error && this.#open) {
          this.#open = false;
          this.#watching = false;
          this.#queuedSelects = [];
        }
        return NO_CHANGE;
      case 'watch':
        if (!error && !this.#open) this.#watching = true;
        break;
      case 'unwatch':
        if (!error && !this.#open) this.#watching = false;
        break;
      case 'reset':
        if (error) return UNKNOWN;
        // The connection is as new: no transaction, no watch, database 0.
        this.#open = false;
        this.#watching = false;
        this.#queued = 0;
        this.#queuedSelects = [];
        return { kind: 'selected', db: 0 };
      case 'select':
        if (!this.#open) {
          if (error) return NO_CHANGE;
          return selectDb !== null && isSimple(bytes, 'OK') ? { kind: 'selected', db: selectDb } : UNKNOWN;
        }
        break;
      default:
        break;
    }
    if (this.#open && isSimple(bytes, 'QUEUED')) {
      if (role === 'select') this.#queuedSelects.push({ index: this.#queued, db: selectDb });
      this.#queued++;
    }
    return NO_CHANGE;
  }
}

/**
 * The database after an EXEC that committed queued SELECTs: the last one whose own result is +OK.
 * Only transactions with a SELECT get here, so framing the result's elements costs nothing
 * otherwise.
 */
function committedSelect(exec: Buffer, selects: { index: number; db: number | null }[]): DbChange {
  if (exec[0] !== 0x2a /* * */) return NO_CHANGE; // nil: WATCH failed, nothing ran
  const headerEnd = exec.indexOf('\r\n');
  if (headerEnd < 0) return UNKNOWN;
  const count = Number(exec.toString('latin1', 1, headerEnd));
  if (!Number.isInteger(count) || count < 0) return NO_CHANGE;
  const elements: Buffer[] = [];
  const sink: ResponseSink = { onResponse: (bytes) => void elements.push(bytes) };
  try {
    new RespResponseDecoder(sink).push(exec.subarray(headerEnd + 2));
  } catch {
    return UNKNOWN;
  }
  if (elements.length !== count) return UNKNOWN;
  let change: DbChange = NO_CHANGE;
  for (const { index, db } of selects) {
    const element = elements[index];
    if (element === undefined) return UNKNOWN;
    if (isSimple(element, 'OK')) change = db !== null ? { kind: 'selected', db } : UNKNOWN;
  }
  return change;
}
