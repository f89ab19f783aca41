/** No server can take the request now or soon: answer NO_HEALTHY_SERVER at once. */
export const NO_SERVER = -1;

/**
 * Picks the server for a request. `hash` is the request's key hash (or -1 for a request without
 * keys); the returned index may name a server with no ready connection yet, in which case the
 * session waits for it.
 */
export interface Router {
  readonly keyed: boolean;
  route(hash: number): number;
  /** Server health changed: rebuild whatever depends on it. */
  rebuild(): void;
}
