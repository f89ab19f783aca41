/**
 * Which shared connection a session's next request to a server goes on. While any of its requests
 * to that server is in flight, the next one goes on the same connection: Redis runs one
 * connection's requests in order, so the session always reads its own writes (least-in-flight
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
  /** Created at the first request sent: a client that sends nothing costs no Map. */
  #byServer: Map<ServerPool, Entry> | null = null;

  /** The connection for the session's next request to `server`; null when none is ready (wait). */
  pick(server: ServerPool): Connection | null {
    const entry = this.#byServer?.get(server);
    const conn = entry?.conn ?? null;
    if (conn !== null && entry !== undefined && entry.count > 0 && conn.ready) return conn;
    return server.pickConnection();
  }

  /** A request went out on `conn` (from pick). */
  sent(server: ServerPool, conn: Connection): void {
    const byServer = (this.#byServer ??= new Map());
    let entry = byServer.get(server);
    if (entry === undefined) {
      entry = new Entry();
      byServer.set(server, entry);
    }
    if (entry.conn !== conn) {
      entry.conn = conn;
      entry.count = 0;
    }
    entry.count++;
  }

  /** A request given to sent() was answered or failed. */
  settled(server: ServerPool, conn: Connection | null): void {
    const entry = this.#byServer?.get(server);
    if (entry !== undefined && entry.conn === conn && entry.count > 0) entry.count--;
  }
}
