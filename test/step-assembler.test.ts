import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError } from '../src/streams/decoder.js';
import { StepAssembler, type AssembledEvent, type AssemblerOptions } from '../src/streams/step-assembler.js';
import { prng } from './support/prng.js';

const H = 3_600_000;
const opts = (o: Partial<AssemblerOptions> = {}): AssemblerOptions => ({
  features: ['a', 'b'],
  stepMs: H,
  aggregate: () => 'mean',
  latenessMs: 0,
  emit: 'close',
  wallClock: false,
  maxFillSteps: 1,
  maxGapSteps: 2,
  ...o,
});
/** What adding a sample to stream s gives: its events, or the reason it was refused. */
function outcome(asm: StepAssembler, feature: string, ts: number, value: number): unknown {
  try {
    return asm.add('s', feature, ts, value);
  } catch (e) {
    return (e as DecodeError).reason;
  }
}
const steps = (ev: AssembledEvent[]): Array<[number, Record<string, number>]> =>
  ev.filter((e) => e.kind === 'step').map((e) => [e.ts / H, (e as { values: Record<string, number> }).values]);

describe('StepAssembler', () => {
  it('aggregates each feature over [t, t+step) and closes a bucket when a later one starts', () => {
    const asm = new StepAssembler(opts({ aggregate: (f) => (f === 'a' ? 'mean' : 'max') }));
    assert.deepEqual(asm.add('s', 'a', 0.1 * H, 1), []);
    assert.deepEqual(asm.add('s', 'a', 0.5 * H, 3), []);
    assert.deepEqual(asm.add('s', 'b', 0.7 * H, 5), []);
    assert.deepEqual(asm.add('s', 'b', 0.9 * H, 4), []);
    const ev = asm.add('s', 'a', 1.2 * H, 7);
    assert.deepEqual(steps(ev), [[0, { a: 2, b: 5 }]]);
  });

  it('sum, min, last; one bucket per stream', () => {
    const asm = new StepAssembler(opts({ features: ['x'], aggregate: () => 'sum' }));
    asm.add('s', 'x', 1, 1);
    asm.add('s', 'x', 2, 2);
    asm.add('t', 'x', 3, 10);
    assert.deepEqual(steps(asm.add('s', 'x', H + 1, 0)), [[0, { x: 3 }]]);
    const last = new StepAssembler(opts({ features: ['x'], aggregate: () => 'last' }));
    last.add('s', 'x', 20, 1);
    last.add('s', 'x', 10, 2); // earlier event time: not the last value
    assert.deepEqual(steps(last.add('s', 'x', H, 0)), [[0, { x: 1 }]]);
  });

  it('complete mode fires as soon as every feature is in, in time order', () => {
    const asm = new StepAssembler(opts({ emit: 'complete', latenessMs: H }));
    assert.deepEqual(asm.add('s', 'b', 1.5 * H, 2), []); // bucket 1 first (jitter)...
    // ...the stream starts at bucket 1; bucket 0 samples would now be late.
    assert.deepEqual(steps(asm.add('s', 'a', 1.6 * H, 1)), [[1, { a: 1, b: 2 }]]);
    asm.add('s', 'a', 3.1 * H, 5); // bucket 3 before bucket 2 completes: waits
    assert.deepEqual(steps(asm.add('s', 'b', 3.2 * H, 6)), []);
    assert.deepEqual(steps(asm.add('s', 'a', 2.5 * H, 3)), []);
    assert.deepEqual(steps(asm.add('s', 'b', 2.6 * H, 4)), [[2, { a: 3, b: 4 }], [3, { a: 5, b: 6 }]]);
  });

  it('a repeated sample changes nothing; a sample for a closed bucket is late', () => {
    const asm = new StepAssembler(opts({ aggregate: () => 'sum' }));
    asm.add('s', 'a', 10, 1);
    assert.deepEqual(asm.add('s', 'a', 10, 1), []);
    asm.add('s', 'b', 20, 1);
    assert.deepEqual(steps(asm.add('s', 'a', H + 5, 1)), [[0, { a: 1, b: 1 }]]);
    assert.equal(asm.duplicates, 1);
    assert.deepEqual(asm.add('s', 'b', 20, 1), [], 'a redelivery of a consumed sample is a duplicate');
    assert.throws(() => asm.add('s', 'b', 30, 9), (e: unknown) => e instanceof DecodeError && e.reason === 'late');
    assert.equal(asm.duplicates, 2);
  });

  it('lateness keeps a bucket open for out-of-order samples', () => {
    const asm = new StepAssembler(opts({ latenessMs: 0.5 * H }));
    asm.add('s', 'a', 0.2 * H, 1);
    asm.add('s', 'a', 1.2 * H, 5); // bucket 0 still open: 1.2h < 1h + 0.5h
    assert.deepEqual(steps(asm.add('s', 'b', 0.9 * H, 2)), []);
    assert.deepEqual(steps(asm.add('s', 'b', 1.6 * H, 6)), [[0, { a: 1, b: 2 }]]);
  });

  it('forward-fills a missing feature up to maxFillSteps, then skips, then resets after maxGapSteps', () => {
    const asm = new StepAssembler(opts({ emit: 'complete', maxFillSteps: 1, maxGapSteps: 2 }));
    const feed = (t: number, f: Array<'a' | 'b'>): AssembledEvent[] => f.flatMap((k) => asm.add('s', k, t * H, t * 10 + (k === 'a' ? 1 : 2)));
    feed(0, ['a', 'b']);
    feed(1, ['a']); // b missing: filled from step 0 when step 1 closes
    const ev = feed(2, ['a']); // closes 1 (b filled), step 2 lacks b
    assert.deepEqual(steps(ev), [[1, { a: 11, b: 2 }]]);
    assert.deepEqual(feed(3, ['a', 'b']).map((e) => e.kind), ['skip', 'step'], 'step 2: b is 2 steps old, beyond maxFillSteps');
    // Steps 4..6 missing entirely; step 4 is filled (1 step), 5 and 6 are not: 2 missed, no reset.
    assert.deepEqual(feed(7, ['a', 'b']).map((e) => [e.kind, e.ts / H]), [['step', 4], ['step', 7]]);
    // Steps 8..11 missing: step 8 filled, 9..11 missed (3 > maxGapSteps): a gap before step 12.
    assert.deepEqual(feed(12, ['a', 'b']).map((e) => [e.kind, e.ts / H]), [['step', 8], ['gap', 12], ['step', 12]]);
  });

  it('closes buckets on the wall clock for live streams', () => {
    const asm = new StepAssembler(opts({ wallClock: true, latenessMs: 0.1 * H }));
    asm.add('s', 'a', 0.5 * H, 1);
    asm.add('s', 'b', 0.6 * H, 2);
    assert.deepEqual(asm.sweep(1.05 * H), []);
    assert.deepEqual(steps(asm.sweep(1.1 * H)), [[0, { a: 1, b: 2 }]]);
    assert.deepEqual(new StepAssembler(opts()).sweep(10 * H), [], 'no wall clock: nothing closes by time');
  });

  it('a checkpointed stream carries on exactly: export, import into a new assembler, same events and duplicates from then on', () => {
    const rand = prng(7);
    const o = opts({ latenessMs: 2 * H, emit: 'complete', aggregate: (f) => (f === 'a' ? 'mean' : 'last'), maxFillSteps: 2, maxGapSteps: 3 });
    const a = new StepAssembler(o);
    const outcome = (asm: StepAssembler, s: string, f: string, t: number, v: number): unknown => {
      try {
        return asm.add(s, f, t, v);
      } catch (e) {
        return (e as DecodeError).reason;
      }
    };
    // Jittered, repeated and late samples of three streams, some with several samples per step.
    const samples = Array.from({ length: 600 }, (_, i) => {
      const s = `s${i % 3}`;
      const t = Math.max(0, (i / 3 + (rand() - 0.7) * 4) * 0.4 * H);
      return [s, rand() < 0.5 ? 'a' : 'b', Math.round(t), Math.round(rand() * 100)] as const;
    });
    const withRepeats = samples.flatMap((x, i) => (i % 7 === 0 ? [x, x] : [x]));
    const cut = 400;
    for (const [s, f, t, v] of withRepeats.slice(0, cut)) outcome(a, s, f, t, v);
    const b = new StepAssembler(o);
    for (const s of ['s0', 's1', 's2']) b.importStream(s, a.exportStream(s)!);
    const before = a.duplicates;
    for (const [s, f, t, v] of withRepeats.slice(cut)) assert.deepEqual(outcome(b, s, f, t, v), outcome(a, s, f, t, v));
    assert.equal(b.duplicates, a.duplicates - before, 'the same repeats recognised');
    assert.ok(a.duplicates - before > 10, `repeats after the cut: ${a.duplicates - before}`);
  });

  it('imports the checkpoint JSON that earlier versions wrote', () => {
    const asm = new StepAssembler(opts({ aggregate: () => 'sum' }));
    // One open bucket (1 h) with two samples of a, a closed bucket (0 h) with one sample each, last values from it.
    asm.importStream('s', JSON.stringify({ n: H, w: 1.5 * H, e: 0, o: [[H, [['a', 2, 3, 1, 2, 2, 1.5 * H]], ['a@3960000', 'a@5400000']]], r: [[0, ['a@10', 'b@20']]], l: [['a', 1, 0], ['b', 1, 0]] }));
    assert.deepEqual(asm.add('s', 'b', 20, 1), [], 'a redelivery of a closed bucket\'s sample is a duplicate');
    assert.deepEqual(asm.add('s', 'a', 5_400_000, 2), [], 'so is one of the open bucket\'s');
    assert.equal(asm.duplicates, 2);
    assert.deepEqual(steps(asm.add('s', 'a', 2 * H, 1)), [[1, { a: 3, b: 1 }]], 'the open sums carry on; b forward-filled');
  });

  it('checkpoints a stream with one sample per feature and step in binary, and refuses it for other features', () => {
    const a = new StepAssembler(opts({ emit: 'complete', latenessMs: H }));
    for (let t = 0; t < 12; t++) for (const f of ['a', 'b']) if (t % 5 !== 3 || f === 'a') a.add('s', f, t * H + 60_000, t);
    a.add('s', 'a', 12 * H, 99); // an open bucket at the checkpoint
    const saved = a.exportStream('s');
    assert.ok(Buffer.isBuffer(saved), 'binary');
    const b = new StepAssembler(opts({ emit: 'complete', latenessMs: H }));
    b.importStream('s', saved);
    for (const [f, t, v] of [['b', 12 * H, 5], ['a', 11 * H + 60_000, 11], ['a', 2 * H, 1], ['b', 13 * H, 6], ['a', 13 * H, 7]] as const) {
      assert.deepEqual(outcome(b, f, t, v), outcome(a, f, t, v), `${f}@${t / H}h`);
    }
    assert.equal(b.duplicates, 1, 'the redelivered sample of step 11 is recognised after the import');
    assert.throws(() => new StepAssembler(opts({ features: ['a', 'c'] })).importStream('s', saved), /other features/);
  });

  it('tells a repeat from a late sample exactly when event times carry fractions of a millisecond', () => {
    const asm = new StepAssembler(opts({ emit: 'complete' }));
    asm.add('s', 'a', 0.25, 1);
    asm.add('s', 'b', 7.5, 2); // step 0 complete: both lone samples have offsets that are not whole ms
    asm.add('s', 'a', H + 10, 3);
    asm.add('s', 'b', H + 10, 4); // step 1 complete, whole-ms offsets
    assert.deepEqual(asm.add('s', 'a', 0.25, 1), [], 'the same sample again: a repeat');
    assert.deepEqual(asm.add('s', 'b', H + 10, 4), []);
    assert.equal(asm.duplicates, 2);
    for (const [f, t] of [['a', 0.5], ['b', 7], ['a', H + 10.5]] as const) {
      assert.throws(() => asm.add('s', f, t, 0), (e: DecodeError) => e.reason === 'late', `${f}@${t} is another sample for a closed step`);
    }
    const copy = new StepAssembler(opts({ emit: 'complete' }));
    copy.importStream('s', asm.exportStream('s')!);
    assert.deepEqual(copy.add('s', 'a', 0.25, 1), [], 'a checkpoint keeps the fractional key');
    assert.throws(() => copy.add('s', 'a', 0.5, 0), (e: DecodeError) => e.reason === 'late');
  });

  it('restores the binary checkpoint of version 1, whose ring held event times in the record', () => {
    const a = new StepAssembler(opts({ emit: 'complete', latenessMs: H }));
    for (let t = 0; t < 12; t++) for (const f of ['a', 'b']) if (t % 5 !== 3 || f === 'a') a.add('s', f, t * H + 60_000, t);
    const v2 = new Float64Array(Uint8Array.from(a.exportStream('s') as Buffer).buffer);
    // Version 2: [2, hash, open, head, NEXT, WATERMARK, EMITTED, last value × 2, last bucket × 2, 8 starts, 8 × 2 offsets (-1: none)].
    assert.equal(v2[0], 2);
    const kept = 7 + 4;
    const v1 = [1, ...v2.subarray(1, kept)];
    for (let r = 0; r < 8; r++) {
      const start = v2[kept + r]!;
      v1.push(start, ...[0, 1].map((fi) => (v2[kept + 8 + r * 2 + fi] === -1 ? NaN : start + v2[kept + 8 + r * 2 + fi]!)));
    }
    const b = new StepAssembler(opts({ emit: 'complete', latenessMs: H }));
    b.importStream('s', Buffer.from(new Float64Array(v1).buffer));
    for (const [f, t, v] of [['a', 11 * H + 60_000, 11], ['b', 9 * H + 60_000, 9], ['b', 9 * H + 60_001, 9], ['b', 8 * H + 60_000, 8], ['b', 3 * H + 60_000, 3], ['a', 12 * H, 12], ['b', 12 * H, 12]] as const) {
      assert.deepEqual(outcome(b, f, t, v), outcome(a, f, t, v), `${f}@${t / H}h`);
    }
    assert.equal(b.duplicates, 2, 'the repeats of steps 11 and 9 are recognised after the import (step 8 had no b)');
  });
});
