/**
 * deploy/kubernetes, checked offline: yamllint (strict, .yamllint) on everything under deploy/,
 * every manifest valid against the Kubernetes API schemas kubernetes-models ships (and the
 * Prometheus Operator's for the ServiceMonitor), and the manifests consistent with each other and
 * with the poolside configuration they carry: probes on the admin port, the socket on the shared
 * emptyDir, timings that let the drain finish, the ServiceMonitor reaching the admin port.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IService } from 'kubernetes-models/v1/Service';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { runTool } from '../helpers/tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = path.join(ROOT, 'deploy/kubernetes');

interface Manifest {
  file: string;
  apiVersion: string;
  kind: string;
  doc: unknown;
}

function parseManifests(file: string, text: string): Manifest[] {
  return YAML.parseAllDocuments(text).map((d) => {
    const doc: unknown = d.toJS();
    const { apiVersion, kind } = doc as { apiVersion: string; kind: string };
    return { file, apiVersion, kind, doc };
  });
}

function manifests(): Manifest[] {
  return fs
    .readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((file) => parseManifests(file, fs.readFileSync(path.join(DIR, file), 'utf8')));
}

/** Validates one manifest with the model of its kind; throws with the schema's complaint. */
const VALIDATORS: Record<string, (doc: unknown) => void> = {
  'apps/v1 Deployment': (doc) => new Deployment(doc as IDeployment).validate(),
  'v1 ConfigMap': (doc) => new ConfigMap(doc as IConfigMap).validate(),
  'v1 Service': (doc) => new Service(doc as IService).validate(),
  'networking.k8s.io/v1 NetworkPolicy': (doc) => new NetworkPolicy(doc as INetworkPolicy).validate(),
  'monitoring.coreos.com/v1 ServiceMonitor': (doc) => new ServiceMonitor(doc as IServiceMonitor).validate(),
  'monitoring.coreos.com/v1 PrometheusRule': (doc) => new PrometheusRule(doc as IPrometheusRule).validate(),
};

/**
 * Every property name the API types declare (the models' .d.ts files). The schemas kubernetes-models
 * compiles accept unknown fields, as the API server's non-strict decoding does; this catches what
 * they let through: a misspelt key (`readinessprobe`, `restartPolicys`) that Kubernetes would
 * silently drop.
 */
function knownFieldNames(): Set<string> {
  const names = new Set<string>();
  const roots = ['kubernetes-models/v1', 'kubernetes-models/apps/v1', 'kubernetes-models/networking.k8s.io/v1', '@kubernetes-models/apimachinery', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.d.ts')) for (const m of fs.readFileSync(file, 'utf8').matchAll(/^\s+"?([\w$-]+)"?\??: /gm)) names.add(m[1]);
    }
  };
  for (const root of roots) walk(path.join(ROOT, 'node_modules', root));
  return names;
}

/** Keys whose values are maps of free names (labels, data, resource names), not API fields. */
const FREE_FORM = new Set(['labels', 'annotations', 'data', 'matchLabels', 'requests', 'limits', 'selector']);

function unknownFields(value: unknown, known: Set<string>, at = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownFields(v, known, `${at}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, v]) => {
    const here = at === '' ? key : `${at}.${key}`;
    if (!known.has(key)) return [here];
    return FREE_FORM.has(key) ? [] : unknownFields(v, known, here);
  });
}

function only<T>(kind: string): T {
  const found = manifests().filter((m) => m.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0].doc as T;
}

/** Seconds of a duration as poolside writes it (`10s`, `500ms`, `1m`). */
function seconds(duration: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(duration);
  if (m === null) throw new Error(`not a duration: ${duration}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2] as 'ms' | 's' | 'm'];
}

function loadEmbeddedConfig(text: string): Config {
  return parseConfig(text, 'configmap.yaml#poolside.yaml', { REDIS_PASSWORD: 'secret' });
}

describe('deploy/ YAML', () => {
  it('passes yamllint --strict with the project’s .yamllint', async () => {
    const result = await runTool('yamllint', 'yamllint', ['--strict', '--config-file', '.yamllint', 'deploy/', '.yamllint'], { cwd: ROOT });
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('deploy/kubernetes', () => {
  it('holds only manifests that are valid against the Kubernetes (and Prometheus Operator) schemas', () => {
    const all = manifests();
    expect(all.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PrometheusRule', 'Service', 'ServiceMonitor']);
    for (const { file, apiVersion, kind, doc } of all) {
      const validate = VALIDATORS[`${apiVersion} ${kind}`];
      expect(validate, `${file}: no schema for ${apiVersion} ${kind}`).toBeDefined();
      expect(() => validate(doc), file).not.toThrow();
    }
  });

  it('uses no field name that the API does not know', () => {
    const known = knownFieldNames();
    expect(known.size).toBeGreaterThan(500);
    expect(unknownFields({ spec: { template: { spec: { initContainers: [{ restartPolicys: 'Always' }] } } } }, known)).toEqual(['spec.template.spec.initContainers[0].restartPolicys']);
    expect(manifests().flatMap((m) => unknownFields(m.doc, known).map((f) => `${m.file}: ${f}`))).toEqual([]);
  });

  it('rejects what the schemas forbid (the check is not a no-op)', () => {
    const text = fs.readFileSync(path.join(DIR, 'deployment.yaml'), 'utf8');
    expect(text).toContain('containerPort: 9121');
    const [broken] = parseManifests('deployment.yaml', text.replace('containerPort: 9121', 'containerPort: "9121"'));
    expect(() => VALIDATORS['apps/v1 Deployment'](broken.doc)).toThrow(/containerPort must be integer/);
  });

  it('runs poolside as a native sidecar with probes on the admin port and the socket on a shared emptyDir', () => {
    const deployment = only<IDeployment>('Deployment');
    const pod = deployment.spec!.template.spec!;
    const sidecars = (pod.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
    expect(sidecars.map((c) => c.name)).toEqual(['poolside']);
    const poolside: IContainer = sidecars[0];
    const app = pod.containers[0];

    const configMap = only<IConfigMap>('ConfigMap');
    const configText = configMap.data!['poolside.yaml'];
    const config = loadEmbeddedConfig(configText);
    const raw = YAML.parse(configText) as { admin: { listen: string }; shutdown: { delay: string; timeout: string } };

    // Probes: on the named admin port, which is where the configuration listens, beyond loopback.
    const adminPort = poolside.ports!.find((p) => p.name === 'poolside-admin')!;
    expect(raw.admin.listen).toBe(`0.0.0.0:${adminPort.containerPort}`);
    expect(config.admin?.listen).toEqual({ kind: 'tcp', host: '0.0.0.0', port: adminPort.containerPort });
    const probe = (p: IProbe | undefined) => [p?.httpGet?.path, p?.httpGet?.port];
    expect(probe(poolside.startupProbe)).toEqual(['/healthz', 'poolside-admin']);
    expect(probe(poolside.readinessProbe)).toEqual(['/readyz', 'poolside-admin']);
    expect(probe(poolside.livenessProbe)).toEqual(['/healthz', 'poolside-admin']);
    expect(poolside.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(poolside.args).toEqual(['--config', '/etc/poolside/poolside.yaml']);

    // The unix socket: in a directory both containers mount from one emptyDir.
    const listen = (YAML.parse(configText) as { pools: Record<string, { listen: { address: string }[] }> }).pools.cache.listen;
    const socketDir = path.posix.dirname(listen[0].address.replace(/^unix:/, ''));
    const volume = pod.volumes!.find((v) => v.emptyDir !== undefined)!;
    for (const container of [poolside, app]) {
      expect(container.volumeMounts!.find((m) => m.name === volume.name)?.mountPath, container.name).toBe(socketDir);
    }
    const configVolume = pod.volumes!.find((v) => v.configMap?.name === configMap.metadata!.name)!;
    expect(poolside.volumeMounts!.find((m) => m.name === configVolume.name)?.mountPath).toBe('/etc/poolside');

    // Scrape annotations point at the admin port.
    expect(deployment.spec!.template.metadata!.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(adminPort.containerPort), 'prometheus.io/path': '/metrics' });
  });

  it('gives the drain time to finish: grace period ≥ app preStop + shutdown.delay + shutdown.timeout, delay ≥ preStop', () => {
    const pod = only<IDeployment>('Deployment').spec!.template.spec!;
    const raw = YAML.parse(only<IConfigMap>('ConfigMap').data!['poolside.yaml']) as { shutdown: { delay: string; timeout: string } };
    const preStop = pod.containers[0].lifecycle?.preStop?.sleep?.seconds ?? 0;
    expect(preStop).toBeGreaterThan(0);
    const delay = seconds(raw.shutdown.delay);
    const timeout = seconds(raw.shutdown.timeout);
    expect(delay).toBeGreaterThanOrEqual(preStop);
    expect(pod.terminationGracePeriodSeconds!).toBeGreaterThanOrEqual(preStop + delay + timeout);
  });

  it('has the PrometheusRule carry exactly the groups of deploy/prometheus/rules.yml', () => {
    const rules = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8')) as { groups: unknown };
    expect(only<IPrometheusRule>('PrometheusRule').spec.groups).toEqual(rules.groups);
  });

  it('lets the ServiceMonitor reach the admin port through the Service', () => {
    const deployment = only<IDeployment>('Deployment');
    const service = only<IService>('Service');
    const monitor = only<IServiceMonitor>('ServiceMonitor');
    const podLabels = deployment.spec!.template.metadata!.labels!;
    for (const [k, v] of Object.entries(service.spec!.selector!)) expect(podLabels[k], k).toBe(v);
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels!)) expect(service.metadata!.labels![k], k).toBe(v);
    const endpoint = monitor.spec.endpoints![0];
    const port = service.spec!.ports!.find((p) => p.name === endpoint.port)!;
    expect(port.targetPort).toBe('poolside-admin');
    expect(endpoint.path).toBe('/metrics');

    const policy = only<INetworkPolicy>('NetworkPolicy');
    expect(policy.spec?.podSelector?.matchLabels).toEqual(deployment.spec!.selector.matchLabels);
    const adminRules = policy.spec!.ingress!.filter((r) => r.ports?.some((p) => p.port === 9121));
    expect(adminRules).toHaveLength(1);
    expect(adminRules[0].from?.length).toBeGreaterThan(0);
  });
});
