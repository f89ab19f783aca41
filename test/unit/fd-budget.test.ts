import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ADMIN_MAX_CONNECTIONS, FD_SLACK, fdBudget, parseOpenFilesLimit } from '../../src/fd-budget.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('file descriptor budget', () => {
  it('reads the soft open-files limit from /proc/self/limits', () => {
    expect(parseOpenFilesLimit(LIMITS)).toBe(1024);
    expect(parseOpenFilesLimit(LIMITS.replace('1024     ', 'unlimited'))).toBeNull();
    expect(parseOpenFilesLimit('')).toBeNull();
  });

  it('keeps descriptors for what is open, listeners, admin, every pooled and exclusive connection, and slack', () => {
    const config = parseConfig(
      YAML.stringify({
        admin: { listen: '127.0.0.1:0' },
        pools: {
          a: { protocol: 'redis', listen: ['127.0.0.1:0', '127.0.0.1:0'], servers: ['127.0.0.1:1', '127.0.0.1:2'], connections: { min: 1, max: 4 }, exclusive: { max: 8 } },
          b: { protocol: 'redis', listen: ['127.0.0.1:0'], servers: ['127.0.0.1:3'], connections: { min: 1, max: 2 }, exclusive: { max: 1 } },
        },
      }),
      'test.yaml',
    );
    const reserve = 20 + FD_SLACK + 1 + ADMIN_MAX_CONNECTIONS + 2 + 2 * (4 + 8) + 1 + (2 + 1);
    expect(fdBudget(config, 1024, 20)).toEqual({ limit: 1024, reserve, capacity: 1024 - reserve });
    expect(fdBudget(config, 64, 20).capacity).toBe(0);
  });

  it('counts a cluster pool as at least three nodes: its nodes are discovered, not configured', () => {
    const cluster = (seeds: string[]) =>
      parseConfig(
        YAML.stringify({ admin: false, pools: { c: { protocol: 'redis', listen: ['127.0.0.1:0'], routing: 'cluster', servers: seeds, connections: { max: 4 }, exclusive: { max: 8 } } } }),
        'test.yaml',
      );
    expect(fdBudget(cluster(['127.0.0.1:1']), 1024, 20).reserve).toBe(20 + FD_SLACK + 1 + 3 * (4 + 8));
    const seeds = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3', '127.0.0.1:4'];
    expect(fdBudget(cluster(seeds), 1024, 20).reserve).toBe(20 + FD_SLACK + 1 + 4 * (4 + 8));
  });
});
