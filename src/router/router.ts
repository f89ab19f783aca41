import type { ServerPool } from '../pool/server-pool.js';

/**
 * Picks the server for a request. `hash` is the request's key hash, or null for a request without
 * keys. The server returned may have no ready connection yet, in which case the session waits for
 * it; null: no server can take the request now or soon (NO_HEALTHY_SERVER at once).
 */
export interface Router {
  readonly keyed: boolean;
  route(hash: number | null): ServerPool | null;
  /** Server health changed: rebuild whatever depends on it. */
  rebuild(): void;
}
