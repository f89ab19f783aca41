/**
 * Where a request's keys route in a keyed pool (ketama, cluster): the hash of its first key, and
 * whether its keys fall in more than one of the router's groups (servers for ketama, hash slots for
 * cluster: Router.group). One object per session, reused for every request: the
 * key visitor is bound once, nothing is allocated per request.
 */
import type { ArgView, CommandSpec } from '../codec/codec.js';
import type { Codec } from '../codec/registry.js';
import type { Pool } from '../pool/pool.js';
import type { ServerPool } from '../pool/server-pool.js';
import { EMPTY } from './slot.js';

export class KeyRouting {
  readonly #pool: Pool;
  readonly #codec: Codec;
  /** After route(): how many keys the request has. */
  keys = 0;
  /** After route(): the first key's hash, or null without keys. */
  hash: number | null = null;
  /** After route(): its keys fall in more than one group (Router.group). */
  cross = false;
  #bytes: Buffer = EMPTY;
  #group: ServerPool | number | null = null;
  readonly #visit = (start: number, end: number, source?: Buffer): void => {
    const hash = this.#pool.hashKey(source ?? this.#bytes, start, end);
    const group = this.#pool.router.group(hash);
    if (this.keys++ === 0) {
      this.hash = hash;
      this.#group = group;
    } else if (group !== this.#group) {
      this.cross = true;
    }
  };

  constructor(pool: Pool, codec: Codec) {
    this.#pool = pool;
    this.#codec = codec;
  }

  /**
   * The request's keys grouped by the router's group of each (its server for ketama, its slot for
   * cluster), groups in the order of their first key, key indices in forEachKey
   * order; with the hash of each group's first key, by which its part is routed. For splitting a
   * request whose keys cross servers (rarely: it allocates).
   */
  groups(spec: CommandSpec, bytes: Buffer, args: ArgView): { hashes: number[]; keys: number[][] } {
    const pool = this.#pool;
    const byGroup = new Map<ServerPool | number | null, number>();
    const hashes: number[] = [];
    const keys: number[][] = [];
    let index = 0;
    this.#codec.forEachKey(spec, bytes, args, (start, end, source) => {
      const hash = pool.hashKey(source ?? bytes, start, end);
      const key = pool.router.group(hash);
      let group = byGroup.get(key);
      if (group === undefined) {
        group = keys.length;
        byGroup.set(key, group);
        hashes.push(hash);
        keys.push([]);
      }
      keys[group].push(index++);
    });
    return { hashes, keys };
  }

  /** Visits the request's keys; read keys, hash and cross afterwards, before the next request. */
  route(spec: CommandSpec, bytes: Buffer, args: ArgView): void {
    this.keys = 0;
    this.hash = null;
    this.cross = false;
    this.#bytes = bytes;
    this.#codec.forEachKey(spec, bytes, args, this.#visit);
    this.#bytes = EMPTY;
  }
}
