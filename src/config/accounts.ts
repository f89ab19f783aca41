/**
 * User and group names to ids, for the owner and group of a unix socket. No native addon: the
 * account databases are read as text. `getent` is asked first, so users from NSS (LDAP, sssd,
 * systemd's DynamicUser) resolve as they do for every other program; /etc/passwd and /etc/group
 * are the fallback where getent is missing (minimal containers).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** A user or group as configured and as resolved. */
export interface Account {
  /** As written: a name, or the id in decimal. */
  name: string;
  id: number;
}

export type AccountDatabase = 'passwd' | 'group';

/** Resolves a name or numeric id; null when no such name exists. Ids are taken as they are (chown accepts any). */
export function resolveAccount(database: AccountDatabase, value: string | number): Account | null {
  if (typeof value === 'number') return { name: String(value), id: value };
  if (/^\d+$/.test(value)) return { name: value, id: Number(value) };
  const id = lookup(database, value);
  return id === null ? null : { name: value, id };
}

function lookup(database: AccountDatabase, name: string): number | null {
  const getent = spawnSync('getent', [database, name], { encoding: 'utf8', timeout: 5000 });
  if (getent.error === undefined) {
    // Exit 2: not found. Anything else without output: fall through to the files.
    if (getent.status === 0) return idOf(getent.stdout.split('\n')[0] ?? '', name);
    if (getent.status === 2) return null;
  }
  let text: string;
  try {
    text = readFileSync(`/etc/${database}`, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const id = idOf(line, name);
    if (id !== null) return id;
  }
  return null;
}

/** `name:x:id:…` (passwd and group lines alike keep the id in the third field). */
function idOf(line: string, name: string): number | null {
  const fields = line.split(':');
  if (fields[0] !== name || fields.length < 3) return null;
  const id = Number(fields[2]);
  return Number.isSafeInteger(id) && id >= 0 ? id : null;
}
