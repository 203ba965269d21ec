/**
 * Benchmarks: `npm run bench -- <scenario|all> [--json] [--seconds S]`.
 * Prints a readable table; with --json, one JSON object per scenario per line.
 * Each scenario measures its alternatives side by side in the same run.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { apiBench, apiTable } from './api.js';
import { engineBench, engineTable } from './engine.js';

const SCENARIOS = {
  engine: async (seconds: number) => {
    const r = await engineBench(seconds);
    return { json: r, table: engineTable(r) };
  },
  api: async () => {
    const r = await apiBench();
    return { json: r, table: apiTable(r) };
  },
} as const;

type Scenario = keyof typeof SCENARIOS;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '2' } },
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
}
