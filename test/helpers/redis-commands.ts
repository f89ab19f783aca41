/**
 * For the tests of the Redis command tables: one command framed the way a session frames it, and
 * what a real redis-server says it knows (COMMAND INFO).
 */
import type { ArgView } from '../../src/codec/codec.js';
import { encodeCommand, RespRequestDecoder } from '../../src/codec/redis/resp.js';
import type { Cleanup } from './cleanup.js';
import { RawClient } from './resp-client.js';
import type { RespValue } from './resp-client.js';
import { RedisServer } from './servers.js';

/** Frames one command the way a session does and hands its bytes and args to `use`. */
export function framed<T>(args: string[], use: (bytes: Buffer, view: ArgView) => T): T {
  let out: T | undefined;
  const decoder = new RespRequestDecoder({ onRequest: (bytes, view) => (out = use(bytes, view)) });
  decoder.push(encodeCommand(args));
  if (out === undefined) throw new Error('no request framed');
  return out;
}

/** `COMMAND INFO` of a real redis-server: every command and subcommand it knows, with its key positions. */
export interface ServerCommand {
  name: string;
  sub: string | undefined;
  flags: string[];
  firstKey: number;
  lastKey: number;
  step: number;
}

/** Starts a redis-server (closed by `cleanup`) and reads its COMMAND INFO, subcommands flattened. */
export async function serverCommands(cleanup: Cleanup): Promise<ServerCommand[]> {
  const redis = cleanup.add(await RedisServer.start(), (s) => s.stop());
  const client = cleanup.add(await RawClient.connect(redis.port), (c) => c.destroy());
  const info = await client.call('COMMAND', 'INFO');
  const out: ServerCommand[] = [];
  const visit = (entry: RespValue): void => {
    if (!Array.isArray(entry)) throw new Error(`unexpected COMMAND INFO entry ${String(entry)}`);
    const [fullName, , flags, firstKey, lastKey, step] = entry;
    const [name, sub] = String(fullName).toUpperCase().split('|');
    out.push({ name, sub, flags: (flags as RespValue[]).map(String), firstKey: Number(firstKey), lastKey: Number(lastKey), step: Number(step) });
    for (const child of (entry[9] ?? []) as RespValue[]) visit(child);
  };
  for (const entry of info as RespValue[]) visit(entry);
  return out;
}
