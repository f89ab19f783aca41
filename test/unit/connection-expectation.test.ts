/**
 * The response side can know what the request at the head of a connection's in-flight queue
 * expects: a codec whose reply framing depends on the request (memcached's `VALUE … END` after a
 * retrieval only) reads it through `headExpectation()`. Shown with a small line protocol of this
 * test's own against a scripted server: `GETn` is answered with n lines.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { ResponseDecoder, ResponseSink } from '../../src/codec/codec.js';
import { redisCodec } from '../../src/codec/redis/codec.js';
import type { Codec } from '../../src/codec/registry.js';
import { Connection } from '../../src/pool/connection.js';
import type { ConnectionOwner, ResponseTarget } from '../../src/pool/connection.js';
import { systemClock } from '../../src/util/clock.js';
import { Cleanup } from '../helpers/cleanup.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** Frames a response as the number of lines the head request expects. */
class LinesDecoder implements ResponseDecoder {
  readonly #sink: ResponseSink;
  #held = '';
  constructor(sink: ResponseSink) {
    this.#sink = sink;
  }
  get midFrame(): boolean {
    return this.#held.length > 0;
  }
  push(chunk: Buffer): void {
    this.#held += chunk.toString('latin1');
    for (;;) {
      const lines = Number(this.#sink.headExpectation?.() ?? 1);
      let end = 0;
      for (let i = 0; i < lines; i++) {
        const lf = this.#held.indexOf('\n', end);
        if (lf < 0) return;
        end = lf + 1;
      }
      const frame = this.#held.slice(0, end);
      this.#held = this.#held.slice(end);
      this.#sink.onResponse(Buffer.from(frame, 'latin1'));
    }
  }
}

const linesCodec: Codec = {
  ...redisCodec,
  responseDecoder: (sink) => new LinesDecoder(sink),
  initRequests: () => [],
  heartbeatRequest: Buffer.from('GET1\n'),
  identifyRequest: null,
  isErrorResponse: () => false,
  isBusyResponse: () => false,
  isPush: () => false,
};

it('frames each response by what its own request expects, read from the head of the in-flight queue', async () => {
  const server = net.createServer((socket) => {
    let pending = '';
    socket.on('data', (chunk) => {
      pending += chunk.toString('latin1');
      for (let lf = pending.indexOf('\n'); lf >= 0; lf = pending.indexOf('\n')) {
        const n = Number(pending.slice(3, lf));
        pending = pending.slice(lf + 1);
        socket.write(Array.from({ length: n }, (_, i) => `line${i}\n`).join(''));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.defer(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as net.AddressInfo;
  let ready = false;
  const owner: ConnectionOwner = { onReady: () => void (ready = true), onHeartbeat: () => {}, onClose: () => {}, onInternalError: (_c, err) => { throw err; } };
  const conn = new Connection(linesCodec, { host: '127.0.0.1', port, tls: null, connectTimeoutMs: 2000, clock: systemClock, username: null, password: null, db: 0, identify: false, raw: false }, owner, systemClock.now());
  conn.start();
  cleanup.defer(() => conn.destroy('shutdown', 'test'));
  await waitFor(() => ready, 'the connection ready');
  const got: string[] = [];
  const target = (expects: number): ResponseTarget => ({ expects, onResponse: (bytes) => void got.push(bytes.toString('latin1')), onFailure: () => {} });
  // Pipelined in one write: the responses arrive together and only the expectations delimit them.
  for (const n of [3, 1, 2]) conn.send(Buffer.from(`GET${n}\n`), target(n));
  await waitFor(() => got.length === 3, 'three responses');
  expect(got).toEqual(['line0\nline1\nline2\n', 'line0\n', 'line0\nline1\n']);
});
