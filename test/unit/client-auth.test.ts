import { describe, expect, it } from 'vitest';
import { ClientAuth, MAX_WRONG_PASSWORDS, screen, WRONGPASS } from '../../src/codec/redis/client-auth.js';
import type { Screened } from '../../src/codec/redis/client-auth.js';
import type { ArgView } from '../../src/codec/codec.js';
import { encodeCommand, RespRequestDecoder } from '../../src/codec/redis/resp.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { quietLog } from '../helpers/proxy.js';

function screened(auth: ClientAuth, authenticated: boolean, ...args: string[]): Screened {
  let out: Screened | undefined;
  const decoder = new RespRequestDecoder({
    onRequest: (bytes: Buffer, view: ArgView) => {
      out = screen(auth, args[0].toUpperCase(), bytes, view, authenticated);
    },
  });
  decoder.push(encodeCommand(args));
  if (out === undefined) throw new Error('not framed');
  return out;
}

const reply = (s: Screened): string => (s.kind === 'answer' ? s.reply.toString().trim() : s.kind);

describe('client_auth screening', () => {
  const auth = new ClientAuth({ username: null, password: 'pw' });

  it('answers AUTH itself, for the default user with or without its name', () => {
    expect(screened(auth, false, 'AUTH', 'pw')).toEqual({ kind: 'answer', reply: Buffer.from('+OK\r\n'), authenticated: true });
    expect(screened(auth, false, 'AUTH', 'default', 'pw')).toMatchObject({ kind: 'answer', authenticated: true });
    expect(screened(auth, false, 'AUTH', 'nope')).toEqual({ kind: 'answer', reply: WRONGPASS, authenticated: false });
    expect(screened(auth, false, 'AUTH', 'other', 'pw')).toMatchObject({ reply: WRONGPASS });
    expect(reply(screened(auth, false, 'AUTH'))).toBe("-ERR wrong number of arguments for 'auth' command");
  });

  it('keeps an authenticated session authenticated through a failed AUTH, as Redis does', () => {
    expect(screened(auth, true, 'AUTH', 'nope')).toEqual({ kind: 'answer', reply: WRONGPASS, authenticated: true });
  });

  it('refuses everything but AUTH, HELLO … AUTH and QUIT before authentication', () => {
    expect(reply(screened(auth, false, 'GET', 'k'))).toBe('-NOAUTH Authentication required.');
    expect(reply(screened(auth, false, 'HELLO', '3'))).toBe('-NOAUTH Authentication required.');
    expect(screened(auth, false, 'QUIT')).toEqual({ kind: 'pass' });
    expect(screened(auth, true, 'GET', 'k')).toEqual({ kind: 'pass' });
  });

  it('takes the credentials out of HELLO … AUTH and keeps the rest', () => {
    const out = screened(auth, false, 'HELLO', '3', 'AUTH', 'default', 'pw', 'SETNAME', 'app');
    expect(out.kind).toBe('replace');
    if (out.kind === 'replace') expect(out.request).toEqual(encodeCommand(['HELLO', '3', 'SETNAME', 'app']));
    expect(screened(auth, false, 'HELLO', '3', 'AUTH', 'default', 'bad')).toMatchObject({ reply: WRONGPASS });
  });

  it('checks a configured username', () => {
    const named = new ClientAuth({ username: 'app', password: 'pw' });
    expect(named.check(Buffer.from('app'), Buffer.from('pw'))).toBe(true);
    expect(named.check(null, Buffer.from('pw'))).toBe(false);
    expect(named.check(Buffer.from('app'), Buffer.from('pw2'))).toBe(false);
  });
});

describe('client_auth wrong passwords', () => {
  it('closes a client at its third wrong password and logs at most once a second with how many were not logged', () => {
    const clock = new FakeClock();
    const log = quietLog();
    const guarded = new ClientAuth({ username: null, password: 'pw' }, { clock, log, pool: 'p' });
    expect([1, 2, 3, 4].map((n) => guarded.wrongPassword(n))).toEqual(['answer', 'answer', 'close', 'close']);
    expect(MAX_WRONG_PASSWORDS).toBe(3);
    for (let i = 0; i < 1000; i++) guarded.wrongPassword(1);
    clock.advance(1000);
    guarded.wrongPassword(1);
    expect(log.lines.map((l) => [l.msg, l.fields.unlogged_since_last])).toEqual([
      ['client sent wrong credentials', 0],
      ['client sent wrong credentials', 1003],
    ]);
  });
});
