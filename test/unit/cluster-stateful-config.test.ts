/**
 * What a cluster pool refuses in its config for stateful work: session mode (`lease: exclusive`)
 * would give each client one connection to one node, while its keys live on every node.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`;
const pool = (...lines: string[]): string =>
  yaml('pools:', '  cache:', '    protocol: redis', '    listen: 127.0.0.1:6380', '    servers: [127.0.0.1:7000]', ...lines);

function messages(text: string): string[] {
  try {
    parseConfig(text, 'config.yaml', {}, () => {
      throw new Error('no files');
    });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((p) => `${p.path}: ${p.message}`);
    throw error;
  }
  return [];
}

describe('routing: cluster and lease', () => {
  it('refuses lease: exclusive, pointing at it', () => {
    expect(messages(pool('    routing: cluster', '    lease: exclusive'))).toEqual([
      "pools.cache.lease: lease: exclusive does not apply to routing: cluster (a connection of its own would be to one node; transactions, WATCH, blocking commands and subscriptions pin to their key's node by themselves)",
    ]);
  });

  it('accepts lease: shared, and lease: exclusive on other routings', () => {
    expect(messages(pool('    routing: cluster', '    lease: shared'))).toEqual([]);
    expect(messages(pool('    lease: exclusive'))).toEqual([]);
  });
});
