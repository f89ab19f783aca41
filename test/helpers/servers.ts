/**
 * Real servers for integration tests: redis-server and memcached processes on free loopback ports
 * in temp directories. A missing binary is a setup error that says how to install it; tests never skip.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Cleanup } from './cleanup.js';
import { parseMcResponse } from './mc-client.js';

/**
 * Every server process a test started and has not stopped yet. A test run that is interrupted
 * (Ctrl-C, a timeout) skips its afterEach; the exit hook still kills what is left, so no
 * redis-server outlives the run that started it.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export function requireBinary(name: string, debianPackage: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const bin = found.stdout.trim();
  if (found.status !== 0 || bin === '') {
    throw new Error(`${name} is not installed: the integration tests need it. Install it with: apt-get install -y ${debianPackage}`);
  }
  return bin;
}

/** A port that was free a moment ago (the OS picked it for a socket we closed at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

export function tempDir(prefix = 'poolside-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Polls `check` until it returns true or the deadline passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, everyMs = 10): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * SIGSTOPs a child and waits until every one of its threads is stopped. kill() returns once the
 * signal is queued: the kernel wakes one thread to start the group stop, and on a loaded machine
 * that thread can wait in the run queue while the others (memcached's workers) go on answering.
 * A test that freezes a server and at once sends it a request needs the freeze to have happened.
 */
export async function freezeProcess(child: ChildProcess | null): Promise<void> {
  const pid = child?.pid;
  if (child === null || pid === undefined || child.exitCode !== null || child.signalCode !== null) {
    throw new Error('cannot freeze a process that is not running');
  }
  child.kill('SIGSTOP');
  const taskDir = `/proc/${pid}/task`;
  const stopped = (tid: string): boolean => {
    let stat: string;
    try {
      stat = fs.readFileSync(path.join(taskDir, tid, 'stat'), 'utf8');
    } catch {
      return true; // the thread exited
    }
    // The state is the first field after the command name, which is in parentheses and may hold spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'T' || state === 't';
  };
  await waitFor(() => fs.readdirSync(taskDir).every(stopped), `pid ${pid}'s threads to stop (SIGSTOP)`, 5000, 1);
}

/**
 * A redis-server that speaks only TLS: `--tls-port` on the server's port, `--port 0`. PEM files
 * (test/helpers/tls.ts makes them); `authClients` is redis's `tls-auth-clients`.
 */
export interface RedisTlsOptions {
  certFile: string;
  keyFile: string;
  caFile: string;
  authClients: 'yes' | 'no' | 'optional';
}

export interface RedisServerOptions {
  /** Absent: plain TCP, as every server was before. With it, command() cannot reach the server (it speaks plain TCP). */
  tls?: RedisTlsOptions;
}

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | null = null;
  #extraArgs: string[];
  readonly #tls: RedisTlsOptions | null;

  private constructor(port: number, dir: string, extraArgs: string[], tls: RedisTlsOptions | null) {
    this.port = port;
    this.dir = dir;
    this.#extraArgs = extraArgs;
    this.#tls = tls;
  }

  static async start(extraArgs: string[] = [], options: RedisServerOptions = {}): Promise<RedisServer> {
    requireBinary('redis-server', 'redis-server');
    for (let attempt = 0; ; attempt++) {
      const server = new RedisServer(await freePort(), tempDir('poolside-redis-'), extraArgs, options.tls ?? null);
      try {
        await server.#spawn();
        return server;
      } catch (err) {
        await server.stop();
        if (attempt >= 3) throw err;
      }
    }
  }

  get pid(): number {
    if (this.#child?.pid === undefined) throw new Error('redis-server is not running');
    return this.#child.pid;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Sends one command on a new connection and returns the raw reply text. */
  async command(...args: string[]): Promise<string> {
    return rawCommand(this.port, args);
  }

  signal(sig: NodeJS.Signals): void {
    this.#child?.kill(sig);
  }

  /** SIGSTOP, and wait until the server's every thread is stopped: see freezeProcess. */
  async freeze(): Promise<void> {
    await freezeProcess(this.#child);
  }

  /** Kills the process (SIGKILL) and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
    this.#child = null;
  }

  /** Starts the server again on the same port and directory. */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async #spawn(): Promise<void> {
    const tls = this.#tls;
    const ports =
      tls === null
        ? ['--port', String(this.port)]
        : ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', tls.authClients];
    const child = spawn(
      'redis-server',
      [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', ...this.#extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited: ${output.slice(-500)}`);
        // A TLS-only server may want a client certificate and an ACL user: its log says when it listens.
        if (tls !== null) return output.includes('Ready to accept connections');
        try {
          return (await rawCommand(this.port, ['PING'])) === '+PONG\r\n';
        } catch {
          return false;
        }
      }, `redis-server on port ${this.port}`);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }
}

/** One command on a fresh TCP connection; resolves with the first complete-looking reply. */
export function rawCommand(port: number, args: string[], host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply to ${args[0]} from ${host}:${port}`));
    }, 2000);
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.endsWith('\r\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/**
 * A real memcached on a free loopback port (`-l 127.0.0.1 -U 0`: no UDP), in the foreground, killed
 * by stop(). `extraArgs` go on its command line (`-o idle_timeout=1`, `-I 2m`…).
 */
export class MemcachedServer {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | null = null;
  readonly #extraArgs: string[];

  private constructor(port: number, dir: string, extraArgs: string[]) {
    this.port = port;
    this.dir = dir;
    this.#extraArgs = extraArgs;
  }

  static async start(extraArgs: string[] = []): Promise<MemcachedServer> {
    requireBinary('memcached', 'memcached');
    for (let attempt = 0; ; attempt++) {
      const server = new MemcachedServer(await freePort(), tempDir('poolside-memcached-'), extraArgs);
      try {
        await server.#spawn();
        return server;
      } catch (err) {
        await server.stop();
        if (attempt >= 3) throw err;
      }
    }
  }

  get pid(): number {
    if (this.#child?.pid === undefined) throw new Error('memcached is not running');
    return this.#child.pid;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Sends raw text on a new connection and returns everything up to the first complete reply. */
  async command(text: string): Promise<string> {
    return rawMemcached(this.port, text);
  }

  signal(sig: NodeJS.Signals): void {
    this.#child?.kill(sig);
  }

  /** SIGSTOP, and wait until the server's every thread is stopped: see freezeProcess. */
  async freeze(): Promise<void> {
    await freezeProcess(this.#child);
  }

  /** Kills the process (SIGKILL) and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
    this.#child = null;
  }

  /** Starts the server again on the same port (empty: memcached keeps nothing). */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async #spawn(): Promise<void> {
    // memcached refuses to run as root unless told which user to be (CI runs as root).
    const user = process.getuid?.() === 0 ? ['-u', 'root'] : [];
    const child = spawn('memcached', ['-p', String(this.port), '-l', '127.0.0.1', '-U', '0', '-m', '64', '-t', '2', ...user, ...this.#extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
    });
    this.#child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`memcached exited: ${output.slice(-500)}`);
        try {
          return (await rawMemcached(this.port, 'version\r\n')).startsWith('VERSION ');
        } catch {
          return false;
        }
      }, `memcached on port ${this.port}`);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }
}

/** A memcached for one test, stopped by `cleanup`. */
export async function startMemcached(cleanup: Cleanup, extraArgs: string[] = []): Promise<MemcachedServer> {
  return cleanup.add(await MemcachedServer.start(extraArgs), (s) => s.stop());
}

/** Raw text to memcached on a fresh TCP connection; resolves with its first whole response (mc-client.ts framing). */
export function rawMemcached(port: number, text: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let reply = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply to ${JSON.stringify(text.slice(0, 40))} from ${host}:${port}`));
    }, 2000);
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk]);
      const parsed = parseMcResponse(reply, 0);
      if (parsed !== null) {
        clearTimeout(timer);
        socket.end();
        resolve(parsed.value);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(text, 'latin1');
  });
}
