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
import type { ArgView } from './codec/codec.js';
import { encodeCommand } from './codec/resp.js';

const AUTH_OK = Buffer.from('+OK\r\n');
export const WRONGPASS = Buffer.from('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
const NOAUTH = Buffer.from('-NOAUTH Authentication required.\r\n');
const AUTH_ARITY = Buffer.from("-ERR wrong number of arguments for 'auth' command\r\n");

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

/**
 * What a session does with a request under client_auth:
 * - `pass`: run it as usual;
 * - `answer`: answer it with `reply` and run nothing (`authenticated` is the session's new state);
 * - `replace`: run `request` instead, as if the client had sent it (HELLO without its credentials).
 */
export type Screened =
  | { kind: 'pass' }
  | { kind: 'answer'; reply: Buffer; authenticated: boolean }
  | { kind: 'replace'; request: Buffer };

const PASS: Screened = { kind: 'pass' };
const REFUSE: Screened = { kind: 'answer', reply: NOAUTH, authenticated: false };

/**
 * Screens one request of a session that is not yet authenticated, or that sends AUTH or HELLO:
 * AUTH is answered here, HELLO … AUTH has its credentials checked and removed, everything else
 * waits for authentication (QUIT excepted).
 */
export function screen(auth: ClientAuth, name: string, bytes: Buffer, args: ArgView, authenticated: boolean): Screened {
  const arg = (i: number): Buffer => bytes.subarray(args.starts[i], args.ends[i]);
  switch (name) {
    case 'AUTH': {
      if (args.count < 2 || args.count > 3) return { kind: 'answer', reply: AUTH_ARITY, authenticated };
      const ok = auth.check(args.count === 3 ? arg(1) : null, arg(args.count - 1));
      return { kind: 'answer', reply: ok ? AUTH_OK : WRONGPASS, authenticated: authenticated || ok };
    }
    case 'HELLO':
      for (let i = 2; i + 2 < args.count; i++) {
        if (arg(i).toString('latin1').toUpperCase() !== 'AUTH') continue;
        if (!auth.check(arg(i + 1), arg(i + 2))) return { kind: 'answer', reply: WRONGPASS, authenticated };
        const rest: Buffer[] = [];
        for (let j = 0; j < args.count; j++) if (j < i || j > i + 2) rest.push(arg(j));
        return { kind: 'replace', request: encodeCommand(rest) };
      }
      return authenticated ? PASS : REFUSE;
    case 'QUIT':
      return PASS;
    default:
      return authenticated ? PASS : REFUSE;
  }
}
