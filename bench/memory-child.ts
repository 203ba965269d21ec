/**
 * Memory of N streams' recurrent state in the engine alone, in a fresh process
 * (run with --expose-gc): RSS after loading the model, then after N real LSTM
 * steps (one per stream, batches of 1024). Prints one JSON line.
 */
import { loadModel } from '../src/inference/model.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { modelPath } from '../test/support/models.js';

const n = Number(process.argv[2]);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const rss = (): number => {
  gc();
  return process.memoryUsage().rss;
};
const model = await loadModel(modelPath('weather-lstm'));
const runner = new StepRunner(model);
const F = model.signature.featureCount;
await runner.run([{ streamId: 'warm-up', input: new Float32Array(F) }]);
runner.releaseStream('warm-up');
const before = rss();
const input = Float32Array.from({ length: F }, (_, i) => (i - 1) / 3);
for (let i = 0; i < n; i += 1024) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 1024); j++) batch.push({ streamId: `g${j % 100}/d${j}`, input });
  await runner.run(batch);
}
const after = rss();
process.stdout.write(JSON.stringify({ streams: runner.streams, rss_before: before, rss_after: after, state_bytes: runner.streamStateSize * 4 }) + '\n');
