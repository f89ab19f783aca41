/**
 * The operations guide and what points into it: every relative link of docs/operations.md reaches
 * a file (and a heading, for a #anchor into markdown), and every docs/operations.md#anchor that an
 * alert's annotation names exists, so an on-call person following an alert lands somewhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to -. */
function anchors(markdownFile: string): Set<string> {
  const text = fs.readFileSync(markdownFile, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set(
    [...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1]
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    ),
  );
}

describe('docs/operations.md', () => {
  it('links only to files and headings that exist', () => {
    const file = path.join(ROOT, 'docs/operations.md');
    const text = fs.readFileSync(file, 'utf8');
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(20);
    const broken: string[] = [];
    for (const link of links) {
      const [target, anchor] = link.split('#');
      const resolved = target === '' ? file : path.resolve(path.dirname(file), target);
      if (!fs.existsSync(resolved)) broken.push(`${link}: no such file`);
      else if (anchor !== undefined && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) broken.push(`${link}: no such heading`);
    }
    expect(broken).toEqual([]);
  });

  it('explains every reason poolside logs', () => {
    const reasons = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (file.endsWith('.ts')) for (const m of fs.readFileSync(file, 'utf8').matchAll(/reason: '([a-z_]+)'/g)) reasons.add(m[1]);
      }
    };
    walk(path.join(ROOT, 'src'));
    // The client limits log their cause (a union type) as the reason.
    const causes = /type OverflowCause = ([^;]+);/.exec(fs.readFileSync(path.join(ROOT, 'src/session/limits.ts'), 'utf8'));
    for (const m of (causes?.[1] ?? '').matchAll(/'([a-z_]+)'/g)) reasons.add(m[1]);
    expect(reasons.size).toBeGreaterThan(10);
    const guide = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    expect([...reasons].filter((r) => !guide.includes(`\`${r}\``))).toEqual([]);
  });

  it('has every section the alert annotations point to', () => {
    const rules = fs.readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8');
    const targets = [...rules.matchAll(/docs\/operations\.md#([\w-]+)/g)].map((m) => m[1]);
    expect(targets.length).toBeGreaterThan(3);
    const headings = anchors(path.join(ROOT, 'docs/operations.md'));
    expect(targets.filter((t) => !headings.has(t))).toEqual([]);
  });
});
