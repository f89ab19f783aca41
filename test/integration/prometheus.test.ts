/**
 * A real Prometheus server scraping the real proxy's admin endpoint: it accepts the exposition
 * (its scrape parser is stricter about some things than promtool's lint), stores the series, and
 * answers PromQL over them, the histogram quantiles docs/metrics.md suggests included.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { PrometheusServer } from '../helpers/prometheus-server.js';
import type { QueryResult } from '../helpers/prometheus-server.js';
import { portOf, startScrapedProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/servers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('a real Prometheus server scraping poolside', () => {
  it('scrapes the admin endpoint without errors and answers PromQL over poolside’s series', async () => {
    const { proxy } = await startScrapedProxy(cleanup);
    const client = await connectRedis(cleanup, portOf(proxy, 'cache'), { disableClientInfo: true });
    for (let i = 0; i < 20; i++) await client.set(`prom:${i}`, String(i));

    const prometheus = await PrometheusServer.start(cleanup, `127.0.0.1:${proxy.adminAddress().port}`);
    let requests: QueryResult['data']['result'] = [];
    await waitFor(
      async () => {
        requests = await prometheus.query('poolside_requests_total');
        return requests.length > 0;
      },
      'poolside_requests_total in Prometheus',
      20_000,
      200,
    );
    expect(requests).toHaveLength(1);
    expect(requests[0].metric).toMatchObject({ __name__: 'poolside_requests_total', pool: 'cache', job: 'poolside' });
    expect(Number(requests[0].value[1])).toBe(20);

    const [target] = await prometheus.targets();
    expect(target.health).toBe('up');
    expect(target.lastError).toBe('');

    // The queries docs/metrics.md suggests evaluate over real series.
    const p99 = await prometheus.query('histogram_quantile(0.99, sum by (pool, le) (poolside_request_duration_seconds_bucket))');
    expect(p99).toHaveLength(1);
    expect(Number(p99[0].value[1])).toBeGreaterThan(0);
    expect(Number(p99[0].value[1])).toBeLessThanOrEqual(2.5);
    const failures = await prometheus.query('sum by (pool, reason) (poolside_request_failures_total)');
    expect(failures.length).toBeGreaterThanOrEqual(9);
    expect((await prometheus.query('poolside_server_up{pool="cache"}')).map((r) => r.value[1])).toEqual(['1']);
    expect((await prometheus.query('poolside_build_info')).map((r) => r.metric.version)).toEqual([proxyVersion()]);

    await prometheus.stop();
    expect(prometheus.output).not.toMatch(/level=error/);
  });
});

function proxyVersion(): string {
  return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
