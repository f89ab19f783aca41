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
import type { ArgView, RequestLimits } from '../codec.js';
import { encodeCommand } from './resp.js';
import type { Clock } from '../../util/clock.js';
import type { Logger } from '../../util/log.js';
import { LogThrottle } from '../../util/log-throttle.js';

const AUTH_OK = Buffer.from('+OK\r\n');
export const WRONGPASS = Buffer.from('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
const NOAUTH = Buffer.from('-NOAUTH Authentication required.\r\n');
const AUTH_ARITY = Buffer.from("-ERR wrong number of arguments for 'auth' command\r\n");

/** Redis's name for the user of a password-only AUTH. */
const DEFAULT_USER = 'default';

/**
 * Request limits until a client has authenticated: Redis's (more than 10 arguments, or an
 * argument over 16 KiB, is a protocol error before AUTH), so a stranger cannot make poolside
 * hold a 512 MB request. The session applies them with RequestDecoder.setLimits.
 */
export const UNAUTHENTICATED_LIMITS: RequestLimits = { maxArgs: 10, maxArgBytes: 16 * 1024 };

/**
 * Wrong passwords one client may send: the reply to the last one is followed by closing the
 * client. Guessing then costs a new connection every few guesses instead of running at the speed
 * of a pipeline (100,000 guesses took 2.5 s on one connection). A client with a wrong password
 * in its config fails the same way it would against Redis, only on a new connection each time.
 */
export const MAX_WRONG_PASSWORDS = 3;

/** What a session does after a wrong password: answer it, or answer it and close the client. */
export type WrongPasswordVerdict = 'answer' | 'close';

export interface ClientAuthOptions {
  clock: Clock;
  log: Logger;
  /** The pool's name, for the log. */
  pool: string;
}

function digest(value: string | Buffer): Buffer {
  return createHash('sha256').update(value).digest();
}

export class ClientAuth {
  readonly #username: Buffer;
  readonly #password: Buffer;
  readonly #options: ClientAuthOptions | null;
  readonly #logThrottle = new LogThrottle();

  /** Without options, wrong passwords are not logged (unit tests of check and screen). */
  constructor(config: { username: string | null; password: string }, options: ClientAuthOptions | null = null) {
    this.#username = digest(config.username ?? DEFAULT_USER);
    this.#password = digest(config.password);
    this.#options = options;
  }

  /**
   * A session got WRONGPASS for the `failures`-th time (counting from 1). Logs at most once a
   * second for the whole pool, with how many were not logged; the session counts every one in
   * its pool's counters.
   */
  wrongPassword(failures: number): WrongPasswordVerdict {
    const options = this.#options;
    if (options !== null) {
      const unlogged = this.#logThrottle.take(options.clock.now());
      if (unlogged >= 0) {
        options.log.warn('client sent wrong credentials', { pool: options.pool, reason: 'auth_failed', unlogged_since_last: unlogged });
      }
    }
    return failures >= MAX_WRONG_PASSWORDS ? 'close' : 'answer';
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
