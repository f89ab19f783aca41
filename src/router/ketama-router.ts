import type { PoolConfig } from '../config/schema.js';
import type { ServerPool } from '../pool/server-pool.js';
import { KetamaContinuum, twemproxyServerName } from './ketama.js';
import type { Router } from './router.js';

/**
 * Keys sharded over the servers by twemproxy's ketama continuum, so a pool moved from twemproxy
 * keeps every key where it was. With `on_ejection: rehash` the continuum is rebuilt over the
 * servers that are not ejected (twemproxy's auto_eject_hosts); with `fail` it never changes and a
 * key whose server is ejected fails fast: a storage pool must not silently move keys.
 */
export class KetamaRouter implements Router {
  readonly keyed = true;
  readonly keylessAnywhere = false;
  readonly #servers: readonly ServerPool[];
  readonly #rehash: boolean;
  #continuum: KetamaContinuum | null = null;
  /** Continuum index → server, for a continuum built over a subset. */
  #members: ServerPool[] = [];

  constructor(servers: readonly ServerPool[], config: PoolConfig) {
    this.#servers = servers;
    this.#rehash = config.ketama.onEjection === 'rehash';
    this.rebuild();
  }

  route(hash: number | null): ServerPool | null {
    const continuum = this.#continuum;
    if (continuum === null) return null;
    // A keyless request (PING, ECHO…) goes to the server at the continuum's last point.
    const server = this.#members[continuum.serverFor((hash ?? -1) >>> 0)];
    return server.hopeful ? server : null;
  }

  group(hash: number): ServerPool | null {
    return this.route(hash);
  }

  rebuild(): void {
    const members: ServerPool[] = [];
    for (const server of this.#servers) {
      if (!this.#rehash || server.hopeful) members.push(server);
    }
    this.#members = members;
    this.#continuum =
      members.length === 0
        ? null
        : new KetamaContinuum(
            members.map((server) => {
              const { address, name, weight } = server.config;
              const isDefaultName = name === `${address.host}:${address.port}`;
              return { name: isDefaultName ? twemproxyServerName(address) : name, weight };
            }),
          );
  }
}
