import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { InferenceEngine } from '../src/inference/engine.js';
import { loadModel } from '../src/inference/model.js';
import type ort from 'onnxruntime-node';
import type { RunOutput } from '../src/inference/session-thread.js';
import type { StepResult } from '../src/inference/step-request.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { testModelPath } from './support/models.js';

// nan-accumulator.onnx: state += input; output = sqrt(5 - state). Once a stream's
// accumulated first feature passes 5 its output turns NaN: an exploding state.
const step = (a: number, b = 0): Float32Array => Float32Array.from([a, b]);

describe('non-finite outputs (exploding state)', () => {
  it('resets only the affected stream, commits nothing non-finite, and reports it', async () => {
    const runner = new StepRunner(await loadModel(testModelPath('nan-accumulator.onnx')));
    let r = await runner.run([{ streamId: 'bad', input: step(3) }, { streamId: 'good', input: step(1) }]);
    assert.deepEqual(r.map((x) => x.status), ['ok', 'ok']);
    assert.deepEqual([...runner.slab!.read('bad')!], [3, 0]);

    r = await runner.run([{ streamId: 'bad', input: step(3) }, { streamId: 'good', input: step(1) }]);
    assert.equal(r[0]!.status, 'reset');
    assert.equal(r[0]!.reason, 'non_finite_output');
    assert.equal(r[0]!.output, null);
    assert.deepEqual([...runner.slab!.read('bad')!], [0, 0], 'the exploded state was not committed; the stream starts over');
    assert.equal(r[1]!.status, 'ok');
    assert.deepEqual([...runner.slab!.read('good')!], [2, 0], 'the other stream in the same batch kept its state');
    assert.ok(Math.abs(r[1]!.output![0]! - Math.sqrt(3)) < 1e-6);

    // After the reset the stream computes from zero again: sqrt(5 - 1).
    r = await runner.run([{ streamId: 'bad', input: step(1) }]);
    assert.equal(r[0]!.status, 'ok');
    assert.ok(Math.abs(r[0]!.output![0]! - 2) < 1e-6);
    await runner.model.session.release();
  });

  it('counts resets in the engine and hands them to the caller', async () => {
    const results: StepResult[] = [];
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
    const engine = new InferenceEngine(await loadModel(testModelPath('nan-accumulator.onnx')), {
      maxBatch: 8,
      maxDelayMs: 1,
      log: pino({ level: 'info' }, sink),
      onResults: (batch) => results.push(...batch),
    });
    for (let i = 0; i < 4; i++) {
      engine.submit('a', step(2));
      engine.submit('b', step(0.5));
    }
    await engine.close();
    // a: 2, 4, 6 -> NaN (reset), then 2 again; b never passes 5.
    assert.deepEqual(results.filter((x) => x.streamId === 'a').map((x) => x.status), ['ok', 'ok', 'reset', 'ok']);
    assert.ok(results.filter((x) => x.streamId === 'b').every((x) => x.status === 'ok'));
    assert.equal(engine.stats.resets, 1);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(logged.length, 1);
    assert.deepEqual([logged[0]!.stream, logged[0]!.reason, logged[0]!.model], ['a', 'non_finite_output', 'nan-accumulator']);
    assert.ok(results.every((x) => x.output === null || x.output.every(Number.isFinite)));
  });

  it('resets a stream whose new state is not finite even when its output is (fault injected into the state tensor)', async () => {
    const model = await loadModel(testModelPath('nan-accumulator.onnx'));
    // The real session runs; the fault poisons row 1 of the state it returned.
    const poisoned = async (feeds: Record<string, ort.Tensor>) => {
      const out = await model.session.run(feeds);
      const state = out.state_out!.data as Float32Array;
      if (state.length >= 4) state[3] = Number.NaN; // [1, batch, 2]: row 1, second feature
      return out as unknown as Record<string, RunOutput>;
    };
    const runner = new StepRunner(model, poisoned);
    const r = await runner.run([
      { streamId: 'a', input: step(1, 1) },
      { streamId: 'b', input: step(2, 2) },
      { streamId: 'c', input: step(0.5) },
    ]);
    assert.deepEqual(r.map((x) => x.status), ['ok', 'reset', 'ok']);
    assert.equal(r[1]!.reason, 'non_finite_state');
    assert.equal(r[1]!.output, null);
    assert.deepEqual([...runner.slab!.read('b')!], [0, 0], 'the poisoned state was not kept: the stream starts over');
    assert.deepEqual([...runner.slab!.read('a')!], [1, 1]);
    assert.deepEqual([...runner.slab!.read('c')!], [0.5, 0]);
    await model.session.release();
  });
});
