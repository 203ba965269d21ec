import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorSums } from '../src/daemon/error-sums.js';
import { SlotView } from '../src/slots.js';
import type { AccuracyDelta } from '../src/store/rows.js';

const CELLS = [{ horizon: 1, target: 'x' }, { horizon: 2, target: 'x' }];

/** Sums over CELLS for streams held in their own slot view, as a score book holds them. */
function harness() {
  const sums = new ErrorSums('m');
  sums.layout(CELLS);
  const slots = new SlotView();
  const slotOf = (stream: string): number => slots.hold(stream, (slot) => sums.clearSlot(slot))!;
  /** Cell c of a stream scored: the forecast `err` off, persistence `pErr`, at target time ts of `bucket`. */
  const add = (stream: string, bucket: number, c: number, err: number, pErr: number, ts = bucket): void => sums.add(stream, slotOf(stream), bucket, c, err, pErr, ts);
  return { sums, slots, add };
}

/** Deltas as [stream, horizon, bucket, n], sorted. */
const brief = (deltas: AccuracyDelta[]): Array<[string, number, number, number]> =>
  deltas.map((d): [string, number, number, number] => [d.stream, d.horizon, d.bucket, d.n]).sort((a, b) => (a.join() < b.join() ? -1 : 1));

describe('ErrorSums', () => {
  it("sums a cell's errors within a bucket: count, |e|, e², e, |persistence error| and the last target time", () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 2, -1, 10);
    add('s', 0, 0, -3, 4, 5);
    assert.deepEqual(sums.deltas(slots).map((d) => ({ ...d })), [{ stream: 's', model: 'm', horizon: 1, target: 'x', bucket: 0, n: 2, sumAbs: 5, sumSq: 13, sumErr: -1, sumPAbs: 5, lastTargetTime: 10 }]);
  });

  it('a stream holds a sums record only from its first error until its sums are taken, and records are reused', () => {
    const { sums, slots, add } = harness();
    assert.equal(sums.summing, 0);
    add('s', 0, 0, 1, 1);
    assert.equal(sums.summing, 1);
    sums.take(slots);
    assert.equal(sums.summing, 0);
    add('t', 0, 0, 1, 1);
    assert.equal(sums.summing, 1);
  });

  it("a new bucket keeps the last one's sums as closed deltas, in the same record", () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 1, 1);
    add('s', 100, 1, 1, 1);
    assert.deepEqual(brief(sums.deltas(slots)), [['s', 1, 0, 1], ['s', 2, 100, 1]]);
    assert.equal(sums.summing, 1);
  });

  it('take hands over the sums of the streams asked for (or all) and starts them over', () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 1, 1);
    add('t', 0, 0, 1, 1);
    assert.deepEqual(brief(sums.take(slots, ['s'])), [['s', 1, 0, 1]]);
    assert.deepEqual(brief(sums.deltas(slots)), [['t', 1, 0, 1]]);
    assert.deepEqual(brief(sums.take(slots)), [['t', 1, 0, 1]]);
    assert.deepEqual(sums.take(slots), []);
  });

  it("taken sums stay in a stream's deltasOf until stored", () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 1, 1);
    sums.take(slots);
    add('s', 0, 0, 1, 1);
    assert.deepEqual(brief(sums.deltasOf('s', slots.get('s'))), [['s', 1, 0, 1], ['s', 1, 0, 1]], 'in flight, and the current sums');
    sums.stored(['s']);
    assert.deepEqual(brief(sums.deltasOf('s', slots.get('s'))), [['s', 1, 0, 1]]);
  });

  it('unstored gives the taken sums back to the next take', () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 1, 1);
    sums.take(slots);
    sums.unstored();
    assert.deepEqual(brief(sums.take(slots)), [['s', 1, 0, 1]]);
  });

  it("a stream that leaves keeps its sums as closed deltas and frees its record", () => {
    const { sums, slots, add } = harness();
    add('s', 0, 0, 1, 1);
    sums.release('s', slots.get('s')!);
    slots.release('s');
    assert.equal(sums.summing, 0);
    assert.deepEqual(brief(sums.deltasOf('s', undefined)), [['s', 1, 0, 1]]);
    assert.deepEqual(brief(sums.take(slots)), [['s', 1, 0, 1]]);
  });

  it('closeAll then a new layout: the old sums survive as closed deltas of the old cells', () => {
    const { sums, slots, add } = harness();
    add('s', 0, 1, 1, 1);
    sums.closeAll(slots);
    sums.layout([{ horizon: 3, target: 'y' }]);
    slots.clear();
    add('s', 0, 0, 1, 1);
    assert.deepEqual(sums.deltas(slots).map((d) => [d.horizon, d.target]).sort(), [[2, 'x'], [3, 'y']]);
  });
});
