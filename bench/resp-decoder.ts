/**
 * Micro-benchmark of the RESP decoders' hot paths: a pipeline of 16 `GET key:000123` requests in
 * one chunk, and a chunk of 16 `$10\r\n0123456789\r\n` responses. Prints ns per message.
 *
 *   npx tsx bench/resp-decoder.ts
 */
import { RespRequestDecoder, RespResponseDecoder, commandName, encodeCommand } from '../src/codec/redis/resp.js';

const PIPELINE = 16;
const WARMUP_ROUNDS = 200_000;
const ROUNDS = 1_000_000;

function measure(name: string, perRound: number, round: () => void): { name: string; nsPerMessage: number } {
  for (let r = 0; r < WARMUP_ROUNDS; r++) round();
  const started = process.hrtime.bigint();
  for (let r = 0; r < ROUNDS; r++) round();
  const elapsed = Number(process.hrtime.bigint() - started);
  return { name, nsPerMessage: elapsed / (ROUNDS * perRound) };
}

let seen = 0;
const requests = new RespRequestDecoder({ onRequest: () => seen++ });
const namedRequests = new RespRequestDecoder({
  onRequest: (bytes, args) => {
    if (commandName(bytes, args) === 'GET') seen++;
  },
});
const responses = new RespResponseDecoder({ onResponse: () => seen++ });

const requestChunk = Buffer.concat(Array.from({ length: PIPELINE }, () => encodeCommand(['GET', 'key:000123'])));
const responseChunk = Buffer.from('$10\r\n0123456789\r\n'.repeat(PIPELINE), 'latin1');

const results = [
  measure(`request: ${PIPELINE} x GET key:000123`, PIPELINE, () => requests.push(requestChunk)),
  measure(`request + commandName`, PIPELINE, () => namedRequests.push(requestChunk)),
  measure(`response: ${PIPELINE} x $10 bulk`, PIPELINE, () => responses.push(responseChunk)),
];

if (seen !== (WARMUP_ROUNDS + ROUNDS) * PIPELINE * results.length) throw new Error(`decoded ${seen} messages`);
console.log(`node ${process.version}, ${ROUNDS} rounds of ${PIPELINE} messages in one chunk`);
console.table(results.map((r) => ({ case: r.name, 'ns/message': r.nsPerMessage.toFixed(1) })));
