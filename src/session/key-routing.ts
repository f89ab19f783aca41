/**
 * Where a request's keys route in a sharded (ketama) pool: the hash of its first key, and whether
 * its keys land on more than one server. One object per session, reused for every request: the
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
  /** After route(): its keys map to more than one server. */
  cross = false;
  #bytes: Buffer = EMPTY;
  #server: ServerPool | null = null;
  readonly #visit = (start: number, end: number, source?: Buffer): void => {
    const hash = this.#pool.hashKey(source ?? this.#bytes, start, end);
    const server = this.#pool.route(hash);
    if (this.keys++ === 0) {
      this.hash = hash;
      this.#server = server;
    } else if (server !== this.#server) {
      this.cross = true;
    }
  };

  constructor(pool: Pool, codec: Codec) {
    this.#pool = pool;
    this.#codec = codec;
  }

  /**
   * The request's keys grouped by the server each maps to (the router's choice now: whatever
   * places keys, ketama today), groups in the order of their first key, key indices in forEachKey
   * order; with the hash of each group's first key, by which its part is routed. For splitting a
   * request whose keys cross servers (rarely: it allocates).
   */
  groups(spec: CommandSpec, bytes: Buffer, args: ArgView): { hashes: number[]; keys: number[][] } {
    const pool = this.#pool;
    const byServer = new Map<ServerPool | null, number>();
    const hashes: number[] = [];
    const keys: number[][] = [];
    let index = 0;
    this.#codec.forEachKey(spec, bytes, args, (start, end, source) => {
      const hash = pool.hashKey(source ?? bytes, start, end);
      const server = pool.route(hash);
      let group = byServer.get(server);
      if (group === undefined) {
        group = keys.length;
        byServer.set(server, group);
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
