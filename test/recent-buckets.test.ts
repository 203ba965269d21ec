import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slab } from '../src/slots.js';
import { AGG, AssemblyLayout, HEAD, LAST_TS, N, RECENT_BUCKETS } from '../src/streams/assembly-layout.js';
import { RecentBuckets } from '../src/streams/recent-buckets.js';

const FEATURES = ['a', 'b'];
const S = 1000;

/** A ring for FEATURES over a record slab, slot 0 as a stream that just joined holds it (no bucket remembered). */
function ring(): { recent: RecentBuckets; records: Slab<Float64Array> } {
  const layout = new AssemblyLayout(FEATURES.length);
  const records = new Slab(layout.width, (n) => new Float64Array(n));
  records.fill(0, NaN);
  records.chunk(0)[records.offset(0) + HEAD] = 0;
  return { recent: new RecentBuckets(records, layout, FEATURES), records };
}

/** A closed bucket's aggregates with one sample per feature present (`times[fi]`: its event time, undefined: none). */
function singles(...times: Array<number | undefined>): Float64Array {
  const a = new Float64Array(FEATURES.length * AGG);
  times.forEach((ts, fi) => {
    if (ts === undefined) return;
    a[fi * AGG + N] = 1;
    a[fi * AGG + LAST_TS] = ts;
  });
  return a;
}

describe('RecentBuckets', () => {
  it('knows the samples a remembered bucket took, and no other time or feature', () => {
    const { recent } = ring();
    recent.remember(0, S, (fi) => (fi === 0 ? [S + 10] : []));
    assert.equal(recent.has(0, S, 0, S + 10), true);
    assert.equal(recent.has(0, S, 0, S + 11), false, 'another time of the same feature');
    assert.equal(recent.has(0, S, 1, S + 10), false, 'b had no sample in that bucket');
    assert.equal(recent.has(0, 2 * S, 0, 2 * S + 10), false, 'a bucket never remembered');
  });

  it(`remembers the last ${RECENT_BUCKETS} buckets: the oldest leaves when another closes`, () => {
    const { recent } = ring();
    for (let k = 0; k <= RECENT_BUCKETS; k++) recent.remember(0, k * S, () => [k * S]);
    assert.equal(recent.has(0, 0, 0, 0), false, 'bucket 0 was overwritten');
    for (let k = 1; k <= RECENT_BUCKETS; k++) assert.equal(recent.has(0, k * S, 0, k * S), true, `bucket ${k}`);
  });

  it('a bucket of lone whole-ms samples is remembered as offsets only (the ring stays keyless)', () => {
    const { recent, records } = ring();
    recent.rememberSingles(0, records.chunk(0), records.offset(0), S, singles(S + 5, undefined));
    assert.equal(recent.keyless(0), true);
    assert.equal(recent.has(0, S, 0, S + 5), true);
    assert.equal(recent.has(0, S, 1, S + 5), false);
  });

  it('a lone sample a fraction of a ms from the start keeps its exact key, until its bucket leaves the ring', () => {
    const { recent, records } = ring();
    recent.rememberSingles(0, records.chunk(0), records.offset(0), S, singles(S + 0.25, S + 7));
    assert.equal(recent.keyless(0), false);
    assert.equal(recent.has(0, S, 0, S + 0.25), true);
    assert.equal(recent.has(0, S, 0, S), false);
    assert.equal(recent.has(0, S, 1, S + 7), true, 'the whole-ms sample beside it is known too');
    // While the ring holds keys, later buckets go through `remember` (as the emitter does).
    for (let k = 2; k <= RECENT_BUCKETS + 1; k++) recent.remember(0, k * S, (fi) => (fi === 0 ? [k * S] : []));
    assert.equal(recent.keyless(0), true);
  });

  it('several samples of one feature in a bucket: each is known, nothing between them', () => {
    const { recent } = ring();
    recent.remember(0, S, (fi) => (fi === 0 ? [S + 10, S + 20] : []));
    assert.equal(recent.keyless(0), false);
    assert.equal(recent.has(0, S, 0, S + 10), true);
    assert.equal(recent.has(0, S, 0, S + 20), true);
    assert.equal(recent.has(0, S, 0, S + 15), false);
  });

  it('forget drops a released stream\'s keys', () => {
    const { recent } = ring();
    recent.remember(0, S, () => [S + 1, S + 2]);
    recent.forget(0);
    assert.equal(recent.keyless(0), true);
  });

  it('lists the remembered buckets oldest first with their keys by feature name', () => {
    const { recent } = ring();
    for (let k = 0; k <= RECENT_BUCKETS; k++) recent.remember(0, k * S, (fi) => (fi === 0 ? [k * S + 1, k * S + 2] : [k * S + 3]));
    const keys = recent.keys(0);
    assert.deepEqual(keys.map(([start]) => start / S), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(keys[0], [S, [`a@${S + 1}`, `a@${S + 2}`, `b@${S + 3}`]]);
  });
});
