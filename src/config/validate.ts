/**
 * Pure parsers for the values the config is made of: durations, byte sizes, percentages,
 * addresses, socket modes, twemproxy-style server strings, names and enums. Each takes the value
 * YAML produced and returns the parsed value or a message; load.ts adds where in the file the value
 * was. Messages follow "<yaml path>: ", so they start lower-case and quote what was given.
 */

import { isIPv4, isIPv6 } from 'node:net';
import type { Account } from './accounts.js';
import type { ListenAddress, TcpAddress } from './schema.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };
/** `source` is the scalar as written in the file, for the rare value YAML's typing loses. */
export type Parser<T> = (value: unknown, source?: string) => Parsed<T>;

export const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
export const fail = <T>(message: string): Parsed<T> => ({ ok: false, message });

/**
 * Credentials written into a value (`redis://user:pass@host`, `user:pass@host`) as `***@`:
 * problems are logged and sent back by POST /reload, and must not carry a password.
 */
export function redactCredentials(text: string): string {
  return text
    .replace(/(^|[\s"'(])[^\s"'@:/]*:[^\s"'/]*@/g, '$1***@')
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s"'/]*@/gi, '$1***@');
}

/** How a value reads back in a message: strings quoted (credentials redacted), everything else as YAML would show it. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(redactCredentials(value));
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

export function parseString(value: unknown): Parsed<string> {
  return typeof value === 'string' && value !== '' ? ok(value) : fail(`expected a string, got ${describe(value)}`);
}

/** A label that also ends up in metrics and the ketama continuum, so no whitespace. */
export function parseName(value: unknown): Parsed<string> {
  return typeof value === 'string' && /^\S+$/.test(value)
    ? ok(value)
    : fail(`expected a name without spaces, got ${describe(value)}`);
}

export function wholeNumber(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (value) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      return fail(`expected a whole number, got ${describe(value)}`);
    }
    if (value < min) return fail(`must be at least ${min}, got ${value}`);
    if (value > max) return fail(`must be at most ${max}, got ${value}`);
    return ok(value);
  };
}

export function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return (value) => {
    const match = values.find((v) => v === value);
    if (match !== undefined) return ok(match);
    const close = typeof value === 'string' ? suggest(value, values) : null;
    const hint = close === null ? '' : `; did you mean ${close}?`;
    return fail(`expected one of ${values.join(', ')}, got ${describe(value)}${hint}`);
  };
}

/**
 * twemproxy's hash_tag: two characters such as "{}" (only the part of a key between them is
 * hashed), or "" for none. ASCII only, since keys are matched byte by byte.
 */
export function parseHashTag(value: unknown): Parsed<string> {
  if (typeof value === 'string' && (value === '' || /^[\x21-\x7e]{2}$/.test(value))) return ok(value);
  const hint = typeof value === 'object' ? ' (quote it: an unquoted {} is a YAML mapping)' : '';
  return fail(`expected two characters such as "{}", or "" for none, got ${describe(value)}${hint}`);
}

// setTimeout fires at once for delays above 2^31-1 ms, so a longer duration would silently mean 0.
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const SUB_MS = /^\d+(?:\.\d+)?\s*(us|µs|ns)$/;
const DURATION_EXAMPLE = 'a duration such as "500ms", "5s", "1m" or "1h"';

/**
 * `500ms`, `5s`, `1m`, `1h` to milliseconds. A bare number other than 0 is rejected: `timeout: 5`
 * is seconds to one reader and milliseconds to the next, so the unit is required.
 */
export function parseDuration(value: unknown): Parsed<number> {
  if (typeof value === 'number') {
    if (value === 0) return ok(0);
    return fail(`add a unit (ms, s, m or h), e.g. "${value}ms" or "${value}s"; got the plain number ${value}`);
  }
  if (typeof value !== 'string') return fail(`expected ${DURATION_EXAMPLE}, got ${describe(value)}`);
  const text = value.trim();
  if (text === '0') return ok(0);
  if (SUB_MS.test(text)) return fail(`durations have millisecond resolution (ms, s, m or h), got ${describe(value)}`);
  const match = DURATION.exec(text);
  if (match === null) return fail(`expected ${DURATION_EXAMPLE}, got ${describe(value)}`);
  const ms = Number(match[1]) * DURATION_UNITS[match[2]];
  // 1.5s is fine; 1.5ms is not a whole number of milliseconds.
  if (!Number.isInteger(ms)) return fail(`durations have millisecond resolution, got ${describe(value)}`);
  if (ms > MAX_DURATION_MS) {
    return fail(`${describe(value)} is longer than Node.js timers allow (${MAX_DURATION_MS}ms, ~24.8 days)`);
  }
  return ok(ms);
}

// Binary multiples, matching DEFAULTS (1mb = 1 << 20) and how Redis reads `512mb` in redis.conf.
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE = /^(\d+)\s*(b|kb|mb|gb)?$/i;
const SIZE_EXAMPLE = 'a size such as "64kb", "1mb" or a number of bytes';

/** `64kb`, `1mb`, `512mb` (binary multiples) or a plain integer number of bytes. */
export function parseSize(value: unknown): Parsed<number> {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? ok(value) : fail(`expected ${SIZE_EXAMPLE}, got ${value}`);
  }
  const match = typeof value === 'string' ? SIZE.exec(value.trim()) : null;
  if (match === null) return fail(`expected ${SIZE_EXAMPLE}, got ${describe(value)}`);
  const bytes = Number(match[1]) * SIZE_UNITS[(match[2] ?? 'b').toLowerCase()];
  return Number.isSafeInteger(bytes) ? ok(bytes) : fail(`${describe(value)} is too large`);
}

const PERCENT = /^(\d+(?:\.\d+)?)\s*%$/;
const PERCENT_EXAMPLE = 'a percentage such as "20%" or a fraction between 0 and 1';

/** `20%` or a fraction 0..1, returned as a fraction. */
export function parsePercent(value: unknown): Parsed<number> {
  if (typeof value === 'number') {
    // 20 almost certainly meant 20%, but guessing would make 1 ambiguous (1% or 100%?).
    return value >= 0 && value <= 1 ? ok(value) : fail(`expected ${PERCENT_EXAMPLE}, got ${value}`);
  }
  const match = typeof value === 'string' ? PERCENT.exec(value.trim()) : null;
  if (match === null) return fail(`expected ${PERCENT_EXAMPLE}, got ${describe(value)}`);
  const percent = Number(match[1]);
  return percent <= 100 ? ok(percent / 100) : fail(`expected at most 100%, got ${describe(value)}`);
}

const HOSTNAME_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

function validHost(host: string): boolean {
  if (isIPv4(host)) return true;
  // Dotted all-digit names are a mistyped IPv4 address, never a hostname (999.0.0.1, 10.0.5).
  if (/^[\d.]+$/.test(host)) return false;
  return host.length <= 253 && host.split('.').every((label) => HOSTNAME_LABEL.test(label));
}

function parsePort(text: string, whole: string, allowZero: boolean): Parsed<number> {
  // No leading zeros: the port is part of a server's default (ketama) name, so it must read one way.
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text)) return fail(`expected host:port, got ${describe(whole)}`);
  const port = Number(text);
  const min = allowZero ? 0 : 1;
  if (port < min || port > 65535) return fail(`port ${port} is out of range ${min}..65535 in ${describe(whole)}`);
  return ok(port);
}

interface HostPort {
  host: string;
  port: string;
  /** Whatever followed the port after another colon (a twemproxy weight), or null. */
  rest: string | null;
}

/** Splits `host:port[:rest]` where host is an IPv4 address, a hostname or a bracketed IPv6 address. */
function splitHostPort(text: string): Parsed<HostPort> {
  let host: string;
  let after: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return fail(`expected [ipv6]:port, got ${describe(text)}`);
    host = text.slice(1, close);
    if (!isIPv6(host)) return fail(`${describe(host)} is not a valid IPv6 address in ${describe(text)}`);
    after = text.slice(close + 2);
  } else {
    const first = text.indexOf(':');
    if (first < 0) return fail(`expected host:port, got ${describe(text)}`);
    host = text.slice(0, first);
    after = text.slice(first + 1);
    // More colons after a hex-looking host only happen when an IPv6 address was written bare.
    if (isIPv6(text) || ((after.match(/:/g) ?? []).length >= 2 && /^[0-9a-f]*$/i.test(host))) {
      return fail(`IPv6 addresses need brackets, e.g. "[::1]:6379", got ${describe(text)}`);
    }
    if (!validHost(host)) return fail(`${describe(host)} is not a valid IPv4 address or hostname in ${describe(text)}`);
  }
  const colon = after.indexOf(':');
  if (colon < 0) return ok({ host, port: after, rest: null });
  return ok({ host, port: after.slice(0, colon), rest: after.slice(colon + 1) });
}

/** `host:port`, `[v6]:port`. Port 0 (ephemeral) is allowed only where we listen. */
export function parseTcpAddress(text: string, opts: { allowPortZero: boolean }): Parsed<TcpAddress> {
  const split = splitHostPort(text.trim());
  if (!split.ok) return split;
  if (split.value.rest !== null) return fail(`expected host:port, got ${describe(text)}`);
  const port = parsePort(split.value.port, text, opts.allowPortZero);
  return port.ok ? ok({ kind: 'tcp', host: split.value.host, port: port.value }) : port;
}

// sun_path is 108 bytes on Linux and the kernel needs room for the terminating NUL.
export const UNIX_PATH_MAX_BYTES = 107;

export function parseUnixPath(path: string): Parsed<string> {
  if (!path.startsWith('/')) return fail(`unix socket paths must be absolute, got ${describe(path)}`);
  if (path.includes('\0')) return fail('unix socket paths cannot contain NUL bytes');
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes <= UNIX_PATH_MAX_BYTES) return ok(path);
  return fail(
    `unix socket path is ${bytes} bytes long; the limit is ${UNIX_PATH_MAX_BYTES} bytes ` +
      '(sun_path is 108 bytes including the terminating NUL)',
  );
}

/** `host:port`, `[v6]:port` or `unix:/absolute/path`. */
export function parseListenAddress(value: unknown, unixMode: number, owner: Account | null = null, group: Account | null = null): Parsed<ListenAddress> {
  if (typeof value !== 'string') return fail(`expected host:port or unix:/path, got ${describe(value)}`);
  if (value.startsWith('unix:')) {
    const path = parseUnixPath(value.slice('unix:'.length));
    return path.ok ? ok({ kind: 'unix', path: path.value, mode: unixMode, owner, group }) : path;
  }
  return parseTcpAddress(value, { allowPortZero: true });
}

/** The admin endpoint is HTTP on TCP; port 0 is allowed so tests can ask for an ephemeral port. */
export function parseAdminAddress(value: unknown): Parsed<TcpAddress> {
  if (typeof value !== 'string') return fail(`expected host:port, got ${describe(value)}`);
  if (value.startsWith('unix:')) return fail('the admin endpoint listens on TCP only; expected host:port');
  return parseTcpAddress(value, { allowPortZero: true });
}

/** The `address` of a server written as a mapping: TCP only, no weight. */
export function parseServerAddress(value: unknown): Parsed<TcpAddress> {
  if (typeof value !== 'string') return fail(`expected host:port, got ${describe(value)}`);
  if (value.startsWith('unix:')) return fail(`servers must be TCP host:port addresses, got ${describe(value)}`);
  return parseTcpAddress(value, { allowPortZero: false });
}

/**
 * A unix socket's file mode: an octal string ("0660", "660", "0o660") or a number. YAML 1.2 reads
 * an unquoted 0660 as decimal 660, so `source` (the text as written) is checked for a leading zero
 * to recover the octal the user meant.
 */
export function parseMode(value: unknown, source?: string): Parsed<number> {
  let mode: number;
  if (typeof value === 'number' && source !== undefined && /^0[0-7]+$/.test(source)) {
    mode = Number.parseInt(source, 8);
  } else if (typeof value === 'number' && Number.isInteger(value)) {
    mode = value;
  } else if (typeof value === 'string' && /^(?:0o?)?[0-7]{1,4}$/.test(value)) {
    mode = Number.parseInt(value.replace(/^0o/, ''), 8);
  } else {
    return fail(`expected a file mode as an octal string such as "0660", got ${describe(value)}`);
  }
  if (mode >= 0 && mode <= 0o777) return ok(mode);
  return fail(`file mode ${source ?? describe(value)} is out of range; write it as an octal string such as "0660"`);
}

export interface ServerString {
  address: TcpAddress;
  /** `host:port` exactly as written, without the weight: the basis of the default name. */
  addressText: string;
  weight: number | null;
  name: string | null;
}

/** twemproxy's server form: `host:port`, `host:port:weight` or `host:port:weight name`. */
export function parseServerString(value: unknown): Parsed<ServerString> {
  if (typeof value !== 'string') {
    return fail(`expected host:port, "host:port:weight name" or a mapping, got ${describe(value)}`);
  }
  const text = value.trim();
  const space = text.search(/\s/);
  const hostPortWeight = space < 0 ? text : text.slice(0, space);
  const name = space < 0 ? null : text.slice(space).trim();
  if (hostPortWeight.startsWith('unix:') || hostPortWeight.startsWith('/')) {
    return fail(`servers must be TCP host:port addresses, got ${describe(value)}`);
  }
  if (name !== null && /\s/.test(name)) return fail(`server names cannot contain spaces, got ${describe(value)}`);
  const split = splitHostPort(hostPortWeight);
  if (!split.ok) return split;
  const port = parsePort(split.value.port, hostPortWeight, false);
  if (!port.ok) return port;
  const { rest } = split.value;
  if (rest !== null && !/^\d+$/.test(rest)) {
    return fail(`expected "host:port:weight name" with a whole-number weight, got ${describe(value)}`);
  }
  return ok({
    address: { kind: 'tcp', host: split.value.host, port: port.value },
    addressText: rest === null ? hostPortWeight : hostPortWeight.slice(0, -(rest.length + 1)),
    weight: rest === null ? null : Number(rest),
    name,
  });
}

/** Wildcard hosts bind every interface, so they clash with any host on the same port. */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::']);

/** Whether two listeners would fight over one socket. Port 0 never clashes: each gets its own. */
export function listenersClash(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  if (a.port === 0 || a.port !== b.port) return false;
  const hostA = a.host.toLowerCase();
  const hostB = b.host.toLowerCase();
  return hostA === hostB || WILDCARD_HOSTS.has(hostA) || WILDCARD_HOSTS.has(hostB);
}

export function formatAddress(address: ListenAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length];
}

/** The known word closest to `word` within edit distance 2, if any; camelCase is matched to snake_case. */
export function suggest(word: string, known: readonly string[]): string | null {
  const snake = word.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
  if (known.includes(snake)) return snake;
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(snake, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

export function parseBoolean(value: unknown): Parsed<boolean> {
  return typeof value === 'boolean' ? ok(value) : fail(`expected true or false, got ${describe(value)}`);
}
