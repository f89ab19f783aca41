/**
 * Accepts clients on one address: TCP (`host:port`) or a unix socket (`unix:/path`). A unix
 * socket file left behind by a crashed run is removed, but only after checking that nothing
 * answers on it: a live poolside's socket is never stolen, and a file that is not a socket is
 * never deleted.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { ListenAddress } from './config/schema.js';

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
  await bind(server, { path: address.path }, formatAddress(address));
  fs.chmodSync(address.path, address.mode);
  return server;
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
