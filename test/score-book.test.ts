import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelCard } from '../src/inference/card.js';
import { ScoreBook, type ScoredRow } from '../src/daemon/score-book.js';

const DAY = 86_400_000;
/** A forecaster of x at horizons 1 and 2 with a classification target beside it (not scored). */
const card = {
  name: 'm',
  mode: 'stateful',
  stepSeconds: 86_400,
  features: [{ name: 'x' }, { name: 'y' }],
  targets: [{ name: 'x' }, { name: 'c', labels: ['a', 'b'] }],
  horizons: [1, 2],
  outputLayout: 'horizon-major',
} as unknown as ModelCard;
/** Cells in order: x@1, c@1, x@2, c@2. */
const forecast = (x1: number, x2: number): number[] => [x1, 0.9, x2, 0.6];

/** Day 2's step scores the same in both books (two forecasts target it). */
function assertSameNextStep(a: ScoreBook, b: ScoreBook): void {
  const fromA: ScoredRow[] = [];
  const fromB: ScoredRow[] = [];
  a.step('s', 2 * DAY, { x: 6, y: 0 }, [], null, fromA);
  b.step('s', 2 * DAY, { x: 6, y: 0 }, [], null, fromB);
  assert.equal(fromA.length, 2);
  assert.deepEqual(fromB, fromA);
}

describe('ScoreBook (online scoring in memory)', () => {
  it('scores each forecast when its target step arrives, against the actual and persistence, skipping forward-filled actuals', () => {
    const book = new ScoreBook(card);
    const out: ScoredRow[] = [];
    book.step('s', 0, { x: 10, y: 0 }, [], forecast(11, 12), out);
    book.step('s', DAY, { x: 13, y: 0 }, [], forecast(14, 15), out);
    assert.deepEqual(out, [{ model: 'm', horizon: 1, target: 'x', predicted: 11, actual: 13, persistence: 10 }]);
    out.length = 0;
    book.step('s', 2 * DAY, { x: 16, y: 0 }, ['x'], forecast(17, 18), out);
    assert.equal(out.length, 0, 'x was forward-filled at day 2: neither forecast of it is scored');
    book.step('s', 3 * DAY, { x: 20, y: 0 }, [], null, out);
    // Day 3 is the target of day 2's 1-step forecast (17) and day 1's 2-step forecast (15); day 2's own step issued nothing new here.
    assert.deepEqual(out.map((r) => [r.horizon, r.predicted, r.actual, r.persistence]), [[1, 17, 20, 16], [2, 15, 20, 13]]);
    out.length = 0;
    book.step('s', 5 * DAY, { x: 1, y: 0 }, [], null, out);
    assert.equal(out.length, 0, 'day 4 issued nothing (no step): nothing targets day 5');
  });

  it('sums errors per bucket for the checkpoint, and starts over once they are stored', () => {
    const book = new ScoreBook(card);
    // Daily steps: a bucket is 7 days. Predict x + 1 every day; the actual is x.
    for (let d = 0; d < 10; d++) book.step('s', d * DAY, { x: d, y: 0 }, [], forecast(d + 1 + 1, d + 2 + 1), []);
    const deltas = book.deltas();
    const h1 = deltas.filter((a) => a.horizon === 1);
    assert.equal(h1.reduce((n, a) => n + a.n, 0), 9, 'nine 1-step forecasts scored (days 1..9)');
    for (const a of h1) {
      assert.ok(Math.abs(a.sumAbs - a.n) < 1e-12 && Math.abs(a.sumErr - a.n) < 1e-12, 'each one 1 too high');
      assert.equal(a.sumPAbs, a.n, 'persistence is 1 off each day too');
      assert.equal(a.bucket % (7 * DAY), 0);
    }
    assert.equal(new Set(h1.map((a) => a.bucket)).size, 2, 'days 1..9 fall in two 7-day buckets');
    assert.deepEqual(book.deltasOf('s'), deltas, 'one stream: its own deltas are all of them');
    assert.deepEqual(book.take(), deltas, 'a checkpoint takes them all');
    assert.deepEqual(book.deltas(), [], 'taken: the sums start over');
    assert.deepEqual(book.deltasOf('s'), deltas, 'in flight: the dashboard still counts them');
    book.unstored();
    assert.deepEqual(book.take(), deltas, 'a failed checkpoint gives them back to the next one');
    book.stored();
    assert.deepEqual(book.deltas(), []);
    assert.deepEqual(book.deltasOf('s'), [], 'stored: no longer in memory');
    book.step('s', 10 * DAY, { x: 10, y: 0 }, [], null, []);
    assert.deepEqual(book.deltas().map((a) => [a.horizon, a.n]), [[1, 1], [2, 1]]);
  });

  it('holds sums only for the streams scored since their sums were taken, and reuses the freed ones without mixing streams', () => {
    const book = new ScoreBook(card);
    for (const s of ['a', 'b', 'c']) book.step(s, 0, { x: 1, y: 0 }, [], forecast(2, 3), []);
    assert.equal(book.summing, 0, 'nothing scored yet: no sums held');
    book.step('a', DAY, { x: 4, y: 0 }, [], null, []);
    book.step('b', DAY, { x: 5, y: 0 }, [], null, []);
    assert.equal(book.summing, 2);
    assert.deepEqual(book.take(['a']).map((d) => [d.stream, d.n, d.sumAbs]), [['a', 1, 2]]);
    book.stored(['a']);
    assert.equal(book.summing, 1, "a's sums were taken: its record is free");
    book.step('c', DAY, { x: 7, y: 0 }, [], null, []);
    assert.equal(book.summing, 2, "c took a's freed record");
    assert.deepEqual(book.deltas().map((d) => [d.stream, d.n, d.sumAbs]), [['b', 1, 3], ['c', 1, 5]], 'each stream its own sums, none of a\'s');
    book.release('b');
    assert.equal(book.summing, 1, 'an evicted stream gives its record back');
    assert.deepEqual(book.take().map((d) => [d.stream, d.sumAbs]).sort(), [['b', 3], ['c', 5]], "b's sums wait for the checkpoint all the same");
    assert.equal(book.summing, 0);
  });

  it('checkpoints a stream\'s open forecasts: restored into a new book, the next step scores as if nothing happened', () => {
    const a = new ScoreBook(card);
    const b = new ScoreBook(card);
    a.step('s', 0, { x: 1, y: 0 }, [], forecast(2, 3), []);
    a.step('s', DAY, { x: 2, y: 0 }, [], forecast(4, 5), []);
    b.importStream('s', a.exportStream('s'));
    assertSameNextStep(a, b);
    const other = new ScoreBook({ ...card, horizons: [1] } as ModelCard);
    other.importStream('s', a.exportStream('s'));
    const none: ScoredRow[] = [];
    other.step('s', 3 * DAY, { x: 1, y: 0 }, [], null, none);
    assert.deepEqual(none, [], 'a ring saved under another layout is not taken');
  });

  it('restores open forecasts from a checkpoint written before the predicted cells moved to float32', () => {
    const a = new ScoreBook(card);
    a.step('s', 0, { x: 1, y: 0 }, [], forecast(2, 3), []);
    a.step('s', DAY, { x: 2, y: 0 }, [], forecast(4, 5), []);
    // The old layout: per ring entry (by issue day modulo 2) [issuedAt, persistence of x, x@1, x@2], all float64.
    const legacy = Buffer.from(new Float64Array([0, 1, 2, 3, DAY, 2, 4, 5]).buffer);
    assert.notEqual(legacy.byteLength, a.exportStream('s')!.byteLength, 'the new layout is smaller');
    const b = new ScoreBook(card);
    b.importStream('s', legacy);
    assertSameNextStep(a, b);
  });

  it('a hot reload with another layout keeps the sums scored so far and drops the open forecasts', () => {
    const book = new ScoreBook(card);
    book.step('s', 0, { x: 1, y: 0 }, [], forecast(2, 3), []);
    book.step('s', DAY, { x: 2, y: 0 }, [], forecast(4, 5), []);
    book.use({ ...card, horizons: [1, 3] } as ModelCard);
    assert.deepEqual(book.deltas().map((a) => [a.horizon, a.n]), [[1, 1]], 'the sum of the forecast scored before the reload');
    const out: ScoredRow[] = [];
    book.step('s', 2 * DAY, { x: 3, y: 0 }, [], null, out);
    assert.deepEqual(out, [], 'forecasts issued under the old layout are not scored under the new one');
  });
});
