import type { ServerPool } from '../pool/server-pool.js';
import type { Router } from './router.js';

/**
 * Ordered servers: the first server that is up takes the traffic (requests wait briefly while it
 * reconnects); a failing or ejected server is skipped for the next one. When every server is
 * failing, requests wait for the first that is not ejected; when all are ejected, every one counts
 * as hopeful again (panic, see ServerPool.hopeful) and requests wait for the first.
 */
export class FailoverRouter implements Router {
  readonly keyed = false;
  readonly keylessAnywhere = true;
  readonly #servers: readonly ServerPool[];

  constructor(servers: readonly ServerPool[]) {
    this.#servers = servers;
  }

  route(): ServerPool | null {
    const servers = this.#servers;
    for (const server of servers) {
      if (server.usable && server.health.kind !== 'ejected') return server;
      // A server that is starting or up (between reconnects) is worth a short wait; a failing one is not.
      if (server.health.kind === 'starting' || server.health.kind === 'up') return server;
    }
    for (const server of servers) {
      if (server.hopeful) return server;
    }
    return null;
  }

  group(): ServerPool | null {
    return this.route();
  }

  rebuild(): void {}
}
