import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { boundScale, IntervalBook, residualQuantile } from '../src/daemon/interval-book.js';
import { ScoreBook } from '../src/daemon/score-book.js';
import { parseCard, type CardCalibration, type ModelCard } from '../src/inference/card.js';
import { ErrorCodes } from '../src/errors.js';
import { prng } from './support/prng.js';

const GRID: Array<[number, number]> = [[0.025, -2], [0.1, -1.2], [0.5, 0], [0.9, 1.3], [0.975, 2.1]];
const calibration = (quantiles: Array<[number, number]> = GRID, mae = 1): CardCalibration => ({ residuals: { 'temp@1': { mae, quantiles } } });

/** Float32 state: equal within 1e-5. */
/** Bounds come rounded to their cell's scale (100 for these cards): within half a unit of what they round. */
const HALF_UNIT = 0.005 + 1e-9;

function near(got: ArrayLike<number>, want: readonly number[], what: string, tolerance = 1e-5): void {
  assert.equal(got.length, want.length);
  Array.from(got).forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < tolerance, `${what}, bound ${i}: ${x} vs ${want[i]}`));
}

/** A standard normal draw from a PRNG (Box–Muller). */
function normal(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

describe('prediction intervals (IntervalBook)', () => {
  it('reads a quantile between the card\'s points, flat beyond them', () => {
    assert.equal(residualQuantile(GRID, 0.5), 0);
    assert.ok(Math.abs(residualQuantile(GRID, 0.3) - -0.6) < 1e-12);
    assert.equal(residualQuantile(GRID, 0.001), -2);
    assert.equal(residualQuantile(GRID, 0.999), 2.1);
  });

  it('starts a stream at the card\'s quantiles, and moves a bound up by η(1 − tail) on a miss, down by η·tail on a hit', () => {
    const book = new IntervalBook({ levels: [0.95, 0.8], learningRate: 0.5 });
    book.layout([{ key: 'temp@1' }], calibration());
    assert.ok(book.active);
    assert.deepEqual(book.levels, [0.8, 0.95], 'ascending');
    book.seed(0);
    const out = new Float64Array(4);
    book.bounds(0, [10], [0], out, 0);
    near(out, [8.8, 11.3, 8, 12.1], 'seeds');
    // η = 0.5 × the seed interval's half-width: 0.625 at 80%, 1.025 at 95%. A residual of +3 misses both uppers and is inside both lowers.
    book.observe(0, 0, 3);
    book.bounds(0, [10], [0], out, 0);
    const want = [-1.2 + 0.625 * 0.1, 1.3 + 0.625 * 0.9, -2 + 1.025 * 0.025, 2.1 + 1.025 * 0.975].map((q) => 10 + q);
    near(out, want, 'after a miss above', HALF_UNIT);
    // Rounded to hundredths (the 80% half-width is 1.25): exactly the integers the store keeps, over 100.
    assert.equal(book.scale(0), 100);
    for (const x of out) assert.equal(Math.round(x * 100) / 100, x);
  });

  it('rounds bounds to a power of ten at most 1% of the narrowest half-width', () => {
    assert.equal(boundScale(1.25), 100);
    assert.equal(boundScale(9.99), 100);
    assert.equal(boundScale(10), 10);
    assert.equal(boundScale(0.05), 10_000);
    assert.equal(boundScale(2500), 1, 'never coarser than units');
    assert.equal(boundScale(0), 1e9);
    assert.equal(boundScale(1e-12), 1e9, 'never finer than 1e-9');
  });

  it('keeps the wider level\'s interval around the narrower one\'s, and never inverts', () => {
    const book = new IntervalBook({ levels: [0.8, 0.95], learningRate: 4 });
    // Seeds where the levels touch: big steps would cross them without the clamp.
    book.layout([{ key: 'temp@1' }], calibration([[0.025, -1], [0.1, -1], [0.9, 1], [0.975, 1]]));
    book.seed(3);
    const rand = prng(7);
    const out = new Float64Array(4);
    for (let i = 0; i < 2000; i++) {
      book.observe(3, 0, normal(rand) * (i < 1000 ? 0.1 : 5));
      book.bounds(3, [0], [0], out, 0);
      assert.ok(out[2]! <= out[0]! && out[0]! <= out[1]! && out[1]! <= out[3]!, `step ${i}: ${Array.from(out).join(', ')}`);
    }
  });

  it('reaches the nominal coverage on a stream whose errors are twice the card\'s, and follows a change in scale', () => {
    const book = new IntervalBook({ levels: [0.8, 0.95], learningRate: 0.5 });
    // The card's residuals: a standard normal's quantiles.
    const z: Array<[number, number]> = [[0.025, -1.96], [0.1, -1.2816], [0.5, 0], [0.9, 1.2816], [0.975, 1.96]];
    book.layout([{ key: 'temp@1' }], calibration(z, 0.8));
    book.seed(0);
    const rand = prng(11);
    const out = new Float64Array(4);
    /** n residuals of N(0, σ²): the coverage of each level, and the 80% upper bound's mean over the last half. */
    const run = (n: number, sigma: number): { coverage: number[]; upper: number } => {
      const covered = [0, 0];
      let upper = 0;
      for (let i = 0; i < n; i++) {
        const r = normal(rand) * sigma;
        book.bounds(0, [0], [0], out, 0);
        if (out[0]! <= r && r <= out[1]!) covered[0]!++;
        if (out[2]! <= r && r <= out[3]!) covered[1]!++;
        if (i >= n / 2) upper += out[1]! / (n / 2);
        book.observe(0, 0, r);
      }
      return { coverage: covered.map((c) => c / n), upper };
    };
    const first = run(4000, 2);
    assert.ok(Math.abs(first.coverage[0]! - 0.8) < 0.02 && Math.abs(first.coverage[1]! - 0.95) < 0.015, `σ 2: coverage ${first.coverage.join(', ')}`);
    assert.ok(Math.abs(first.upper - 2 * 1.2816) < 0.3, `σ 2: the 80% upper bound near 2.56 on average, at ${first.upper}`);
    const second = run(4000, 0.5);
    assert.ok(Math.abs(second.coverage[0]! - 0.8) < 0.03 && Math.abs(second.coverage[1]! - 0.95) < 0.02, `σ 0.5: coverage ${second.coverage.join(', ')}`);
    assert.ok(Math.abs(second.upper - 0.5 * 1.2816) < 0.15, `σ 0.5: narrower again, the 80% upper bound at ${second.upper} on average`);
  });

  it('gives no intervals without levels, or for a card not calibrated for every cell', () => {
    const none = new IntervalBook({ levels: [], learningRate: 0.5 });
    none.layout([{ key: 'temp@1' }], calibration());
    assert.equal(none.active, false);
    const partial = new IntervalBook({ levels: [0.8], learningRate: 0.5 });
    partial.layout([{ key: 'temp@1' }, { key: 'temp@2' }], calibration());
    assert.equal(partial.active, false);
    assert.equal(partial.width, 0);
  });
});

describe('a card\'s calibration', () => {
  const text = (residuals: unknown): string =>
    JSON.stringify({ name: 'm', mode: 'stateful', stepSeconds: 60, features: [{ name: 'temp' }], targets: [{ name: 'temp' }, { name: 'state', labels: ['a', 'b'] }], horizons: [1], calibration: { residuals } });

  it('is refused for a cell the card does not have (a classification target has none), or with quantiles out of order', () => {
    assert.doesNotThrow(() => parseCard(text({ 'temp@1': { quantiles: GRID } }), 'c.json'));
    assert.throws(() => parseCard(text({ 'temp@2': { quantiles: GRID }, 'state@1': { quantiles: GRID } }), 'c.json'), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.CARD_INVALID);
      assert.match(err.message, /\/calibration\/residuals\/temp@2: not a numeric target@horizon of this card \(temp@1\)/);
      assert.match(err.message, /\/calibration\/residuals\/state@1: not a numeric target@horizon/);
      return true;
    });
    assert.throws(() => parseCard(text({ 'temp@1': { quantiles: [[0.1, 1], [0.05, 2]] } }), 'c.json'), /quantiles\/1: probabilities must increase/);
    assert.throws(() => parseCard(text({ 'temp@1': { quantiles: [[0.1, 1], [0.9, 0.5]] } }), 'c.json'), /residuals not decrease/);
    assert.throws(() => parseCard(text({ 'temp@1': { quantiles: [[0, 1], [0.9, 2]] } }), 'c.json'), /probability 0 is not in \(0, 1\)/);
  });
});

describe('score book with intervals', () => {
  const card: ModelCard = {
    name: 'm',
    mode: 'stateful',
    stepSeconds: 60,
    features: [{ name: 'temp' }],
    targets: [{ name: 'temp' }],
    horizons: [1],
    calibration: calibration(),
  };

  it('moves a stream\'s intervals by the residuals it scores, and checkpoints them with its open forecasts', () => {
    const book = new ScoreBook(card, undefined, { levels: [0.8], learningRate: 0.5 });
    const out = new Float64Array(2);
    book.step('s', 0, { temp: 10 }, [], [10]);
    book.bounds('s', [10], out, 0);
    near(out, [8.8, 11.3], 'the seeds before any residual');
    // The forecast 10 meets an actual of 15: a miss above.
    book.step('s', 60_000, { temp: 15 }, [], [15]);
    book.bounds('s', [15], out, 0);
    assert.ok(Math.abs(out[1]! - (15 + 1.3 + 0.625 * 0.9)) < HALF_UNIT, `upper ${out[1]}`);
    const saved = book.exportStream('s')!;
    const again = new ScoreBook(card, undefined, { levels: [0.8], learningRate: 0.5 });
    again.importStream('s', saved);
    const back = new Float64Array(2);
    again.bounds('s', [15], back, 0);
    assert.deepEqual(Array.from(back), Array.from(out), 'restored as they were');
    // A checkpoint written before intervals (open forecasts only) restores the forecasts, and the seeds.
    const old = saved.subarray(0, saved.length - 2 * 4);
    const fromOld = new ScoreBook(card, undefined, { levels: [0.8], learningRate: 0.5 });
    fromOld.importStream('s', old);
    fromOld.bounds('s', [15], back, 0);
    near(back, [13.8, 16.3], 'seeds after an old checkpoint');
    const scored: Array<{ actual: number }> = [];
    fromOld.step('s', 120_000, { temp: 14 }, [], null, scored as never);
    assert.equal(scored.length, 1, 'the open forecast came back');
  });
});
