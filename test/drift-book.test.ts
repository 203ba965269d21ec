import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DriftBook, heldOutMae, type DriftSettings } from '../src/daemon/drift-book.js';
import { ScoreBook } from '../src/daemon/score-book.js';
import type { CardCalibration, ModelCard } from '../src/inference/card.js';
import { prng } from './support/prng.js';

const GRID: Array<[number, number]> = [[0.025, -2], [0.1, -1.2], [0.5, 0], [0.9, 1.3], [0.975, 2.1]];
const SETTINGS: DriftSettings = { enabled: true, allowance: 0.75, threshold: 15, coverageLevel: 0.8, coverageBand: 0.25, coverageSteps: 30 };
/** Two horizons of one target, held-out MAE 1 and 2. */
const calibration: CardCalibration = { residuals: { 'temp@1': { mae: 1, quantiles: GRID }, 'temp@2': { mae: 2, quantiles: GRID.map(([p, v]) => [p, 2 * v] as [number, number]) } } };
const CELLS = [{ key: 'temp@1', target: 0 }, { key: 'temp@2', target: 0 }];

function book(settings: DriftSettings = SETTINGS): DriftBook {
  const b = new DriftBook(settings);
  b.layout(CELLS, ['temp'], calibration);
  b.seed(0);
  return b;
}

/** One step scoring both horizons with residuals r (horizon 1) and 2r (horizon 2): z = r at both. */
function step(b: DriftBook, r: number): void {
  b.observe(0, r);
  b.observe(1, 2 * r);
  b.close(0);
}

describe('drift detection (DriftBook)', () => {
  it('catches a lasting bias b in about h / (b − k) steps, upwards or downwards, and clears once the error returns', () => {
    for (const sign of [1, -1]) {
      const b = book();
      let at = -1;
      // A bias of 1.15 held-out MAEs (inside the held-out 80% interval: no miss): 0.4 a step, past h = 15 at the 38th.
      for (let i = 0; i < 60 && at < 0; i++) {
        step(b, sign * 1.15);
        if (b.changes.length > 0) at = i + 1;
      }
      assert.equal(at, 38, `sign ${sign}`);
      const c = b.changes[0]!;
      assert.deepEqual({ ...c, cusum: Math.round(c.cusum * 10) / 10 }, { target: 'temp', on: true, reasons: ['bias'], direction: sign > 0 ? 'up' : 'down', cusum: 15.2, missRate: c.missRate });
      assert.ok(Math.abs(c.missRate - 0.2 * (29 / 30) ** 38) < 1e-6, 'no miss');
      assert.deepEqual(b.onCounts(), [['temp', 1]]);
      b.changes.length = 0;
      // The sum stops at 2h = 30; errors back at 0 take it down by k = 0.75 a step, under h/2 after (30 − 7.5) / 0.75 = 30 steps.
      for (let i = 0; i < 80; i++) step(b, sign * 1.15);
      let off = -1;
      for (let i = 0; i < 60 && off < 0; i++) {
        step(b, 0);
        if (b.changes.length > 0) off = i + 1;
      }
      assert.equal(off, 30);
      assert.equal(b.changes[0]!.on, false);
      assert.deepEqual(b.changes[0]!.reasons, ['bias'], 'what had held it');
      assert.deepEqual(b.onCounts(), [['temp', 0]]);
    }
  });

  it('lets noise drawn from the held-out residuals run 100,000 steps without a change', () => {
    const b = book();
    const rand = prng(11);
    // A residual drawn from the card's quantiles (linear between the points), its MAE about 1.
    const draw = (): number => {
      const p = 0.025 + rand() * 0.95;
      let i = 1;
      while (GRID[i]![0] < p) i++;
      const [p0, v0] = GRID[i - 1]!;
      const [p1, v1] = GRID[i]!;
      return v0 + ((v1 - v0) * (p - p0)) / (p1 - p0);
    };
    for (let i = 0; i < 100_000; i++) {
      b.observe(0, draw());
      b.observe(1, 2 * draw());
      b.close(0);
    }
    assert.deepEqual(b.changes, []);
    const [s] = b.status(0);
    assert.ok(s!.missRate < 0.45, `miss rate ${s!.missRate}`);
  });

  it('turns on for coverage when errors grow wider without a bias, and off once they narrow', () => {
    const b = book();
    // ±3 held-out MAEs in turn: no bias, every forecast outside the held-out 80% interval.
    let i = 0;
    while (b.changes.length === 0 && i < 100) step(b, i++ % 2 === 0 ? 3 : -3);
    // The miss rate climbs from 0.2 by 1/30 of the gap to 1 a step: 1 − 0.8 (29/30)^n passes 0.45 at n = 12.
    assert.equal(i, 12);
    assert.deepEqual(b.changes[0]!.reasons, ['coverage']);
    b.changes.length = 0;
    while (b.changes.length === 0 && i < 200) step(b, (i++ % 2 === 0 ? 1 : -1) * 0.1);
    assert.equal(b.changes[0]!.on, false);
    assert.ok(b.status(0)[0]!.missRate <= 0.325 + 1e-6);
  });

  it('scores each target on its own, and a card without MAE uses the mean |residual| of its quantiles', () => {
    const two = new DriftBook(SETTINGS);
    two.layout([{ key: 'a@1', target: 0 }, { key: 'b@1', target: 1 }], ['a', 'b'], { residuals: { 'a@1': { mae: 1, quantiles: GRID }, 'b@1': { mae: 1, quantiles: GRID } } });
    two.seed(3);
    for (let i = 0; i < 20; i++) {
      two.observe(0, 2);
      two.observe(1, 0);
      two.close(3);
    }
    assert.deepEqual(two.changes.map((c) => c.target), ['a']);
    assert.deepEqual(two.status(3).map((s) => s.on), [true, false]);
    const mae = heldOutMae({ quantiles: [[0.25, -1], [0.75, 1]] });
    // Flat beyond the ends: |r| is 1 outside (0.25, 0.75) and 2|p − 0.5| × 2 inside; the mean is 0.5 + 0.25 = 0.75.
    assert.ok(Math.abs(mae - 0.75) < 1e-3, `${mae}`);
    const off = new DriftBook({ ...SETTINGS, enabled: false });
    off.layout(CELLS, ['temp'], calibration);
    assert.equal(off.active, false);
    assert.equal(off.width, 0);
  });

  it('ignores a saved state that is not one of its own (another layout\'s bytes), and the stream starts over', () => {
    const b = book();
    b.importSlot(0, new Float32Array([99, 0, 0.2, 0]));
    assert.deepEqual(b.status(0)[0], { target: 'temp', on: false, reasons: [], up: 0, down: 0, missRate: Math.fround(0.2) });
    b.importSlot(0, new Float32Array([20, 0, 0.2, 1]));
    assert.equal(b.status(0)[0]!.on, true);
    assert.deepEqual(b.onCounts(), [['temp', 1]]);
    b.release(0);
    assert.deepEqual(b.onCounts(), [['temp', 0]], 'a released stream no longer counts');
  });
});

describe('score book with drift tests', () => {
  const card: ModelCard = {
    name: 'm',
    mode: 'stateful',
    stepSeconds: 60,
    features: [{ name: 'temp' }],
    targets: [{ name: 'temp' }],
    horizons: [1],
    calibration: { residuals: { 'temp@1': { mae: 1, quantiles: GRID } } },
  };
  const intervals = { levels: [0.8], learningRate: 0.5 };

  /** A stream whose actuals run 3 above its forecasts for `n` steps from `t`; returns the next step's time. */
  function biased(b: ScoreBook, n: number, t = 0): number {
    for (let i = 0; i < n; i++, t += 60_000) b.step('s', t, { temp: 13 }, [], [10]);
    return t;
  }

  it('runs the tests on the residuals it scores, and checkpoints their state with the open forecasts and intervals', () => {
    const b = new ScoreBook(card, undefined, intervals, SETTINGS);
    // z = 3 a step: (3 − 0.75) × 7 = 15.75 > 15 at the 7th scored step (the first step scores nothing).
    let t = biased(b, 7);
    assert.equal(b.drift.changes.length, 0);
    t = biased(b, 1, t);
    assert.equal(b.drift.changes.length, 1);
    assert.equal(b.drift.changes[0]!.direction, 'up');
    b.drift.changes.length = 0;
    const saved = b.exportStream('s')!;
    const again = new ScoreBook(card, undefined, intervals, SETTINGS);
    again.importStream('s', saved);
    assert.deepEqual(again.drift.onCounts(), [['temp', 1]]);
    assert.deepEqual(again.drift.status(0), b.drift.status(0));
    const out = [new Float64Array(2), new Float64Array(2)];
    b.bounds('s', [10], out[0]!, 0);
    again.bounds('s', [10], out[1]!, 0);
    assert.deepEqual(Array.from(out[1]!), Array.from(out[0]!), 'intervals restored beside them');
    // A checkpoint from before the drift tests (open forecasts and intervals): read, the tests start over.
    const old = new ScoreBook(card, undefined, intervals, SETTINGS);
    old.importStream('s', saved.subarray(0, saved.length - 4 * 4));
    assert.deepEqual(old.drift.onCounts(), [['temp', 0]]);
    old.bounds('s', [10], out[1]!, 0);
    assert.deepEqual(Array.from(out[1]!), Array.from(out[0]!), 'its intervals read all the same');
    const scored: unknown[] = [];
    old.step('s', t, { temp: 13 }, [], null, scored as never);
    assert.equal(scored.length, 1, 'its open forecast came back');
  });

  it('a stream released while in drift leaves the count; a recalibrated card starts every stream over', () => {
    const b = new ScoreBook(card, undefined, intervals, SETTINGS);
    biased(b, 10);
    assert.deepEqual(b.drift.onCounts(), [['temp', 1]]);
    b.release('s');
    assert.deepEqual(b.drift.onCounts(), [['temp', 0]]);
    biased(b, 10);
    assert.deepEqual(b.drift.onCounts(), [['temp', 1]]);
    b.use({ ...card, calibration: { residuals: { 'temp@1': { mae: 2, quantiles: GRID } } } });
    assert.deepEqual(b.drift.onCounts(), [['temp', 0]]);
    assert.equal(b.drift.status(0)[0]!.up, 0);
  });
});
