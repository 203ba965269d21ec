/**
 * docs/BENCHMARKS.md and docs/latency.svg, generated from the benches' JSON.
 *
 * `npm run bench -- <scenarios> --docs` runs the scenarios, stores their JSON
 * in docs/benchmarks.json (each scenario's latest run, with its machine and
 * date) and writes both files; `npm run bench:docs` writes them again from
 * docs/benchmarks.json without running anything. Nothing else writes them:
 * a plain bench run leaves the working tree as it was.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../src/paths.js';
import { apiTable, type ApiBenchResult } from './api.js';
import { apiLoadTable, type ApiLoadResult } from './api-load.js';
import { e2eTable, latencySvg, type E2eBenchResult } from './e2e.js';
import { engineTable, type EngineBenchResult } from './engine.js';
import { memoryTable, recoveryTable, type MemoryBenchResult, type RecoveryBenchResult } from './memory.js';
import { storeTable, type StoreBenchResult } from './store.js';

const docs = path.join(packageRoot, 'docs');
const jsonFile = path.join(docs, 'benchmarks.json');

interface Stamped { machine: { cpus: number; cpu: string; node: string; platform: string }; at: string }
type Saved = Partial<{
  e2e: E2eBenchResult & Stamped;
  memory: MemoryBenchResult & Stamped;
  recovery: RecoveryBenchResult & Stamped;
  engine: EngineBenchResult & Stamped;
  store: StoreBenchResult & Stamped;
  api: ApiBenchResult & Stamped;
  'api-load': ApiLoadResult & Stamped;
}>;

/** Each scenario: its heading, what it measures (fixed text), and its table from the JSON. */
const SECTIONS: Array<{ key: keyof Saved; title: string; about: string; table: (r: never) => string }> = [
  {
    key: 'e2e',
    title: 'End to end (`npm run bench -- e2e`)',
    about: `Each run starts its own Mosquitto on a free port (without persistence: its autosave pauses the broker) and runs every alternative against it, one after the other, with the same publisher process and the same messages: a bare mqtt.js subscriber that only counts (the ceiling), the naive per-message daemon of \`bench/naive-daemon.ts\` (mqtt.js, one onnxruntime call per message at batch 1, one insert per prediction, a commit every 500 messages) and tidecast as a child process with \`weather-lstm\`. "Fully processed" means the forecast is committed to SQLite. QoS 1 means durable before the PUBACK; QoS 0 inputs are logged in group commits (at most 5 ms or 1,000 messages). Latency: QoS 1 with every forecast published back, offered load as a fraction of tidecast's QoS 1 rate in that configuration (the lower of two runs); each point runs 3 s at its rate to warm up (every stream touched, JIT and onnxruntime warm), then 8 s measured. The scenarios below the latency table run at QoS 0 against the bare subscriber on the same messages.`,
    table: (r: E2eBenchResult) => `${e2eTable(r)}\n\n![latency against load](latency.svg)`,
  },
  {
    key: 'memory',
    title: 'Memory (`npm run bench -- memory`)',
    about: '`weather-lstm` carries h and c, 2 layers × 32 floats: 512 bytes per stream. RSS growth per stream, in a fresh process per point: the engine alone, and the whole daemon with one message per stream through Mosquitto, started as the systemd unit starts it (node\'s `--max-semi-space-size=8`, src/node-flags.ts; the shipped model runs on the main thread, `sessionThread: auto`). "target" is 1.5 × the state plus 200 bytes; the daemon\'s working bound is 1,536 bytes per stream at 100,000 streams. Per stream the daemon keeps 1,096 bytes of typed-array records (state 512, open forecasts 144 and a pointer to error sums that a stream holds only from its first scored error until a checkpoint takes them, prediction-interval bounds 96, drift tests 32, step assembly 288, residency 24), one map entry (its route group\'s slot index, which the step assembler, the state slab and the score book share; the writer thread keeps the stream\'s id by that slot); the rest is the JavaScript heap (the CLI sets --heap-growing-percent=30), the worker threads\' heaps and malloc arenas, and SQLite caches growing with them (README, "Memory per stream"). Growth from the 10,000 to the 100,000 point, per stream added, is what a stream costs once the process has warmed up (its young generations touched, thread arenas and caches grown). The last row is the same daemon once its first checkpoint (25 s after start, after the feed) has written every stream: a checkpoint copies each stream\'s state to pack it, and posts at most two transactions of 1,024 streams to the writer before it waits, so what it adds is its transient copies, not a second copy of every stream.',
    table: (r: MemoryBenchResult) => memoryTable(r),
  },
  { key: 'recovery', title: 'Recovery (`npm run bench -- recovery`)', about: 'Process start to "ready" with 100,000 streams: empty database, after a clean stop, after SIGKILL with inputs to replay.', table: (r: RecoveryBenchResult) => recoveryTable(r) },
  {
    key: 'engine',
    title: 'Engine (`npm run bench -- engine`)',
    about: 'Stream-steps per second of the inference engine alone (state gather, one `session.run`, scatter with its NaN check) at each batch size, against re-running a 48-step window per prediction and against a bare `session.run`. Each point runs in a fresh process; batch 256, the windowed baseline and the bare run (the figures the ratios come from) run three times, interleaved, and report their medians: measured one after another in one process, the later points came out up to 2x slower or faster from run to run, depending on whether the output buffers each `session.run` allocates landed on pages glibc had trimmed (perf: page faults under `napi_create_arraybuffer`).',
    table: (r: EngineBenchResult) => engineTable(r),
  },
  { key: 'store', title: 'Write path (`npm run bench -- store`)', about: '`Store.commit` alone and the in-memory scoring beside it, 10,000 streams, batches of 256; then what one step row costs under schema 7\'s key (stream, then time) and under the store\'s time-major key (schema 10) as each stream\'s history grows, the streams of each step arriving in shuffled order (better-sqlite3 on the writer\'s settings, WAL bytes counted before each copy back).', table: (r: StoreBenchResult) => storeTable(r) },
  { key: 'api', title: 'Dashboard API (`npm run bench -- api`)', about: 'Every endpoint the dashboard calls, 15 times each, on a database of 200 streams × 834 daily steps.', table: (r: ApiBenchResult) => apiTable(r) },
  {
    key: 'api-load',
    title: 'MQTT under API load (`npm run bench -- api-load`)',
    about: 'What 200 dashboard clients cost the acknowledging thread: QoS 1 messages paced to 2,000 streams, publish → forecast committed, with and without 200 concurrent API clients looping over the stream list and distinct series (alternated, twice each, one daemon), and /healthz probed every 20 ms. The clients run in a child process at nice 19, as browsers on other machines would; the HTTP endpoint runs on its own thread at nice 19, paces dashboard and API answers to `http.ratePerS` (250/s), and asks the main thread only for the unstored error sums of a listed stream (every 5 s at most).',
    table: (r: ApiLoadResult) => apiLoadTable(r),
  },
];

/** Record this run's results and write the docs. */
export function writeBenchDocs(results: ReadonlyArray<Record<string, unknown>>): string[] {
  const saved = (existsSync(jsonFile) ? JSON.parse(readFileSync(jsonFile, 'utf8')) : {}) as Record<string, unknown>;
  for (const r of results) saved[r.scenario as string] = r;
  writeFileSync(jsonFile, JSON.stringify(saved, null, 1) + '\n');
  return renderBenchDocs(saved as Saved);
}

/** Write docs/BENCHMARKS.md (and docs/latency.svg) from saved results; returns the files written. */
export function renderBenchDocs(saved: Saved = JSON.parse(readFileSync(jsonFile, 'utf8')) as Saved): string[] {
  const parts = [
    '# Benchmarks',
    '',
    '<!-- Generated by `npm run bench:docs` from docs/benchmarks.json (written by `npm run bench -- SCENARIOS --docs`). Do not edit by hand. -->',
    '',
    'Every figure below comes from `npm run bench`, which measures the alternatives of a scenario side by side in one run, so that their ratios stay meaningful on a shared, noisy machine (absolute rates move by ±10% between runs here; ratios move less). Reproduce with:',
    '',
    '```sh',
    'npm ci',
    'npm run bench -- e2e                 # one scenario: readable tables',
    'npm run bench -- e2e --json          # one JSON object per scenario',
    'npm run bench -- e2e memory --docs   # also record the results here and regenerate this page',
    '```',
  ];
  for (const s of SECTIONS) {
    const r = saved[s.key];
    if (!r) continue;
    parts.push('', `## ${s.title}`, '', s.about, '', `Last run ${r.at.slice(0, 10)}: ${r.machine.cpus} × ${r.machine.cpu}, node ${r.machine.node}, ${r.machine.platform}.`, '', s.table(r as never));
  }
  const written = [path.join(docs, 'BENCHMARKS.md')];
  writeFileSync(written[0]!, parts.join('\n') + '\n');
  if (saved.e2e) {
    written.push(path.join(docs, 'latency.svg'));
    writeFileSync(written[1]!, latencySvg(saved.e2e));
  }
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const f of renderBenchDocs()) process.stdout.write(`wrote ${path.relative(process.cwd(), f)}\n`);
}
