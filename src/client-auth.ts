/**
 * Client authentication checked by poolside itself (`client_auth` in a pool's config), in Redis's
 * terms: AUTH [username] password, HELLO … AUTH username password. Clients that authenticate on
 * every connect (phpredis `auth`) are answered here and share pooled connections like everyone
 * else, instead of each pinning a server connection for its AUTH.
 *
 * Credentials are compared as SHA-256 digests with timingSafeEqual: constant time, and no length
 * leaks through an early exit.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const AUTH_OK = Buffer.from('+OK\r\n');
export const WRONGPASS = Buffer.from('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
export const NOAUTH = Buffer.from('-NOAUTH Authentication required.\r\n');
export const AUTH_ARITY = Buffer.from("-ERR wrong number of arguments for 'auth' command\r\n");

/** Redis's name for the user of a password-only AUTH. */
const DEFAULT_USER = 'default';

function digest(value: string | Buffer): Buffer {
  return createHash('sha256').update(value).digest();
}

export class ClientAuth {
  readonly #username: Buffer;
  readonly #password: Buffer;

  constructor(config: { username: string | null; password: string }) {
    this.#username = digest(config.username ?? DEFAULT_USER);
    this.#password = digest(config.password);
  }

  /** `username` null: a password-only AUTH, which Redis takes as the user "default". */
  check(username: Buffer | null, password: Buffer): boolean {
    const userOk = timingSafeEqual(digest(username ?? DEFAULT_USER), this.#username);
    const passwordOk = timingSafeEqual(digest(password), this.#password);
    return userOk && passwordOk;
  }
}
