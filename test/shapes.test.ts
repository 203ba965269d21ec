import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { ErrorCodes } from '../src/errors.js';
import { loadModel } from '../src/inference/model.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { maxAbsDiff, testModelPath } from './support/models.js';
import { prng } from './support/prng.js';
import { runCli } from './support/child.js';
import { withTempDir } from './support/temp-dir.js';
import { writeConfig } from './support/test-config.js';

const KERAS = testModelPath('keras-style-lstm.onnx');
const MAPPING = { states: [{ input: 'input_2', output: 'lstm_h' }, { input: 'input_3', output: 'lstm_c' }] };

/**
 * keras-style-lstm.onnx: a plain ONNX LSTM operator (time-major input) under
 * Keras/tf2onnx-style names, two states of the same shape whose names pair
 * with nothing, and a many-to-one [batch, 3] head. Detection must refuse it,
 * naming the config keys; with those keys it must stream exactly.
 */
describe('a graph tidecast cannot read by itself', () => {
  it('is refused with a message naming models.NAME.signature', async () => {
    await assert.rejects(loadModel(KERAS, { card: null }), (e: Error & { code?: string }) => {
      assert.equal(e.code, ErrorCodes.STATE_UNPAIRED);
      assert.match(e.message, /models\.NAME\.signature\.states \[\{input, output\}\] in tidecast\.yaml/);
      return true;
    });
  });

  it('with signature.states mapped: time-major, many-to-one [batch, 3], step by step equal to the whole sequence', async () => {
    const model = await loadModel(KERAS, { card: null, signature: MAPPING });
    const sig = model.signature;
    assert.equal(sig.layout, 'time-major');
    assert.equal(sig.outputTimeAxis, -1, 'the output has no time axis: many-to-one');
    assert.equal(sig.outputSize, 3);
    assert.deepEqual(sig.states.map((s) => [s.input, s.output]), [['input_2', 'lstm_h'], ['input_3', 'lstm_c']]);
    const rand = prng(5);
    const seq = Array.from({ length: 12 }, () => Float32Array.from({ length: 4 }, () => rand() * 2 - 1));
    // Reference: the whole sequence in one call from zero state; the head sees the last hidden state.
    const data = new Float32Array(12 * 4);
    seq.forEach((s, t) => data.set(s, t * 4));
    const zeros = (): ort.Tensor => new ort.Tensor('float32', new Float32Array(8), [1, 1, 8]);
    const whole = (await model.session.run({ input_1: new ort.Tensor('float32', data, [12, 1, 4]), input_2: zeros(), input_3: zeros() })).dense!.data as Float32Array;
    const runner = new StepRunner(model);
    let last: Float32Array | null = null;
    for (const x of seq) last = (await runner.run([{ streamId: 's', input: x }]))[0]!.output;
    assert.ok(maxAbsDiff(last!, whole) < 1e-5, `streamed ${[...last!]} vs whole ${[...whole]}`);
    await model.session.release();
  });

  it('the config keys work: check-config refuses the model without them (exit 65) and accepts it with them', () =>
    withTempDir(async (dir) => {
      const card = path.join(dir, 'ks.card.json');
      writeFileSync(
        card,
        JSON.stringify({ name: 'keras-style', mode: 'stateful', stepSeconds: 3600, features: ['a', 'b', 'c', 'd'].map((name) => ({ name })), targets: [{ name: 'a' }], horizons: [1, 2, 3] }),
      );
      const config = (mapped: boolean): string =>
        writeConfig(dir, { models: { ks: { path: KERAS, card, ...(mapped ? { signature: MAPPING } : {}) } }, routes: [{ topic: 's/+id', stream: '{id}', models: ['ks'], decoder: { type: 'json' } }] }, `c-${mapped}`);
      const refused = await runCli('check-config', '--config', config(false));
      assert.equal(refused.code, 65);
      assert.match(refused.stderr, /models\.NAME\.signature/);
      const ok = await runCli('check-config', '--config', config(true));
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^ok: /);
    }));
});

/**
 * flat-horizons-gru.onnx: a head that emits every horizon × target of the last
 * step at once, as [batch, 1, H·targets] (here 3 horizons × 2 targets). It
 * streams like any stateful graph: the step-by-step output after T steps equals
 * the whole sequence's.
 */
describe('a [batch, 1, horizons × targets] output', () => {
  it('is read as 6 values per step, and streaming equals the whole sequence', async () => {
    const model = await loadModel(testModelPath('flat-horizons-gru.onnx'), { card: null });
    assert.equal(model.signature.outputSize, 6);
    assert.equal(model.signature.layout, 'batch-first');
    const rand = prng(9);
    const seq = Array.from({ length: 10 }, () => Float32Array.from({ length: 3 }, () => rand() * 2 - 1));
    const data = new Float32Array(10 * 3);
    seq.forEach((x, t) => data.set(x, t * 3));
    const whole = (await model.session.run({ x: new ort.Tensor('float32', data, [1, 10, 3]), h0: new ort.Tensor('float32', new Float32Array(4), [1, 1, 4]) })).y!.data as Float32Array;
    const runner = new StepRunner(model);
    let last: Float32Array | null = null;
    for (const x of seq) last = (await runner.run([{ streamId: 's', input: x }, { streamId: 'other', input: seq[0]! }]))[0]!.output;
    assert.equal(last!.length, 6);
    assert.ok(maxAbsDiff(last!, whole) < 1e-5, `streamed ${[...last!]} vs whole ${[...whole]}`);
    await model.session.release();
  });
});
