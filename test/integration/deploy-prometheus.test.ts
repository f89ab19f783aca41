/**
 * deploy/prometheus and deploy/grafana, checked offline: promtool accepts the rules and their unit
 * tests (one case for every alert), every dashboard expression parses, and every metric, label and
 * label value the rules and the dashboard read is one a real poolside exports (cross-checked
 * against a scrape of a running proxy); docs/operations.md explains every reason label scraped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup } from '../helpers/cleanup.js';
import { connectRedis } from '../helpers/clients.js';
import { scrape } from '../helpers/prometheus.js';
import { selectors, substituteGrafanaVariables } from '../helpers/promql.js';
import type { Selector } from '../helpers/promql.js';
import { portOf, startScrapedProxy } from '../helpers/proxy.js';
import { tempDir, waitFor } from '../helpers/servers.js';
import { PrometheusServer } from '../helpers/prometheus-server.js';
import { runTool } from '../helpers/tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES_DIR = path.join(ROOT, 'deploy/prometheus');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/poolside.json');

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTests {
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}
interface Dashboard {
  panels: { title: string; type: string; targets?: { refId: string; expr: string }[] }[];
  templating: { list: { name: string; type: string; query?: { query: string } | string }[] };
}

function rules(): Rule[] {
  const file = YAML.parse(fs.readFileSync(path.join(RULES_DIR, 'rules.yml'), 'utf8')) as RuleFile;
  return file.groups.flatMap((g) => g.rules);
}

function dashboard(): Dashboard {
  return JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

/** Every PromQL expression of the dashboard, variables substituted, with where it comes from. */
function dashboardExpressions(): { where: string; expr: string }[] {
  const d = dashboard();
  const out: { where: string; expr: string }[] = [];
  for (const panel of d.panels) {
    for (const target of panel.targets ?? []) out.push({ where: `panel "${panel.title}" ${target.refId}`, expr: substituteGrafanaVariables(target.expr) });
  }
  for (const variable of d.templating.list) {
    if (variable.type !== 'query' || variable.query === undefined) continue;
    const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
    const match = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query);
    if (match === null) throw new Error(`variable ${variable.name}: not label_values(selector, label): ${query}`);
    out.push({ where: `variable $${variable.name}`, expr: substituteGrafanaVariables(match[1]) });
  }
  return out;
}


/** Labels Prometheus adds to every series of a target; poolside never exports them. */
const TARGET_LABELS = new Set(['job', 'instance']);

describe('deploy/prometheus/rules.yml', () => {
  it('passes promtool check rules', async () => {
    const result = await runTool('promtool', 'prometheus', ['check', 'rules', 'rules.yml'], { cwd: RULES_DIR });
    expect(result.output).toContain('SUCCESS');
    expect(result.code, result.output).toBe(0);
  });

  it('is loaded by the example Prometheus configuration, which passes promtool check config', async () => {
    const result = await runTool('promtool', 'prometheus', ['check', 'config', 'prometheus.example.yml'], { cwd: RULES_DIR });
    expect(result.output).toContain('SUCCESS: 1 rule files found');
    expect(result.code, result.output).toBe(0);
  });

  it('passes promtool test rules, with a firing case for every alert', async () => {
    const result = await runTool('promtool', 'prometheus', ['test', 'rules', 'rules.test.yml'], { cwd: RULES_DIR });
    expect(result.code, result.output).toBe(0);

    const tests = YAML.parse(fs.readFileSync(path.join(RULES_DIR, 'rules.test.yml'), 'utf8')) as RuleTests;
    const firing = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    const alerts = rules().flatMap((r) => (r.alert === undefined ? [] : [r.alert]));
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    expect(alerts.filter((a) => !firing.has(a))).toEqual([]);
  });
});

describe('deploy/grafana/poolside.json', () => {
  it('is a dashboard whose every expression parses (promtool check rules on them as recording rules)', async () => {
    const expressions = dashboardExpressions();
    expect(expressions.length).toBeGreaterThanOrEqual(30);
    const dir = tempDir('poolside-dashboard-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'dashboard-expressions.yml');
    fs.writeFileSync(
      file,
      YAML.stringify({ groups: [{ name: 'dashboard', rules: expressions.map((e, i) => ({ record: `dashboard:expression_${i}`, expr: e.expr })) }] }),
    );
    const result = await runTool('promtool', 'prometheus', ['check', 'rules', file]);
    expect(result.code, `${result.output}\n${expressions.map((e, i) => `${i}: ${e.where}: ${e.expr}`).join('\n')}`).toBe(0);
  });
});

describe('the rules and the dashboard against a real scrape', () => {
  it('read only metrics, labels and label values that a running poolside exports, and evaluate in a real Prometheus', async () => {
    const { proxy } = await startScrapedProxy(cleanup);
    const client = await connectRedis(cleanup, portOf(proxy, 'cache'), { disableClientInfo: true });
    await client.set('deploy:check', '1');
    const exposition = await scrape(proxy.adminAddress());

    const labelsOf = new Map<string, Map<string, Set<string>>>();
    for (const sample of exposition.samples) {
      const labels = labelsOf.get(sample.name) ?? new Map<string, Set<string>>();
      for (const [k, v] of Object.entries(sample.labels)) labels.set(k, (labels.get(k) ?? new Set()).add(v));
      labelsOf.set(sample.name, labels);
    }

    const recorded = new Set(rules().flatMap((r) => (r.record === undefined ? [] : [r.record])));
    const uses: { where: string; selector: Selector }[] = [];
    for (const rule of rules()) {
      for (const selector of selectors(rule.expr)) uses.push({ where: `rule ${rule.record ?? rule.alert}`, selector });
    }
    for (const { where, expr } of dashboardExpressions()) {
      for (const selector of selectors(expr)) uses.push({ where, selector });
    }
    expect(uses.length).toBeGreaterThanOrEqual(50);

    const problems: string[] = [];
    for (const { where, selector } of uses) {
      if (recorded.has(selector.metric)) continue;
      const labels = labelsOf.get(selector.metric);
      if (labels === undefined) {
        problems.push(`${where}: ${selector.metric} is not exported`);
        continue;
      }
      for (const m of selector.matchers) {
        if (TARGET_LABELS.has(m.label)) continue;
        const values = labels.get(m.label);
        if (values === undefined) {
          problems.push(`${where}: ${selector.metric} has no label ${m.label}`);
          continue;
        }
        // Literal values and alternations of literals (reason=~"POOL_TIMEOUT|QUEUE_FULL") must exist.
        const literals = m.op === '=' || m.op === '!=' ? [m.value] : /^[A-Za-z0-9_|]+$/.test(m.value) ? m.value.split('|') : [];
        for (const value of literals) if (!values.has(value)) problems.push(`${where}: ${selector.metric}{${m.label}} has no value ${value}`);
      }
    }
    expect(problems).toEqual([]);

    // docs/operations.md explains every reason a metric can carry (lease pins are not errors).
    const guide = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    const reasons = new Set(exposition.samples.filter((s) => s.name !== 'poolside_lease_pins_total' && s.labels.reason !== undefined).map((s) => s.labels.reason));
    expect(reasons.size).toBeGreaterThan(20);
    // A real Prometheus evaluates every expression over the real series: what promtool's parse
    // cannot see (a many-to-many match, a vector where a scalar must be) fails here.
    const prometheus = await PrometheusServer.start(cleanup, `127.0.0.1:${proxy.adminAddress().port}`);
    await waitFor(
      async () => (await prometheus.query('count_over_time(poolside_build_info[1m]) >= 3')).length > 0,
      'three scrapes of poolside in Prometheus',
      30_000,
      200,
    );
    const expressions = [...rules().map((r) => ({ where: `rule ${r.record ?? r.alert}`, expr: r.expr })), ...dashboardExpressions()];
    const refused: string[] = [];
    for (const { where, expr } of expressions) {
      const answer = await prometheus.tryQuery(expr);
      if (answer.status !== 'success') refused.push(`${where}: ${answer.error}`);
    }
    expect(refused).toEqual([]);
    // What this catches and a parse does not: three states per server matched to one max.
    expect((await prometheus.tryQuery('poolside_pool_connections / on (pool, server) poolside_pool_max_connections')).error).toMatch(/many-to-one matching must be explicit/);
    expect(await prometheus.query(substituteGrafanaVariables('sum by (pool) (rate(poolside_requests_total{job=~"$job"}[$__rate_interval]))'))).toHaveLength(1);

    const explained = (r: string): boolean => guide.includes(`\`${r}\``) || new RegExp(`^#+ ${r}$`, 'm').test(guide);
    expect([...reasons].filter((r) => !explained(r))).toEqual([]);
  });
});

describe('the cluster alerts docs/operations.md suggests', () => {
  it('pass promtool check rules and read only metrics docs/metrics.md documents', async () => {
    const guide = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    const section = guide.slice(guide.indexOf('## In front of a Redis Cluster'));
    const block = /```yaml\n([\s\S]*?)```/.exec(section);
    if (block === null) throw new Error('no yaml block in the cluster section of docs/operations.md');
    const alerts = YAML.parse(block[1]) as Rule[];
    expect(alerts.length).toBeGreaterThanOrEqual(3);
    const dir = tempDir('poolside-cluster-alerts-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'cluster-alerts.yml');
    fs.writeFileSync(file, YAML.stringify({ groups: [{ name: 'poolside-cluster', rules: alerts }] }));
    const result = await runTool('promtool', 'prometheus', ['check', 'rules', file]);
    expect(result.code, result.output).toBe(0);
    const documented = fs.readFileSync(path.join(ROOT, 'docs/metrics.md'), 'utf8');
    const metrics = alerts.flatMap((a) => selectors(a.expr).map((sel) => sel.metric));
    expect(metrics.filter((m) => !documented.includes(`\`${m}\``))).toEqual([]);
  });
});
