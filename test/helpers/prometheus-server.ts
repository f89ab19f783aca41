/**
 * A real Prometheus server for tests: in a temp dir, scraping one target every second, answering
 * PromQL over what it scraped. Stopped and removed by the Cleanup it is started with.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { Cleanup } from './cleanup.js';
import { request } from './prometheus.js';
import { freePort, requireBinary, tempDir, waitFor } from './servers.js';

export interface QueryResult {
  status: string;
  error?: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

interface TargetsResult {
  data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] };
}

export class PrometheusServer {
  output = '';

  private constructor(
    readonly port: number,
    readonly child: ChildProcess,
  ) {}

  static async start(cleanup: Cleanup, target: string): Promise<PrometheusServer> {
    const bin = requireBinary('prometheus', 'prometheus');
    const dir = tempDir('poolside-prometheus-');
    cleanup.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    const configFile = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(
      configFile,
      YAML.stringify({
        global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
        scrape_configs: [{ job_name: 'poolside', static_configs: [{ targets: [target] }] }],
      }),
    );
    const port = await freePort();
    const child = spawn(
      bin,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new PrometheusServer(port, child);
    child.stdout?.on('data', (chunk: Buffer) => (server.output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (server.output += chunk.toString()));
    cleanup.add(server, (s) => s.stop());
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${server.output.slice(-2000)}`);
        try {
          return (await request(port, '/-/ready')).status === 200;
        } catch {
          return false;
        }
      },
      `prometheus ready on port ${port}`,
      20_000,
      50,
    );
    return server;
  }

  /** Evaluates `promql` now; throws when Prometheus refuses it. */
  async query(promql: string): Promise<QueryResult['data']['result']> {
    const body = await this.tryQuery(promql);
    if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
    return body.data.result;
  }

  /** Evaluates `promql` now; resolves with Prometheus's answer, an error (bad expression, many-to-many match…) included. */
  async tryQuery(promql: string): Promise<QueryResult> {
    const reply = await request(this.port, `/api/v1/query?query=${encodeURIComponent(promql)}`);
    return JSON.parse(reply.body) as QueryResult;
  }

  async targets(): Promise<TargetsResult['data']['activeTargets']> {
    const reply = await request(this.port, '/api/v1/targets');
    return (JSON.parse(reply.body) as TargetsResult).data.activeTargets;
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
