import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InferenceEngine } from '../src/inference/engine.js';
import { loadModel } from '../src/inference/model.js';
import type { StepResult } from '../src/inference/step-request.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { maxAbsDiff, modelPath } from './support/models.js';
import { prng } from './support/prng.js';
import { waitFor } from './support/fixtures.js';

const STREAMS = 1000;
const STEPS = 12;
const F = 4;

describe('cross-stream batching', () => {
  it('1,000 streams in random interleavings and batch sizes get exactly what each gets alone', async () => {
    const rand = prng(42);
    const seqs = Array.from({ length: STREAMS }, () =>
      Array.from({ length: STEPS }, () => Float32Array.from({ length: F }, () => rand() * 4 - 2)),
    );

    // Reference: each stream run alone, one step per session.run, batch of 1.
    const alone = new StepRunner(await loadModel(modelPath('weather-lstm')));
    const expected: Float32Array[][] = [];
    for (let s = 0; s < STREAMS; s++) {
      const outs: Float32Array[] = [];
      for (const input of seqs[s]!) outs.push((await alone.run([{ streamId: `s${s}`, input }]))[0]!.output!);
      expected.push(outs);
    }

    // Rounds 3-5 run the graph on a session thread, two batches in flight; in round 5 the thread dies at its fifth batch and the rest (that one included) run on this thread.
    // Rounds 6-7 start on this thread ('auto'): in round 6 every run counts as too long, so the model moves to a session thread
    // while steps flow (the test waits for it halfway); in round 7 none does, and it stays.
    const rounds = [
      [0, 1000, false, 0, 0],
      [1, 7, false, 0, 0],
      [2, 256, false, 0, 0],
      [3, 7, true, 0, 0],
      [4, 256, true, 0, 0],
      [5, 64, true, 5, 0],
      [6, 64, 'auto', 0, -1],
      [7, 64, 'auto', 0, Infinity],
    ] as const;
    for (const [round, maxBatch, thread, dieAt, threadAboveMs] of rounds) {
      // A random interleaving that keeps each stream's own order: draw a random stream with steps left.
      const order: number[] = [];
      const left = new Array<number>(STREAMS).fill(STEPS);
      const live = Array.from({ length: STREAMS }, (_, i) => i);
      while (live.length > 0) {
        const k = Math.floor(rand() * live.length);
        const s = live[k]!;
        order.push(s);
        if (--left[s]! === 0) live.splice(k, 1);
      }
      const got: Float32Array[][] = Array.from({ length: STREAMS }, () => []);
      const batchSizes: number[] = [];
      if (dieAt > 0) process.env.TIDECAST_FAULT_SESSION_EXIT_AT = String(dieAt);
      const engine = new InferenceEngine(await loadModel(modelPath('weather-lstm')), {
        maxBatch,
        maxDelayMs: 1,
        thread,
        threadAboveMs,
        onResults: (results: StepResult[]) => {
          batchSizes.push(results.length);
          const seen = new Set<string>();
          for (const r of results) {
            assert.ok(!seen.has(r.streamId), `stream ${r.streamId} twice in one batch`);
            seen.add(r.streamId);
            assert.equal(r.status, 'ok');
            got[Number(r.streamId.slice(1))]!.push(r.output!);
          }
        },
      });
      await engine.ready;
      delete process.env.TIDECAST_FAULT_SESSION_EXIT_AT;
      assert.equal(engine.runsOn, thread === true ? 'thread' : 'main');
      // Submit in bursts of random size so batches form from different mixes.
      const next = new Array<number>(STREAMS).fill(0);
      let moved = false;
      for (let i = 0; i < order.length; ) {
        const burst = 1 + Math.floor(rand() * 500);
        for (const s of order.slice(i, i + burst)) engine.submit(`s${s}`, seqs[s]![next[s]!++]!);
        i += burst;
        await new Promise((r) => setImmediate(r));
        if (round === 6 && !moved && i >= order.length / 2) {
          await waitFor(() => engine.runsOn === 'thread', 20_000, 'the model to move to a session thread');
          moved = true;
        }
      }
      if (round === 6) assert.ok(moved, 'round 6 moved halfway');
      if (round === 7) assert.equal(engine.runsOn, 'main', 'round 7: no run was too long, the model stays on this thread');
      await engine.close();
      if (dieAt > 0) assert.equal(engine.runsOn, 'main', `round ${round}: the dead session thread's batches ran on this thread`);

      assert.ok(batchSizes.every((n) => n <= maxBatch), `round ${round}: a batch exceeded maxBatch ${maxBatch}`);
      assert.ok(Math.max(...batchSizes) > 1, `round ${round}: steps of different streams must share batches`);
      let worst = 0;
      for (let s = 0; s < STREAMS; s++) {
        assert.equal(got[s]!.length, STEPS, `stream s${s} got ${got[s]!.length} results`);
        for (let t = 0; t < STEPS; t++) worst = Math.max(worst, maxAbsDiff(got[s]![t]!, expected[s]![t]!));
      }
      // Batched and single-row runs may take different kernels: equal to float32 rounding.
      assert.ok(worst <= 1e-5, `round ${round}: max deviation from the stream run alone ${worst}`);
    }
  });
});
