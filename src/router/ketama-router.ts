import type { PoolConfig } from '../config/schema.js';
import type { ServerPool } from '../pool/server-pool.js';
import { KetamaContinuum, twemproxyServerName } from './ketama.js';
import { NO_SERVER } from './router.js';
import type { Router } from './router.js';

/**
 * Keys sharded over the servers by twemproxy's ketama continuum, so a pool moved from twemproxy
 * keeps every key where it was. With `on_ejection: rehash` the continuum is rebuilt over the
 * servers that are not ejected (twemproxy's auto_eject_hosts); with `fail` it never changes and a
 * key whose server is ejected fails fast: a storage pool must not silently move keys.
 */
export class KetamaRouter implements Router {
  readonly keyed = true;
  readonly #servers: readonly ServerPool[];
  readonly #rehash: boolean;
  #continuum: KetamaContinuum | null = null;
  /** Continuum index → server index, for a continuum built over a subset. */
  #members: number[] = [];

  constructor(servers: readonly ServerPool[], config: PoolConfig) {
    this.#servers = servers;
    this.#rehash = config.ketama.onEjection === 'rehash';
    this.rebuild();
  }

  route(hash: number): number {
    const continuum = this.#continuum;
    if (continuum === null) return NO_SERVER;
    const index = this.#members[continuum.serverFor(hash >>> 0)];
    if (!this.#servers[index].hopeful) return NO_SERVER;
    return index;
  }

  rebuild(): void {
    const members: number[] = [];
    for (let i = 0; i < this.#servers.length; i++) {
      if (!this.#rehash || this.#servers[i].hopeful) members.push(i);
    }
    this.#members = members;
    this.#continuum =
      members.length === 0
        ? null
        : new KetamaContinuum(
            members.map((i) => {
              const { address, name, weight } = this.#servers[i].config;
              const isDefaultName = name === `${address.host}:${address.port}`;
              return { name: isDefaultName ? twemproxyServerName(address) : name, weight };
            }),
          );
  }
}
