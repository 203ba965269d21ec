import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { ErrorCodes } from '../src/errors.js';
import { loadModel } from '../src/inference/model.js';
import { detectSignature } from '../src/inference/signature.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { maxAbsDiff, modelPath, testModelPath } from './support/models.js';
import { prng } from './support/prng.js';

/** Run a whole sequence through the graph in one call: the reference for step-by-step runs. */
async function fullSequence(model: Awaited<ReturnType<typeof loadModel>>, seq: Float32Array[]): Promise<Float32Array[]> {
  const sig = model.signature;
  const T = seq.length;
  const F = sig.featureCount;
  const data = new Float32Array(T * F);
  seq.forEach((s, t) => data.set(s, t * F));
  const dims = sig.layout === 'time-major' ? [T, 1, F] : [1, T, F];
  const feeds: Record<string, ort.Tensor> = { [sig.input]: new ort.Tensor('float32', data, dims) };
  for (const s of sig.states) {
    feeds[s.input] = new ort.Tensor('float32', new Float32Array(s.perStream), s.shape.map((d, i) => (i === s.batchAxis ? 1 : (d as number))));
  }
  const y = (await model.session.run(feeds))[sig.output]!;
  const per = (y.data as Float32Array).length / T;
  return Array.from({ length: T }, (_, t) => (y.data as Float32Array).slice(t * per, (t + 1) * per));
}

describe('signature detection', () => {
  it('PyTorch export without a card: h0/c0 -> hn/cn, batch-first, dynamic batch', async () => {
    const m = await loadModel(modelPath('weather-lstm'), { card: null });
    assert.equal(m.card, null);
    assert.equal(m.mode, 'stateful');
    const s = m.signature;
    assert.equal(s.input, 'input');
    assert.equal(s.output, 'output');
    assert.equal(s.layout, 'batch-first');
    assert.equal(s.fixedBatch, null);
    assert.equal(s.featureCount, 4);
    assert.equal(s.outputSize, 6);
    assert.deepEqual(s.states.map((p) => [p.input, p.output, p.batchAxis]), [['h0', 'hn', 1], ['c0', 'cn', 1]]);
    await m.session.release();
  });

  it('plain ONNX GRU operator: time-major X, initial_h -> Y_h, Y [seq, dirs, batch, hidden]', async () => {
    const m = await loadModel(testModelPath('gru-time-major.onnx'));
    const s = m.signature;
    assert.equal(s.layout, 'time-major');
    assert.deepEqual([s.input, s.output], ['X', 'Y']);
    assert.deepEqual(s.states.map((p) => [p.input, p.output]), [['initial_h', 'Y_h']]);
    assert.deepEqual([s.outputBatchAxis, s.outputTimeAxis, s.outputSize], [2, 0, 4]);

    // Step by step, three streams batched together, equals each stream's full-sequence run.
    const rand = prng(9);
    const seqs = [0, 1, 2].map(() => Array.from({ length: 10 }, () => Float32Array.from({ length: 3 }, () => rand() * 2 - 1)));
    const runner = new StepRunner(m);
    const got: Float32Array[][] = [[], [], []];
    for (let t = 0; t < 10; t++) {
      const res = await runner.run(seqs.map((seq, i) => ({ streamId: `s${i}`, input: seq[t]! })));
      res.forEach((r, i) => got[i]!.push(r.output!));
    }
    for (let i = 0; i < 3; i++) {
      const want = await fullSequence(m, seqs[i]!);
      for (let t = 0; t < 10; t++) assert.ok(maxAbsDiff(got[i]![t]!, want[t]!) < 1e-6, `stream ${i} step ${t}`);
    }
    await m.session.release();
  });

  it('fixed batch 1 with state_in_*/state_out_* names still serves many streams, one run each', async () => {
    const m = await loadModel(testModelPath('batch1-lstm.onnx'));
    const s = m.signature;
    assert.equal(s.fixedBatch, 1);
    assert.equal(s.layout, 'batch-first');
    assert.deepEqual(s.states.map((p) => [p.input, p.output]), [['state_in_h', 'state_out_h'], ['state_in_c', 'state_out_c']]);
    const rand = prng(5);
    const seqs = [0, 1].map(() => Array.from({ length: 6 }, () => Float32Array.from({ length: 3 }, () => rand())));
    const runner = new StepRunner(m);
    const got: Float32Array[][] = [[], []];
    for (let t = 0; t < 6; t++) {
      const res = await runner.run(seqs.map((seq, i) => ({ streamId: `s${i}`, input: seq[t]! })));
      res.forEach((r, i) => got[i]!.push(r.output!));
    }
    for (let i = 0; i < 2; i++) {
      const want = await fullSequence(m, seqs[i]!);
      for (let t = 0; t < 6; t++) assert.ok(maxAbsDiff(got[i]![t]!, want[t]!) < 1e-6, `stream ${i} step ${t}`);
    }
    await m.session.release();
  });

  it('Keras-style rank-2 states pair by shape; an ambiguous layout names the config and card keys', () => {
    const sig = detectSignature(
      [{ name: 'x', shape: ['N', 'T', 5] }, { name: 'h', shape: ['N', 16] }],
      [{ name: 'y', shape: ['N', 'T', 2] }, { name: 'h_next', shape: ['N', 16] }],
    );
    assert.deepEqual(sig.states.map((p) => [p.input, p.output, p.batchAxis]), [['h', 'h_next', 0]]);
    assert.equal(sig.layout, 'batch-first');
    assert.throws(
      () => detectSignature([{ name: 'input', shape: ['d0', 'd1', 3] }], [{ name: 'output', shape: ['d0', 'd1', 1] }]),
      (err: Error & { code?: string }) => err.code === ErrorCodes.SIGNATURE && /models\.NAME\.signature in tidecast\.yaml .*layout/.test(err.message),
    );
    const pinned = detectSignature([{ name: 'input', shape: ['d0', 'd1', 3] }], [{ name: 'output', shape: ['d0', 'd1', 1] }], { layout: 'time-major' });
    assert.equal(pinned.inputBatchAxis, 1);
  });
});
