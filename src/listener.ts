/**
 * Accepts clients on one address: TCP (`host:port`) or a unix socket (`unix:/path`). A unix
 * socket file left behind by a crashed run is removed, but only after checking that nothing
 * answers on it: a live poolside's socket is never stolen, and a file that is not a socket is
 * never deleted. A unix socket gets its mode, owner and group before anyone can connect (bindUnix).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ListenAddress, UnixAddress } from './config/schema.js';

/** sun_path is 108 bytes on Linux, NUL included. */
export const UNIX_PATH_MAX = 107;

export class ListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

export function formatAddress(address: ListenAddress): string {
  return address.kind === 'unix' ? `unix:${address.path}` : `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

export async function listen(address: ListenAddress, onSocket: (socket: net.Socket) => void): Promise<net.Server> {
  // allowHalfOpen: a client that shuts down its write side after its last request (`nc -N`,
  // `printf … | redis-cli`) still gets its replies; the session ends the socket after the last one.
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, onSocket);
  if (address.kind === 'tcp') {
    await bind(server, { host: address.host, port: address.port }, formatAddress(address));
    return server;
  }
  const length = Buffer.byteLength(address.path);
  if (length > UNIX_PATH_MAX) {
    throw new ListenError(`unix socket path ${address.path} is ${length} bytes; the limit is ${UNIX_PATH_MAX}`);
  }
  await removeStaleSocket(address.path);
  await bindUnix(server, address);
  return server;
}

/**
 * Binds a unix socket with its mode, owner and group already in place when it appears at its
 * path: it is bound in a fresh directory of its own (mode 0700, next to the final path, so on the
 * same filesystem), given its mode and owner there, then renamed onto the final path. Nobody else
 * can reach it before rename(), and rename() is atomic, so there is no moment at which the socket
 * is reachable with the wrong permissions.
 */
async function bindUnix(server: net.Server, address: UnixAddress): Promise<void> {
  const label = formatAddress(address);
  const dir = path.dirname(address.path);
  let staging: string;
  try {
    staging = fs.mkdtempSync(path.join(dir, '.ps'));
  } catch (err) {
    throw new ListenError(`cannot listen on ${label}: cannot create a directory in ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const temp = path.join(staging, 's');
  try {
    if (Buffer.byteLength(temp) > UNIX_PATH_MAX) {
      throw new ListenError(`cannot listen on ${label}: the path is too close to the ${UNIX_PATH_MAX}-byte limit to be bound safely (poolside binds it as ${temp} first); shorten it`);
    }
    await bind(server, { path: temp }, label);
    try {
      fs.chmodSync(temp, address.mode);
      if (address.owner !== null || address.group !== null) fs.chownSync(temp, address.owner?.id ?? -1, address.group?.id ?? -1);
      fs.renameSync(temp, address.path);
    } catch (err) {
      server.close();
      const code = (err as NodeJS.ErrnoException).code;
      const who = [address.owner === null ? '' : `owner ${address.owner.name}`, address.group === null ? '' : `group ${address.group.name}`].filter((x) => x !== '').join(', ');
      const hint = code === 'EPERM' && who !== '' ? ` (setting ${who} needs root or CAP_CHOWN; a group poolside's user belongs to also works without it)` : '';
      throw new ListenError(`cannot listen on ${label}: ${code ?? (err as Error).message}${hint}`);
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** Gives an existing socket a new mode, owner and group in place (a reload that changed only those). */
export function applySocketPermissions(address: UnixAddress): void {
  fs.chmodSync(address.path, address.mode);
  // An owner or group the config no longer names goes back to what a fresh bind would give it: a
  // reload that drops `group: www-data` takes the grant back, as a restart would.
  const fresh = address.owner === null || address.group === null ? freshOwnership(path.dirname(address.path)) : null;
  fs.chownSync(address.path, address.owner?.id ?? fresh?.uid ?? -1, address.group?.id ?? fresh?.gid ?? -1);
}

/** The owner and group a new file in `dir` gets (this process's, or the directory's group where it is setgid). */
function freshOwnership(dir: string): { uid: number; gid: number } {
  const probe = fs.mkdtempSync(path.join(dir, '.ps'));
  try {
    const stat = fs.statSync(probe);
    return { uid: stat.uid, gid: stat.gid };
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

function bind(server: net.Server, options: net.ListenOptions, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ListenError(`cannot listen on ${label}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`));
    };
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function removeStaleSocket(path: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) throw new ListenError(`cannot listen on unix:${path}: the path exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new ListenError(`cannot listen on unix:${path}: another process is listening on it`);
  fs.unlinkSync(path);
}
