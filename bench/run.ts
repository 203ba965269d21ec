/**
 * Benchmarks: `npm run bench -- <engine|e2e|memory|recovery|store|api|api-load|all> [--json] [--seconds S] [--save FILE] [--docs]`.
 * Prints a readable table; with --json, one JSON object per scenario per line;
 * with --save FILE, the JSON lines appended to FILE; with --docs, the results
 * recorded in docs/benchmarks.json and docs/BENCHMARKS.md regenerated (bench/docs.ts).
 * Without --docs a run writes nothing in the working tree.
 * Each scenario measures its alternatives side by side in the same run.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { apiBench, apiTable } from './api.js';
import { apiLoadBench, apiLoadTable } from './api-load.js';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { writeBenchDocs } from './docs.js';
import { e2eBench, e2eTable } from './e2e.js';
import { engineBench, engineTable } from './engine.js';
import { memoryBench, memoryTable, recoveryBench, recoveryTable } from './memory.js';
import { storeBench, storeTable } from './store.js';

const SCENARIOS = {
  engine: async (seconds: number) => {
    const r = await engineBench(seconds);
    return { json: r, table: engineTable(r) };
  },
  e2e: async () => {
    // --quick: the throughput table only (no latency points, no further scenarios), for trying a change.
    const r = await e2eBench(values.quick ? { latency: false, scenarios: false } : {});
    return { json: r, table: e2eTable(r) };
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
    const r = await storeBench();
    return { json: r, table: storeTable(r) };
  },
  api: async () => {
    const r = await apiBench();
    return { json: r, table: apiTable(r) };
  },
  'api-load': async () => {
    const r = await apiLoadBench();
    return { json: r, table: apiLoadTable(r) };
  },
} as const;

type Scenario = keyof typeof SCENARIOS;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '2' }, save: { type: 'string' }, docs: { type: 'boolean' }, quick: { type: 'boolean' } },
});
const wanted = positionals.length === 0 || positionals.includes('all') ? (Object.keys(SCENARIOS) as Scenario[]) : (positionals as Scenario[]);
const unknown = wanted.filter((s) => !(s in SCENARIOS));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}; available: ${Object.keys(SCENARIOS).join(', ')}, all\n`);
  process.exit(64);
}
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.arch()}` };
if (!values.json) process.stdout.write(`machine: ${machine.cpus} x ${machine.cpu}, node ${machine.node}, ${machine.platform}\n\n`);
const results: Array<Record<string, unknown>> = [];
for (const s of wanted) {
  const { json, table } = await SCENARIOS[s](Number(values.seconds));
  const stamped = { ...json, machine, at: new Date().toISOString() };
  results.push(stamped);
  process.stdout.write(values.json ? JSON.stringify({ ...json, machine }) + '\n' : table + '\n\n');
  // --save FILE: also append the JSON line there (a table run that keeps its figures).
  if (values.save) appendFileSync(values.save, JSON.stringify(stamped) + '\n');
}
if (values.docs) for (const f of writeBenchDocs(results)) process.stdout.write(`wrote ${path.relative(process.cwd(), f)}\n`);
