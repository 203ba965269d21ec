import { spawn } from 'node:child_process';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { loadModel } from '../src/inference/model.js';
import type { StepRequest } from '../src/inference/step-request.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { modelsDir, packageRoot } from '../src/paths.js';
import { median } from './support.js';

export interface EngineBenchResult {
  scenario: 'engine';
  model: string;
  steps_per_s: Record<string, number>;
  windowed_preds_per_s: number;
  window: number;
  stateful_vs_windowed: number;
  stateful_b1_vs_windowed: number;
  batch256_vs_batch1: number;
  /** session.run alone at batch 256 with fixed tensors: the ceiling the engine's gather/scatter sits under. */
  bare_run_steps_per_s_256: number;
  engine_vs_bare_256: number;
  seconds_per_point: number;
  /** Fresh-process runs of each deciding point (batch 256, windowed, bare); the figures above are their medians. */
  rounds?: number;
  samples?: Record<string, number[]>;
}

const BATCHES = [1, 16, 64, 256, 1024];
const WINDOW = 48;

/** Random scaled inputs, reused round-robin so input generation stays out of the timing. */
function inputs(n: number, F: number): Float32Array[] {
  let seed = 12345;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 4 - 2;
  return Array.from({ length: n }, () => Float32Array.from({ length: F }, rand));
}

/** Run `step` repeatedly for about `seconds`; returns items per second. */
async function rate(seconds: number, itemsPerCall: number, step: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 20; i++) await step(); // warm-up: allocator, kernels, JIT
  let calls = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    await step();
    calls++;
    elapsed = process.hrtime.bigint() - start;
  }
  return (calls * itemsPerCall) / (Number(elapsed) / 1e9);
}

/** One measured point: stateful steps at batch B, the bare session.run at 256, or the windowed baseline. */
export type EnginePoint = { kind: 'stateful'; batch: number } | { kind: 'bare' } | { kind: 'windowed' };

/** Measure one point in this process (bench/engine-child.ts runs it in a fresh one). */
export async function measureEnginePoint(point: EnginePoint, seconds: number, modelName = 'weather-lstm'): Promise<number> {
  const file = path.join(modelsDir, `${modelName}.onnx`);
  if (point.kind === 'windowed') {
    const windowed = await loadModel(file, { window: WINDOW });
    const pool = inputs(4096, windowed.signature.featureCount);
    const naive = new StepRunner(windowed);
    let k = 0;
    for (let i = 0; i < WINDOW; i++) await naive.run([{ streamId: 'w', input: pool[i]! }]);
    const r = await rate(seconds, 1, () => naive.run([{ streamId: 'w', input: pool[k++ % pool.length]! }]));
    await windowed.session.release();
    return r;
  }
  const model = await loadModel(file);
  const F = model.signature.featureCount;
  const pool = inputs(4096, F);
  let r: number;
  if (point.kind === 'stateful') {
    const B = point.batch;
    const runner = new StepRunner(model);
    const ids = Array.from({ length: B }, (_, i) => `sensors/site-${i % 97}/device-${i}`);
    let k = 0;
    const batch = (): StepRequest[] => ids.map((streamId) => ({ streamId, input: pool[k++ % pool.length]! }));
    r = await rate(seconds, B, () => runner.run(batch()));
  } else {
    // The ceiling: the same session, the same batch shape, no state gathered or scattered.
    const sig = model.signature;
    const feeds: Record<string, ort.Tensor> = {
      [sig.input]: new ort.Tensor('float32', new Float32Array(256 * F), [256, 1, F]),
    };
    for (const st of sig.states) {
      const dims = st.shape.map((d, i) => (i === st.batchAxis ? 256 : (d as number)));
      feeds[st.input] = new ort.Tensor('float32', new Float32Array(256 * st.perStream), dims);
    }
    r = await rate(seconds, 256, () => model.session.run(feeds));
  }
  await model.session.release();
  return r;
}

/** Run one point in a fresh node process: no point inherits another's heap (see the note in engineBench). */
function pointInChild(point: EnginePoint, seconds: number, modelName: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(packageRoot, 'dist', 'bench', 'engine-child.js'), JSON.stringify(point), String(seconds), modelName], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => (code === 0 ? resolve((JSON.parse(out) as { rate: number }).rate) : reject(new Error(`engine point ${JSON.stringify(point)} exited ${code}`))));
  });
}

/**
 * Stateful steps per second at each batch size (one step of B distinct streams
 * per session.run, state gathered from and scattered to the slab), against the
 * naive alternative: re-run the last 48 steps for every prediction, one stream
 * per call, and against a bare session.run at batch 256. Same model, same inputs.
 *
 * Each point runs in a fresh process. Run one after another in one process,
 * the later points measured up to 2x slower or faster from run to run: each
 * session.run allocates its outputs (napi_create_arraybuffer, zero-filled),
 * and whether those pages are still held by glibc or were trimmed and fault in
 * again depends on the garbage the earlier points left (perf: page faults under
 * AllocateExternalBackingStore). Fresh processes still vary by a third on
 * this shared host, so the three points the ratios come from (batch 256,
 * windowed, bare) run `rounds` times, interleaved; each reports its median.
 */
export async function engineBench(seconds: number, modelName = 'weather-lstm', rounds = 3): Promise<EngineBenchResult> {
  const steps: Record<string, number> = {};
  const samples: Record<string, number[]> = { '256': [], windowed: [], bare: [] };
  for (const B of BATCHES) if (B !== 256) steps[String(B)] = await pointInChild({ kind: 'stateful', batch: B }, seconds, modelName);
  for (let i = 0; i < rounds; i++) {
    samples['256']!.push(await pointInChild({ kind: 'stateful', batch: 256 }, seconds, modelName));
    samples.windowed!.push(await pointInChild({ kind: 'windowed' }, seconds, modelName));
    samples.bare!.push(await pointInChild({ kind: 'bare' }, seconds, modelName));
  }
  steps['256'] = median(samples['256']!);
  const ordered = Object.fromEntries(BATCHES.map((B) => [String(B), steps[String(B)]!])); // batch order, 256 measured last
  const windowedRate = median(samples.windowed!);
  const bare = median(samples.bare!);
  return {
    scenario: 'engine',
    model: modelName,
    steps_per_s: ordered,
    windowed_preds_per_s: windowedRate,
    window: WINDOW,
    stateful_vs_windowed: ordered['256']! / windowedRate,
    stateful_b1_vs_windowed: ordered['1']! / windowedRate,
    batch256_vs_batch1: ordered['256']! / ordered['1']!,
    bare_run_steps_per_s_256: bare,
    engine_vs_bare_256: ordered['256']! / bare,
    seconds_per_point: seconds,
    rounds,
    samples,
  };
}

export function engineTable(r: EngineBenchResult): string {
  const n = (x: number): string => Math.round(x).toLocaleString('en-US').padStart(10);
  const lines = [
    `engine: ${r.model}, one intra-op thread, ${r.seconds_per_point} s per point, each in a fresh process${r.rounds ? ` (batch 256, windowed, bare: median of ${r.rounds})` : ''}`,
    '  batch (streams per run)   stream-steps/s',
    ...Object.entries(r.steps_per_s).map(([b, v]) => `  ${b.padStart(5)}                ${n(v)}`),
    `  naive windowed (T=${r.window}, 1 stream/run) ${n(r.windowed_preds_per_s)} predictions/s`,
    `  stateful batch 256 / naive windowed  ${r.stateful_vs_windowed.toFixed(1)}x`,
    `  stateful batch 1   / naive windowed  ${r.stateful_b1_vs_windowed.toFixed(1)}x`,
    `  batch 256 / batch 1                  ${r.batch256_vs_batch1.toFixed(1)}x`,
    `  bare session.run, batch 256          ${n(r.bare_run_steps_per_s_256)} stream-steps/s (engine reaches ${(100 * r.engine_vs_bare_256).toFixed(0)}%)`,
  ];
  return lines.join('\n');
}
