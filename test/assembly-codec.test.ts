import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, TidecastError } from '../src/errors.js';
import { Slab, SlotIndex } from '../src/slots.js';
import { AssemblyCodec } from '../src/streams/assembly-codec.js';
import { AGG, AssemblyLayout, EMITTED, HEAD, LAST, LAST_TS, N, NEXT, SUM, WATERMARK, type Bucket } from '../src/streams/assembly-layout.js';
import { RecentBuckets } from '../src/streams/recent-buckets.js';

const H = 3_600_000;

/** A codec over real tables, whose `fresh` clears a stream's slot as the assembler's does. */
function tables(features = ['a', 'b']) {
  const layout = new AssemblyLayout(features.length);
  const records = new Slab(layout.width, (n) => new Float64Array(n));
  const recent = new RecentBuckets(records, layout, features);
  const open: Array<Bucket[] | undefined> = [];
  const slots = new SlotIndex();
  let freshened = 0;
  const fresh = (stream: string): number => {
    freshened++;
    const slot = slots.take(stream);
    open[slot] = undefined;
    recent.forget(slot);
    records.fill(slot, NaN);
    records.chunk(slot)[records.offset(slot) + HEAD] = 0;
    return slot;
  };
  const codec = new AssemblyCodec({ features, index: new Map(features.map((f, i) => [f, i])), layout, records, recent, open, fresh });
  return { codec, layout, records, recent, open, slots, fresh, freshened: () => freshened };
}
type Tables = ReturnType<typeof tables>;

/** Stream s at step 3: steps 0 to 2 closed (in the ring), step 3 open with `samplesOfA` samples of a. */
function streamAtStep3(t: Tables, samplesOfA: number): number {
  const slot = t.fresh('s');
  const f = t.records.chunk(slot);
  const o = t.records.offset(slot);
  f.set([3 * H, 3 * H + 50, 2 * H], o + NEXT);
  f.set([7, 8, 2 * H, 2 * H], o + t.layout.lastValue);
  for (let k = 0; k < 3; k++) t.recent.remember(slot, k * H, (fi) => [k * H + 10 * (fi + 1)]);
  const agg = new Float64Array(2 * AGG);
  agg.set([samplesOfA, 5 * samplesOfA, 5, 5, 5, 3 * H + 50], 0);
  const multi = samplesOfA > 1 ? new Set(Array.from({ length: samplesOfA }, (_, k) => `0@${3 * H + 50 - k}`)) : null;
  t.open[slot] = [{ start: 3 * H, agg, count: samplesOfA, multi }];
  return slot;
}

/** What a stream's tables hold: its record, ring offsets, ring keys and open buckets. */
function held(t: Tables, slot: number): unknown {
  return { record: [...t.records.read(slot)], offsets: [...t.recent.offsets.read(slot)], keys: t.recent.keys(slot), open: t.open[slot] };
}

describe('AssemblyCodec', () => {
  it('exports binary while every sample is one per feature and step, JSON once a step holds several of one', () => {
    const t = tables();
    assert.ok(Buffer.isBuffer(t.codec.export(streamAtStep3(t, 1))));
    assert.equal(typeof t.codec.export(streamAtStep3(t, 2)), 'string');
  });

  it('exports JSON while the ring keeps a key the offsets cannot hold', () => {
    const t = tables();
    const slot = streamAtStep3(t, 1);
    t.recent.remember(slot, 4 * H, () => [4 * H + 0.5]);
    assert.equal(typeof t.codec.export(slot), 'string');
  });

  it('a binary export imports into fresh tables as it was', () => {
    const a = tables();
    const slot = streamAtStep3(a, 1);
    const b = tables();
    b.codec.import('s', a.codec.export(slot));
    assert.deepEqual(held(b, b.slots.get('s')!), held(a, slot));
  });

  it('a JSON export imports into fresh tables as it was', () => {
    const a = tables();
    const slot = streamAtStep3(a, 3);
    const b = tables();
    b.codec.import('s', a.codec.export(slot));
    assert.deepEqual(held(b, b.slots.get('s')!), held(a, slot));
  });

  it('the JSON form is the one earlier versions wrote: compact arrays, keys by feature name', () => {
    const t = tables();
    const snap = JSON.parse(t.codec.export(streamAtStep3(t, 2)) as string) as Record<string, unknown>;
    assert.deepEqual(snap, {
      n: 3 * H, w: 3 * H + 50, e: 2 * H,
      o: [[3 * H, [['a', 2, 10, 5, 5, 5, 3 * H + 50]], [`a@${3 * H + 50}`, `a@${3 * H + 49}`]]],
      r: [0, 1, 2].map((k) => [k * H, [`a@${k * H + 10}`, `b@${k * H + 20}`]]),
      l: [['a', 7, 2 * H], ['b', 8, 2 * H]],
    });
  });

  it('refuses a binary state made for other features, and leaves the stream as it was', () => {
    const a = tables();
    const saved = a.codec.export(streamAtStep3(a, 1));
    const b = tables(['a', 'c']);
    const slot = streamAtStep3(b, 1);
    const before = held(b, slot);
    const freshened = b.freshened();
    assert.throws(() => b.codec.import('s', saved), (e: unknown) => e instanceof TidecastError && e.code === ErrorCodes.INTERNAL && /other features/.test(e.message));
    assert.equal(b.freshened(), freshened, 'the stream was not cleared');
    assert.deepEqual(held(b, slot), before);
  });

  it('a JSON import drops what it has no feature for', () => {
    const t = tables();
    t.codec.import('s', JSON.stringify({ n: H, w: H, e: null, o: [[H, [['x', 1, 4, 4, 4, 4, H], ['b', 1, 2, 2, 2, 2, H + 1]], ['x@3600000', 'b@3600001']]], r: [[0, ['x@5', 'a@6']]], l: [['x', 1, 0]] }));
    const slot = t.slots.get('s')!;
    const agg = t.open[slot]![0]!.agg;
    assert.deepEqual([agg[N], agg[AGG + N], agg[AGG + SUM], agg[AGG + LAST], agg[AGG + LAST_TS]], [0, 1, 2, 2, H + 1]);
    assert.deepEqual(t.recent.keys(slot), [[0, ['a@6']]]);
    const f = t.records.chunk(slot);
    const o = t.records.offset(slot);
    assert.deepEqual([f[o + NEXT], f[o + WATERMARK], f[o + EMITTED], f[o + t.layout.lastBucket], f[o + t.layout.lastBucket + 1]], [H, H, NaN, NaN, NaN]);
  });
});
