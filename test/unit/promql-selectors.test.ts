import { describe, expect, it } from 'vitest';
import { selectors, substituteGrafanaVariables } from '../helpers/promql.js';

describe('selectors (the metric names a PromQL expression reads)', () => {
  it('skips functions, aggregations, label lists, ranges, strings and keywords', () => {
    const expr = `histogram_quantile(0.99, sum by (pool, le) (rate(poolside_request_duration_seconds_bucket{pool=~"a|b"}[5m])))
      / on (pool) group_left sum without (reason) (poolside_request_failures_total{reason!="X", pool='c'} offset 1m) > bool 0
      and count(max_over_time(poolside_pool_waiting_requests[10m:1m])) unless time() - up`;
    expect(selectors(expr)).toEqual([
      { metric: 'poolside_request_duration_seconds_bucket', matchers: [{ label: 'pool', op: '=~', value: 'a|b' }] },
      { metric: 'poolside_request_failures_total', matchers: [{ label: 'reason', op: '!=', value: 'X' }, { label: 'pool', op: '=', value: 'c' }] },
      { metric: 'poolside_pool_waiting_requests', matchers: [] },
      { metric: 'up', matchers: [] },
    ]);
  });

  it('reads recording-rule names with colons as metrics', () => {
    expect(selectors('poolside_pool:requests:rate5m > 0').map((s) => s.metric)).toEqual(['poolside_pool:requests:rate5m']);
  });

  it('throws on a selector it cannot read rather than miss a metric', () => {
    expect(() => selectors('{__name__="x"}')).toThrow(/without a metric name/);
    expect(() => selectors('x{pool="a}')).toThrow(/unterminated/);
  });
});

describe('substituteGrafanaVariables', () => {
  it('turns variables into what PromQL accepts', () => {
    expect(substituteGrafanaVariables('rate(x{job=~"$job",pool=~"${pool}"}[$__rate_interval])')).toBe('rate(x{job=~".+",pool=~".+"}[5m])');
  });
});
