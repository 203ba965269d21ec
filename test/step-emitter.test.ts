import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slab } from '../src/slots.js';
import type { Aggregation, AssemblerOptions } from '../src/streams/assembler-options.js';
import { AGG, AssemblyLayout, HEAD, NEXT, type Bucket } from '../src/streams/assembly-layout.js';
import { RecentBuckets } from '../src/streams/recent-buckets.js';
import { StepEmitter, type AssembledEvent } from '../src/streams/step-emitter.js';

const H = 3_600_000;

/**
 * An emitter over real tables holding one stream (slot 0) whose steps start
 * at 0; `put` opens a bucket with the given samples, as the assembler takes them.
 */
function harness(o: Partial<AssemblerOptions> = {}) {
  const options: AssemblerOptions = { features: ['a', 'b'], stepMs: H, aggregate: () => 'mean', latenessMs: 0, emit: 'close', wallClock: false, maxFillSteps: 1, maxGapSteps: 2, ...o };
  const features = [...options.features];
  const layout = new AssemblyLayout(features.length);
  const records = new Slab(layout.width, (n) => new Float64Array(n));
  records.fill(0, NaN);
  const f = records.chunk(0);
  const at = records.offset(0);
  f[at + HEAD] = 0;
  f[at + NEXT] = 0;
  const open: Array<Bucket[] | undefined> = [];
  const pool: Float64Array[] = [];
  const recent = new RecentBuckets(records, layout, features);
  const emitter = new StepEmitter({ options, features, how: features.map((x) => options.aggregate(x)), layout, records, open, pool, recent });
  const put = (start: number, samples: Record<string, Array<[number, number]>>): void => {
    const b: Bucket = { start, agg: new Float64Array(features.length * AGG), count: 0, multi: null };
    for (const [name, list] of Object.entries(samples)) {
      const fi = features.indexOf(name);
      const a = b.agg.subarray(fi * AGG, fi * AGG + AGG);
      const last = list.reduce((x, y) => (y[0] >= x[0] ? y : x));
      a.set([list.length, list.reduce((s, [, v]) => s + v, 0), Math.min(...list.map(([, v]) => v)), Math.max(...list.map(([, v]) => v)), last[1], last[0]]);
      b.count += list.length;
      if (list.length > 1) for (const [ts] of list) (b.multi ??= new Set()).add(`${fi}@${ts}`);
    }
    (open[0] ??= []).push(b);
    open[0].sort((x, y) => x.start - y.start);
  };
  const lastOf = (fi: number): [number, number] => [f[at + layout.lastValue + fi]!, f[at + layout.lastBucket + fi]!];
  return { emitter, put, open, pool, recent, lastOf, drain: (limit: number): AssembledEvent[] => emitter.drain('s', 0, limit) };
}

const kinds = (ev: AssembledEvent[]): Array<[string, number]> => ev.map((e) => [e.kind, e.ts / H]);

describe('StepEmitter', () => {
  it('emits a bucket once the limit passes its end plus the lateness, not before', () => {
    const h = harness({ latenessMs: 0.5 * H });
    h.put(0, { a: [[10, 1]], b: [[20, 2]] });
    assert.deepEqual(h.drain(1.5 * H - 1), []);
    assert.deepEqual(h.drain(1.5 * H), [{ kind: 'step', stream: 's', slot: 0, ts: 0, values: { a: 1, b: 2 }, filled: [] }]);
  });

  it('in complete mode a bucket with every feature leaves before it closes, one without waits', () => {
    const h = harness({ emit: 'complete' });
    h.put(0, { a: [[10, 1]] });
    assert.deepEqual(h.drain(20), []);
    const full = harness({ emit: 'complete' });
    full.put(0, { a: [[10, 1]], b: [[20, 2]] });
    assert.deepEqual(kinds(full.drain(20)), [['step', 0]]);
  });

  it('combines each feature as its aggregation says', () => {
    const how: Aggregation[] = ['mean', 'sum', 'min', 'max', 'last'];
    const h = harness({ features: how, aggregate: (x) => x as Aggregation });
    const samples: Array<[number, number]> = [[30, 2], [10, 1], [20, 6]];
    h.put(0, Object.fromEntries(how.map((x) => [x, samples])));
    const [step] = h.drain(H);
    assert.deepEqual(step?.kind === 'step' && step.values, { mean: 3, sum: 9, min: 1, max: 6, last: 2 });
  });

  it('fills a missing feature from its last value up to maxFillSteps, and skips the step beyond', () => {
    const h = harness({ maxFillSteps: 1 });
    h.put(0, { a: [[10, 1]], b: [[20, 2]] });
    h.put(H, { a: [[H, 3]] });
    h.put(2 * H, { a: [[2 * H, 5]] });
    const ev = h.drain(3 * H);
    assert.deepEqual(ev[1], { kind: 'step', stream: 's', slot: 0, ts: H, values: { a: 3, b: 2 }, filled: ['b'] });
    assert.deepEqual(ev[2], { kind: 'skip', stream: 's', ts: 2 * H, missing: ['b'] });
  });

  it('fills an empty bucket while it can, jumps over the rest, and reports a gap longer than maxGapSteps before the next step', () => {
    const h = harness({ maxFillSteps: 1, maxGapSteps: 2 });
    h.put(0, { a: [[10, 1]], b: [[20, 2]] });
    h.put(5 * H, { a: [[5 * H, 1]], b: [[5 * H, 2]] });
    // Step 1 is filled; 2 to 4 are not (3 missed > 2).
    assert.deepEqual(kinds(h.drain(6 * H)), [['step', 0], ['step', 1], ['gap', 5], ['step', 5]]);
    const two = harness({ maxFillSteps: 1, maxGapSteps: 2 });
    two.put(0, { a: [[10, 1]], b: [[20, 2]] });
    two.put(4 * H, { a: [[4 * H, 1]], b: [[4 * H, 2]] });
    assert.deepEqual(kinds(two.drain(5 * H)), [['step', 0], ['step', 1], ['step', 4]], 'steps 2 and 3 missed: no more than maxGapSteps');
  });

  it("a closed bucket's values become the last ones, its samples go to the ring and its aggregates back to the pool", () => {
    const h = harness();
    h.put(0, { a: [[10, 1], [15, 3]], b: [[20, 2]] });
    h.drain(H);
    assert.deepEqual([h.lastOf(0), h.lastOf(1)], [[2, 0], [2, 0]]);
    assert.equal(h.recent.has(0, 0, 0, 15), true);
    assert.equal(h.recent.has(0, 0, 1, 20), true);
    assert.equal(h.open[0], undefined);
    assert.equal(h.pool.length, 1);
  });
});
