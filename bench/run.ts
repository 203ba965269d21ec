/**
 * Benchmarks: `npm run bench -- <engine|e2e|memory|recovery|store|api|all> [--json] [--seconds S]`.
 * Prints a readable table; with --json, one JSON object per scenario per line;
 * with --save FILE, the table and the JSON lines appended to FILE.
 * Each scenario measures its alternatives side by side in the same run.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { apiBench, apiTable } from './api.js';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { e2eBench, e2eTable, latencySvg } from './e2e.js';
import { engineBench, engineTable } from './engine.js';
import { memoryBench, memoryTable, recoveryBench, recoveryTable } from './memory.js';
import { storeBench, storeTable } from './store.js';

const SCENARIOS = {
  engine: async (seconds: number) => {
    const r = await engineBench(seconds);
    return { json: r, table: engineTable(r) };
  },
  e2e: async () => {
    const r = await e2eBench();
    // The plot docs/BENCHMARKS.md shows: written by every run, so it is always the last run's.
    const svg = path.join(packageRoot, 'docs', 'latency.svg');
    writeFileSync(svg, latencySvg(r));
    return { json: r, table: `${e2eTable(r)}\n\nplot: ${path.relative(process.cwd(), svg)}` };
  },
  memory: async () => {
    const r = await memoryBench();
    return { json: r, table: memoryTable(r) };
  },
  recovery: async () => {
    const r = await recoveryBench();
    return { json: r, table: recoveryTable(r) };
  },
  store: async () => {
    const r = storeBench();
    return { json: r, table: storeTable(r) };
  },
  api: async () => {
    const r = await apiBench();
    return { json: r, table: apiTable(r) };
  },
} as const;

type Scenario = keyof typeof SCENARIOS;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '2' }, save: { type: 'string' } },
});
const wanted = positionals.length === 0 || positionals.includes('all') ? (Object.keys(SCENARIOS) as Scenario[]) : (positionals as Scenario[]);
const unknown = wanted.filter((s) => !(s in SCENARIOS));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}; available: ${Object.keys(SCENARIOS).join(', ')}, all\n`);
  process.exit(64);
}
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.arch()}` };
if (!values.json) process.stdout.write(`machine: ${machine.cpus} x ${machine.cpu}, node ${machine.node}, ${machine.platform}\n\n`);
for (const s of wanted) {
  const { json, table } = await SCENARIOS[s](Number(values.seconds));
  process.stdout.write(values.json ? JSON.stringify({ ...json, machine }) + '\n' : table + '\n\n');
  // --save FILE: also append the JSON line there (a table run that keeps its figures).
  if (values.save) appendFileSync(values.save, JSON.stringify({ ...json, machine, at: new Date().toISOString() }) + '\n');
}
