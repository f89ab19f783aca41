/**
 * The golden ketama placements recorded from a real nutcracker: ketama-golden.json (Redis pools) by
 * test/fixtures/make-ketama-golden.ts, memcached-ketama-golden.json by make-memcached-golden.ts.
 */
import { readFileSync } from 'node:fs';
import type { KetamaHash } from '../../src/config/schema.js';

export interface GoldenPool {
  name: string;
  hash: KetamaHash;
  hashTag: string | null;
  autoEject: boolean;
  /** `line` is the server entry exactly as nutcracker was given it. */
  servers: { line: string; host: string; port: number; weight: number; name: string | null; live: boolean }[];
  keys: [string, number][];
  binaryKeys: [string, number][];
}

export interface GoldenFile {
  pools: GoldenPool[];
}

export function loadGolden(file: 'ketama-golden.json' | 'memcached-ketama-golden.json' = 'ketama-golden.json'): GoldenFile {
  return JSON.parse(readFileSync(new URL(`../fixtures/${file}`, import.meta.url), 'utf8')) as GoldenFile;
}
