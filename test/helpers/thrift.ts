/**
 * Apache Thrift, a framed RPC stack nobody here wrote: a tiny service (ping, echo) compiled with
 * the real thrift compiler at test time, served by Thrift's own Python TThreadedServer over the
 * framed transport, and called by Thrift's own Python client. Debian's python3-thrift installs
 * into /usr/lib/python3/dist-packages, so the interpreter is the system one (a pyenv python3 on
 * PATH does not see it).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, freezeProcess, requireBinary, tempDir, waitFor } from './servers.js';

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

const IDL = `
namespace py poolside_test
service Echo {
  void ping(),
  string echo(1: string s),
}
`;

const SERVER = `
import sys, time
sys.path.insert(0, sys.argv[1])
from poolside_test import Echo
from thrift.transport import TSocket, TTransport
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer

class Handler:
    def ping(self):
        pass
    def echo(self, s):
        if s.startswith('sleep:'):
            time.sleep(float(s.split(':')[1]))
        return s

server = TServer.TThreadedServer(
    Echo.Processor(Handler()),
    TSocket.TServerSocket(host='127.0.0.1', port=int(sys.argv[2])),
    TTransport.TFramedTransportFactory(),
    TBinaryProtocol.TBinaryProtocolFactory(),
    daemon=True)
print('serving', flush=True)
server.serve()
`;

/**
 * argv: gen-py dir, port, threads, calls per thread. Each thread opens its own framed connection
 * (through poolside) and checks every answer is its own; prints one JSON line.
 */
const CLIENT = `
import sys, json, threading
sys.path.insert(0, sys.argv[1])
from poolside_test import Echo
from thrift.transport import TSocket, TTransport
from thrift.protocol import TBinaryProtocol

port, threads, calls = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
results = {'ok': 0, 'wrong': [], 'errors': []}
lock = threading.Lock()

def run(t):
    try:
        sock = TSocket.TSocket('127.0.0.1', port)
        sock.setTimeout(5000)
        transport = TTransport.TFramedTransport(sock)
        client = Echo.Client(TBinaryProtocol.TBinaryProtocol(transport))
        transport.open()
        client.ping()
        for i in range(calls):
            want = 'thread %d call %d %s' % (t, i, 'x' * (i % 7) * 100)
            got = client.echo(want)
            with lock:
                if got == want: results['ok'] += 1
                else: results['wrong'].append([want[:40], got[:40]])
        transport.close()
    except Exception as e:
        with lock: results['errors'].append('%s: %s' % (type(e).__name__, e))

ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(results), flush=True)
`;

/** The system python3 with Thrift's library, or an error that says what to install. */
export function thriftPython(): string {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(candidate, ['-c', 'import thrift'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error("python3 with Apache Thrift's library is not installed: the framed tests need it. Install it with: apt-get install -y python3-thrift thrift-compiler");
}

/** The service compiled by the real thrift compiler, and the server and client scripts, in a temp dir. */
export class ThriftKit {
  readonly dir: string;
  readonly python: string;

  private constructor(dir: string, python: string) {
    this.dir = dir;
    this.python = python;
  }

  static build(): ThriftKit {
    const python = thriftPython();
    const thrift = requireBinary('thrift', 'thrift-compiler');
    const dir = tempDir('poolside-thrift-');
    fs.writeFileSync(path.join(dir, 'echo.thrift'), IDL);
    fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
    fs.writeFileSync(path.join(dir, 'client.py'), CLIENT);
    const gen = spawnSync(thrift, ['--gen', 'py', '-out', dir, path.join(dir, 'echo.thrift')], { encoding: 'utf8' });
    if (gen.status !== 0) throw new Error(`thrift --gen py failed: ${gen.stderr}`);
    return new ThriftKit(dir, python);
  }

  /** Runs the Python Thrift client: `threads` connections to `port`, `calls` echo() each. */
  client(port: number, threads: number, calls: number): Promise<{ ok: number; wrong: string[][]; errors: string[] }> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.python, [path.join(this.dir, 'client.py'), this.dir, String(port), String(threads), String(calls)], { stdio: ['ignore', 'pipe', 'pipe'] });
      running.add(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        running.delete(child);
        try {
          resolve(JSON.parse(out) as { ok: number; wrong: string[][]; errors: string[] });
        } catch {
          reject(new Error(`thrift client exited ${code}: ${out}${err}`));
        }
      });
    });
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Thrift's Python TThreadedServer with the framed transport, on a free loopback port. */
export class ThriftServer {
  readonly port: number;
  readonly #kit: ThriftKit;
  #child: ChildProcess | null = null;

  private constructor(kit: ThriftKit, port: number) {
    this.#kit = kit;
    this.port = port;
  }

  static async start(kit: ThriftKit): Promise<ThriftServer> {
    const server = new ThriftServer(kit, await freePort());
    await server.#spawn();
    return server;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const child = spawn(this.#kit.python, [path.join(this.#kit.dir, 'server.py'), this.#kit.dir, String(this.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    this.#child = child;
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const accepts = (): Promise<boolean> =>
      new Promise((resolve) => {
        const socket = net.connect(this.port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`thrift server exited ${child.exitCode}: ${err}`);
      return accepts();
    }, 'the thrift server to listen', 10_000, 25);
  }

  signal(sig: NodeJS.Signals): void {
    this.#child?.kill(sig);
  }

  /** SIGSTOP, and wait until the server's every thread is stopped: see freezeProcess. */
  async freeze(): Promise<void> {
    await freezeProcess(this.#child);
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
    running.delete(child);
    this.#child = null;
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }
}
