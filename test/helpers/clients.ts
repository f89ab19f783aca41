/** ioredis clients for integration tests: no reconnects, no retries, no ready check, closed by Cleanup. */
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import type { Cleanup } from './cleanup.js';

export type Endpoint = number | { path: string };

/**
 * A connected ioredis client. It never reconnects or re-sends on its own, so what a test sees is
 * what poolside answered. The ready check (INFO) is off: INFO has no key to route by in ketama.
 */
export async function connectRedis(cleanup: Cleanup, endpoint: Endpoint, options: RedisOptions = {}): Promise<Redis> {
  const where: RedisOptions = typeof endpoint === 'number' ? { host: '127.0.0.1', port: endpoint } : { path: endpoint.path };
  const client = new Redis({
    ...where,
    lazyConnect: true,
    enableReadyCheck: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    autoResubscribe: false,
    ...options,
  });
  client.on('error', () => {});
  cleanup.add(client, (c) => c.disconnect());
  await client.connect();
  return client;
}
