/**
 * Which shared connection a session's next request to a server goes on. While any of its requests
 * to that server is in flight, the next one goes on the same connection: Redis runs one
 * connection's requests in order, so the session always reads its own writes (the pool's pick
 * alone could put a `SET` on one connection and the `GET` after it on another, which may run
 * first). Once none is in flight, the next request picks afresh.
 */
import type { Connection } from '../pool/connection.js';
import type { ServerPool } from '../pool/server-pool.js';

class Entry {
  conn: Connection | null = null;
  count = 0;
}

export class Affinities {
  /**
   * The first server's entry inline (a failover pool has one server in use: no Map per client);
   * a Map for the others, made when a second server is used.
   */
  #firstServer: ServerPool | null = null;
  readonly #first = new Entry();
  #others: Map<ServerPool, Entry> | null = null;

  #entry(server: ServerPool): Entry | undefined {
    return server === this.#firstServer ? this.#first : this.#others?.get(server);
  }

  /** The connection for the session's next request to `server`; null when none is ready (wait). */
  pick(server: ServerPool): Connection | null {
    const entry = this.#entry(server);
    const conn = entry?.conn ?? null;
    if (conn !== null && entry !== undefined && entry.count > 0 && conn.ready) return conn;
    return server.pickConnection();
  }

  /** A request went out on `conn` (from pick). */
  sent(server: ServerPool, conn: Connection): void {
    let entry = this.#entry(server);
    if (entry === undefined) {
      if (this.#firstServer === null) {
        this.#firstServer = server;
        entry = this.#first;
      } else {
        entry = new Entry();
        (this.#others ??= new Map()).set(server, entry);
      }
    }
    if (entry.conn !== conn) {
      entry.conn = conn;
      entry.count = 0;
    }
    entry.count++;
  }

  /** A request given to sent() was answered or failed. */
  settled(server: ServerPool, conn: Connection | null): void {
    const entry = this.#entry(server);
    if (entry !== undefined && entry.conn === conn && entry.count > 0) entry.count--;
  }
}
