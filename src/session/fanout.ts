/**
 * One client request that goes to several servers of a sharded pool (codec.ts: Spread):
 *
 *   parent Slot (its place in the client's reply order; never sent itself)
 *     └─ Fanout ─┬─ part Slot → server A   (split: the keys that live on A; broadcast: the request)
 *                ├─ part Slot → server B
 *                └─ …            sent in parallel on shared connections, each like any request
 *
 * Each part ends with its reply or a failure (after a retry where one is allowed); when the last
 * one has, the codec merges them into the parent's one reply (Codec.mergeReplies). The Fanout
 * owns what the parts got; the session owns sending and answering.
 *
 * What the parts got is held until the last is in (the merge puts them in the client's key order,
 * so nothing of it can go to the client before), and it is held to a budget (the pool's
 * clients.output_buffer.hard): past it, the parts' replies are dropped as they come and every part
 * counts as failed (CROSS_SERVER), so a get of many large values across servers costs poolside at
 * most the budget, never the sum of the values.
 */
import type { FailureReason } from '../errors.js';
import type { CommandSpec, FanoutPart } from '../codec/codec.js';
import type { ServerPool } from '../pool/server-pool.js';
import { Slot } from './slot.js';

export type FanoutKind = 'split' | 'broadcast';

/** What a part slot knows of the request it is part of. */
export interface PartOf {
  readonly fanout: Fanout;
  readonly index: number;
  /** Broadcast: the server this part is for; split: null, routed by its keys' hash. */
  readonly server: ServerPool | null;
}

export class Fanout {
  readonly parts: readonly Slot[];
  readonly #keys: readonly (readonly number[])[];
  readonly #results: (FanoutPart | null)[];
  #pending: number;
  /** Bytes of the parts' replies held (hold()), against #budget. */
  #held = 0;
  readonly #budget: number;
  /** The held replies passed the budget: they were dropped and every part fails. */
  #overBudget = false;

  readonly spec: CommandSpec;
  /** Bytes of the parts' own requests (split: copies of the keys and values; broadcast: none, they share the parent's). */
  readonly partBytes: number;

  private constructor(
    readonly kind: FanoutKind,
    /** The client's request: its place in the reply order, answered with the merge. */
    readonly parent: Slot,
    /** How many keys the client's request had. */
    readonly keyCount: number,
    requests: readonly Buffer[],
    hashes: readonly (number | null)[],
    servers: readonly (ServerPool | null)[],
    keys: readonly (readonly number[])[],
    budget: number,
  ) {
    this.spec = parent.spec;
    this.#budget = budget;
    let partBytes = 0;
    for (const request of requests) if (request !== parent.bytes) partBytes += request.length;
    this.partBytes = partBytes;
    this.#keys = keys;
    this.#results = new Array<FanoutPart | null>(requests.length).fill(null);
    this.#pending = requests.length;
    this.parts = requests.map((bytes, index) => {
      const part = new Slot(parent.owner, bytes, parent.spec, hashes[index]);
      part.part = { fanout: this, index, server: servers[index] };
      return part;
    });
  }

  /** Split by the server of each key: `requests[i]` carries the keys `keys[i]`, routed by `hashes[i]`. */
  static split(parent: Slot, keyCount: number, requests: readonly Buffer[], hashes: readonly number[], keys: readonly (readonly number[])[], budget: number): Fanout {
    return new Fanout('split', parent, keyCount, requests, hashes, requests.map(() => null), keys, budget);
  }

  /** The parent's request as it is, to each of `servers`. */
  static broadcast(parent: Slot, servers: readonly ServerPool[], budget: number): Fanout {
    return new Fanout('broadcast', parent, 0, servers.map(() => parent.bytes), servers.map(() => null), servers, servers.map(() => []), budget);
  }

  /**
   * A part is about to hold `bytes` more of its reply (a whole reply, or a piece of a streamed
   * one): false when the parts' replies are past the budget, and the bytes must be dropped.
   */
  hold(bytes: number): boolean {
    if (this.#overBudget) return false;
    this.#held += bytes;
    if (this.#held <= this.#budget) return true;
    this.#overBudget = true;
    this.#held = 0;
    // What the parts already got is let go now, not when the last part is in.
    for (let i = 0; i < this.#results.length; i++) {
      if (this.#results[i]?.kind === 'reply') this.#results[i] = this.#tooLarge(i);
    }
    return false;
  }

  #tooLarge(index: number): FanoutPart {
    return {
      kind: 'failed',
      keys: this.#keys[index],
      reason: 'CROSS_SERVER',
      message: `the servers' replies passed clients.output_buffer.hard (${this.#budget} bytes) before all were in: ask for fewer or smaller values at once`,
    };
  }

  /** A part got its reply (held by hold()); true when it was the last part outstanding. */
  replied(index: number, bytes: Buffer): boolean {
    return this.#settle(index, this.#overBudget ? this.#tooLarge(index) : { kind: 'reply', keys: this.#keys[index], bytes });
  }

  /** A part will get no reply; true when it was the last part outstanding. */
  failed(index: number, reason: FailureReason, message: string): boolean {
    return this.#settle(index, { kind: 'failed', keys: this.#keys[index], reason, message });
  }

  #settle(index: number, result: FanoutPart): boolean {
    if (this.#results[index] !== null) throw new Error(`part ${index} of ${this.spec.name} settled twice`);
    this.#results[index] = result;
    return --this.#pending === 0;
  }

  /** Every part's outcome, in part order (only once all are in). */
  results(): readonly FanoutPart[] {
    if (this.#pending !== 0) throw new Error(`${this.spec.name}: ${this.#pending} parts still out`);
    return this.#results as readonly FanoutPart[];
  }

  /** How many parts got no reply. */
  failedParts(): number {
    let n = 0;
    for (const result of this.#results) if (result !== null && result.kind === 'failed') n++;
    return n;
  }

  /** The first part that failed, in part order (what the failure metric counts), or null. */
  firstFailure(): { reason: FailureReason; message: string } | null {
    for (const result of this.#results) if (result !== null && result.kind === 'failed') return result;
    return null;
  }
}
