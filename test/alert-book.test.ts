import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AlertBook, quantileCdf, type AlertChange, type AlertConfig } from '../src/daemon/alert-book.js';
import { ScoreBook } from '../src/daemon/score-book.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { silentLogger } from '../src/log.js';
import { modelPath } from './support/models.js';

const lstm = readCard(defaultCardPath(modelPath('weather-lstm')));
const rain = readCard(defaultCardPath(modelPath('weather-rain')));
const LEVELS = [0.8, 0.95];
const hot = (o: Partial<AlertConfig> = {}): AlertConfig => ({ name: 'hot', model: 'weather-lstm', target: 'temp_max', above: 30, probability: 0.5, topic: 't/{alert}/{stream}', ...o });

/**
 * A weather-lstm forecast (cells horizon-major: temp_max, temp_min at 1, 2, 3)
 * with the same interval around every cell: ±2 (80%), ±4 (95%).
 */
function forecast(tempMax: readonly [number, number, number]): { values: number[]; bounds: Float64Array } {
  const values = [tempMax[0], 10, tempMax[1], 10, tempMax[2], 10];
  const bounds = new Float64Array(values.length * 4);
  values.forEach((v, k) => bounds.set([v - 2, v + 2, v - 4, v + 4], k * 4));
  return { values, bounds };
}

function book(configs: AlertConfig[], card = lstm, levels: readonly number[] | null = LEVELS): AlertBook {
  const b = new AlertBook(card.name, configs, silentLogger);
  const problems: string[] = [];
  b.use(card, levels, problems);
  assert.deepEqual(problems, []);
  return b;
}

describe('threshold alerts (AlertBook)', () => {
  it('reads a distribution from quantiles: exact at them, linear between, an exponential tail beyond, never outside [0, 1]', () => {
    const xs = [-4, -2, 0, 2, 4];
    const ps = [0.025, 0.1, 0.5, 0.9, 0.975];
    xs.forEach((x, i) => assert.ok(Math.abs(quantileCdf(x, xs, ps) - ps[i]!) < 1e-12, `at ${x}`));
    assert.ok(Math.abs(quantileCdf(1, xs, ps) - 0.7) < 1e-12);
    // Beyond the 97.5% point the tail keeps the ratio of the last two exceedances (0.1 / 0.025) per their distance (2).
    assert.ok(Math.abs(1 - quantileCdf(6, xs, ps) - 0.025 / 4) < 1e-12);
    assert.ok(Math.abs(quantileCdf(-6, xs, ps) - 0.025 / 4) < 1e-12);
    let last = 0;
    for (let x = -30; x <= 30; x += 0.25) {
      const p = quantileCdf(x, xs, ps);
      assert.ok(p >= last && p >= 0 && p <= 1, `monotone in [0, 1] at ${x}`);
      last = p;
    }
    // Points that coincide (an interval of zero width) do not divide by zero.
    assert.equal(quantileCdf(0, [0, 0, 0], [0.1, 0.5, 0.9]), 0.9);
    assert.equal(quantileCdf(-1, [0, 0, 0], [0.1, 0.5, 0.9]), 0);
  });

  it('turns on at the probability, stays on until it falls below clearProbability, and reports a stream\'s first state', () => {
    const b = book([hot({ probability: 0.5, clearProbability: 0.3 })]);
    const out: AlertChange[] = [];
    const step = (tmax: [number, number, number]): AlertChange[] => {
      const f = forecast(tmax);
      out.length = 0;
      b.evaluate('s', 'r', f.values, null, f.bounds, LEVELS, out);
      return [...out];
    };
    // Forecast 25 ± 2 (80%): P(> 30) is in the upper tail, well under 0.5.
    let c = step([25, 25, 25]);
    assert.equal(c.length, 1);
    assert.deepEqual([c[0]!.on, c[0]!.was], [false, null], 'first evaluation: off, published');
    assert.ok(c[0]!.probability < 0.05, `P ${c[0]!.probability}`);
    assert.deepEqual(step([25, 25, 25]), [], 'no change, nothing reported');
    // 29.5 at horizon 3: P(> 30) = 0.5 − 0.4 × 0.5 / 2 = 0.4 (linear from the median to the 90% point); still off.
    c = step([25, 25, 29.5]);
    assert.deepEqual(c, []);
    // 30.5 at horizon 2: P = 0.6, the largest of the three: on, from horizon 2.
    c = step([25, 30.5, 29.5]);
    assert.equal(c.length, 1);
    assert.deepEqual([c[0]!.on, c[0]!.was, c[0]!.horizon], [true, false, 2]);
    assert.ok(Math.abs(c[0]!.probability - 0.6) < 1e-9);
    // 29.5 (0.4) is above clearProbability 0.3: it stays on; 29 (0.3) clears only below 0.3.
    assert.deepEqual(step([29.5, 25, 25]), []);
    assert.deepEqual(step([29, 25, 25]), [], 'P = 0.3 is not below 0.3');
    c = step([28.9, 25, 25]);
    assert.deepEqual([c[0]!.on, c[0]!.was], [false, true]);
    assert.deepEqual(b.onCounts(), [['hot', 0]]);
  });

  it('below, horizons, route and streams limit what an alert watches; without intervals it follows the point forecast', () => {
    const b = book([
      hot({ name: 'frost', above: undefined, below: 0, horizons: [1], route: 'north' }),
      hot({ name: 'hot-a', streams: ['a'] }),
    ]);
    const out: AlertChange[] = [];
    const cold = forecast([-3, 20, 20]);
    b.evaluate('a', 'north', cold.values, null, cold.bounds, LEVELS, out);
    assert.deepEqual(out.map((c) => [c.rule.name, c.on]), [['frost', true], ['hot-a', false]]);
    out.length = 0;
    b.evaluate('b', 'south', cold.values, null, cold.bounds, LEVELS, out);
    assert.equal(out.length, 0, 'frost watches route north, hot-a stream a');
    // frost watches horizon 1 only: a frost at horizon 3 is not its business.
    const later = forecast([20, 20, -3]);
    b.evaluate('c', 'north', later.values, null, later.bounds, LEVELS, out);
    assert.deepEqual(out.map((c) => [c.rule.name, c.on]), [['frost', false]]);

    const point = book([hot()], lstm, null);
    out.length = 0;
    point.evaluate('a', 'r', forecast([30.1, 0, 0]).values, null, null, null, out);
    assert.deepEqual(out.map((c) => [c.on, c.probability]), [[true, 1]]);
  });

  it('alerts on a classification label\'s probability', () => {
    const b = book([{ name: 'wet', model: 'weather-rain', target: 'rain', label: 'wet', probability: 0.7, topic: 't' }], rain, null);
    const out: AlertChange[] = [];
    b.evaluate('s', 'r', [0.8], [['wet', { wet: 0.8, dry: 0.2 }]], null, null, out);
    assert.deepEqual(out.map((c) => [c.on, c.probability, c.horizon]), [[true, 0.8, 1]]);
    out.length = 0;
    b.evaluate('s', 'r', [0.65], [['wet', { wet: 0.65, dry: 0.35 }]], null, null, out);
    assert.equal(out.length, 0, 'default clearProbability: 0.1 under probability');
    b.evaluate('s', 'r', [0.55], [['dry', { wet: 0.45, dry: 0.55 }]], null, null, out);
    assert.deepEqual(out.map((c) => [c.on, c.probability]), [[false, 0.45]]);
  });

  it('refuses what the card lacks at start; after a hot reload it leaves such an alert out', () => {
    const problems: string[] = [];
    new AlertBook('weather-lstm', [hot({ target: 'wind' }), hot({ name: 'h4', horizons: [4] }), hot({ name: 'lab', above: undefined, label: 'x' })], silentLogger).use(lstm, LEVELS, problems);
    assert.deepEqual(problems, [
      'alerts "hot": target "wind" is not one of the model\'s (temp_max, temp_min)',
      'alerts "h4": horizon 4 is not one of the model\'s (1, 2, 3)',
      'alerts "lab": target "temp_max" is not a classification target, so it has no label "x"',
    ]);
    const reloaded = new AlertBook('weather-lstm', [hot({ target: 'wind' })], silentLogger);
    reloaded.use(lstm, LEVELS);
    assert.equal(reloaded.active, false);
  });

  it('keeps its states across a hot reload and checkpoints with the score book: a restored stream keeps its state (no second "on"); other alerts start over', () => {
    const scores = (configs: AlertConfig[]): ScoreBook => {
      const s = new ScoreBook(lstm, undefined, { levels: LEVELS, learningRate: 0.03 });
      const problems: string[] = [];
      s.attachAlerts(new AlertBook('weather-lstm', configs, silentLogger), problems);
      assert.deepEqual(problems, []);
      return s;
    };
    const a = scores([hot()]);
    const f = forecast([35, 35, 35]);
    a.step('s', 0, { temp_max: 30, temp_min: 10 }, [], f.values);
    const out: AlertChange[] = [];
    a.alerts!.evaluate('s', 'r', f.values, null, f.bounds, LEVELS, out);
    assert.deepEqual(out.map((c) => c.on), [true]);
    // A hot reload of the model (the same card or a retrained one): the states stay.
    a.use(lstm);
    assert.deepEqual(a.alerts!.onCounts(), [['hot', 1]]);
    const saved = a.exportStream('s')!;

    const b = scores([hot()]);
    b.importStream('s', saved);
    assert.deepEqual(b.alerts!.onCounts(), [['hot', 1]]);
    out.length = 0;
    b.alerts!.evaluate('s', 'r', f.values, null, f.bounds, LEVELS, out);
    assert.equal(out.length, 0, 'still on: no second event');
    // The open forecasts came back too: the day-1 actual scores the forecast issued at 0.
    const scored: Array<{ horizon: number }> = [];
    b.step('s', 86_400_000, { temp_max: 30, temp_min: 10 }, [], null, scored as never);
    assert.equal(scored.length, 2);

    const c = scores([hot({ probability: 0.6 })]);
    c.importStream('s', saved);
    assert.deepEqual(c.alerts!.onCounts(), [['hot', 0]], 'saved for other alerts: ignored');
    // A checkpoint written without alerts restores into a book with them, and the other way round.
    const plain = new ScoreBook(lstm, undefined, { levels: LEVELS, learningRate: 0.03 });
    plain.importStream('s', saved);
    const d = scores([hot()]);
    d.importStream('s', plain.exportStream('s'));
    assert.deepEqual(d.alerts!.onCounts(), [['hot', 0]]);
    // Eviction releases the stream's alert states (its checkpoint keeps them).
    b.release('s');
    assert.deepEqual(b.alerts!.onCounts(), [['hot', 0]]);
  });
});
