import type { ServerPool } from '../pool/server-pool.js';

/**
 * Picks the server for a request. `hash` is the request's key hash, or null for a request without
 * keys. The server returned may have no ready connection yet, in which case the session waits for
 * it; null: no server can take the request now or soon (NO_HEALTHY_SERVER at once).
 */
export interface Router {
  readonly keyed: boolean;
  route(hash: number | null): ServerPool | null;
  /**
   * What keys must share to go in one request of a keyed pool: their server (ketama), or their
   * hash slot (cluster: Redis refuses keys of different slots even on one node). A request whose
   * keys fall in several groups is split per group, or refused.
   */
  group(hash: number): ServerPool | number | null;
  /** A request without keys may go to any server (route(null)); false: it is refused (ketama). */
  readonly keylessAnywhere: boolean;
  /** Server health changed: rebuild whatever depends on it. */
  rebuild(): void;
}
