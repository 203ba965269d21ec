import path from 'node:path';
import ort from 'onnxruntime-node';
import { loadModel } from '../src/inference/model.js';
import { StepRunner, type StepRequest } from '../src/inference/step-runner.js';
import { modelsDir } from '../src/paths.js';

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

/**
 * Stateful steps per second at each batch size (one step of B distinct streams
 * per session.run, state gathered from and scattered to the slab), against the
 * naive alternative: re-run the last 48 steps for every prediction, one stream
 * per call. Same model, same process, same inputs.
 */
export async function engineBench(seconds: number, modelName = 'weather-lstm'): Promise<EngineBenchResult> {
  const file = path.join(modelsDir, `${modelName}.onnx`);
  const model = await loadModel(file);
  const F = model.signature.featureCount;
  const pool = inputs(4096, F);
  const steps: Record<string, number> = {};
  for (const B of BATCHES) {
    const runner = new StepRunner(model);
    const ids = Array.from({ length: B }, (_, i) => `sensors/site-${i % 97}/device-${i}`);
    let k = 0;
    const batch = (): StepRequest[] => ids.map((streamId) => ({ streamId, input: pool[k++ % pool.length]! }));
    steps[String(B)] = await rate(seconds, B, () => runner.run(batch()));
  }
  // The ceiling: the same session, the same batch shape, no state gathered or scattered.
  const sig = model.signature;
  const bareFeeds: Record<string, ort.Tensor> = {
    [sig.input]: new ort.Tensor('float32', new Float32Array(256 * F), [256, 1, F]),
  };
  for (const st of sig.states) {
    const dims = st.shape.map((d, i) => (i === st.batchAxis ? 256 : (d as number)));
    bareFeeds[st.input] = new ort.Tensor('float32', new Float32Array(256 * st.perStream), dims);
  }
  const bare = await rate(seconds, 256, () => model.session.run(bareFeeds));
  await model.session.release();

  const windowed = await loadModel(file, { window: WINDOW });
  const naive = new StepRunner(windowed);
  let k = 0;
  for (let i = 0; i < WINDOW; i++) await naive.run([{ streamId: 'w', input: pool[i]! }]);
  const windowedRate = await rate(seconds, 1, () => naive.run([{ streamId: 'w', input: pool[k++ % pool.length]! }]));
  await windowed.session.release();

  return {
    scenario: 'engine',
    model: modelName,
    steps_per_s: steps,
    windowed_preds_per_s: windowedRate,
    window: WINDOW,
    stateful_vs_windowed: steps['256']! / windowedRate,
    stateful_b1_vs_windowed: steps['1']! / windowedRate,
    batch256_vs_batch1: steps['256']! / steps['1']!,
    bare_run_steps_per_s_256: bare,
    engine_vs_bare_256: steps['256']! / bare,
    seconds_per_point: seconds,
  };
}

export function engineTable(r: EngineBenchResult): string {
  const n = (x: number): string => Math.round(x).toLocaleString('en-US').padStart(10);
  const lines = [
    `engine: ${r.model}, one intra-op thread, ${r.seconds_per_point} s per point`,
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
