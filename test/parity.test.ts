import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadModel } from '../src/inference/model.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { SHIPPED_MODELS, maxAbsDiff, modelPath, readFixture } from './support/models.js';

const TOLERANCE = 1e-5;

describe('parity with PyTorch (reference fixtures from models/train.py)', () => {
  for (const name of SHIPPED_MODELS) {
    it(`${name}: step-by-step engine output equals the full-sequence PyTorch output`, async () => {
      const fixture = readFixture(name);
      const model = await loadModel(modelPath(name));
      const runner = new StepRunner(model);
      const firstStep = fixture.firstStep ?? 0;
      assert.equal(model.mode, name === 'weather-brnn' ? 'windowed' : 'stateful');
      let worst = 0;
      for (let t = 0; t < fixture.inputs.length; t++) {
        const [result] = await runner.run([{ streamId: fixture.stream, input: Float32Array.from(fixture.inputs[t]!) }]);
        if (t < firstStep) {
          assert.equal(result!.status, 'warming', `step ${t} should still be filling the window`);
          continue;
        }
        assert.equal(result!.status, 'ok', `step ${t}`);
        const want = fixture.outputs[t - firstStep]!;
        const diff = maxAbsDiff(result!.output!, want);
        assert.ok(diff <= TOLERANCE, `${name} step ${t}: max |engine - torch| = ${diff}`);
        worst = Math.max(worst, diff);
      }
      assert.equal(fixture.outputs.length, fixture.inputs.length - firstStep, 'fixture covers every step');
      if (fixture.finalStates) {
        // The carried state after the last step equals PyTorch's hn (and cn).
        const state = runner.slab!.read(fixture.stream)!;
        let offset = 0;
        for (const s of model.signature.states) {
          const want = fixture.finalStates[s.output]!;
          const diff = maxAbsDiff(state.subarray(offset, offset + s.perStream), want);
          assert.ok(diff <= TOLERANCE, `${name} final ${s.output}: max diff ${diff}`);
          offset += s.perStream;
        }
      }
      await model.session.release();
      assert.ok(worst <= TOLERANCE);
    });
  }
});
