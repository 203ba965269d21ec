import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ErrorCodes } from '../src/errors.js';
import { cardOutputSize, defaultCardPath, parseCard, readCard, type ModelCard } from '../src/inference/card.js';
import { loadModel } from '../src/inference/model.js';
import { OutputHead, OutputReadError, softmax } from '../src/inference/output-head.js';
import { CardScaler } from '../src/inference/scaler.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { maxAbsDiff, modelPath, readFixture, testModelPath } from './support/models.js';
import { prng } from './support/prng.js';

const base = {
  name: 'head-test',
  mode: 'stateful',
  stepSeconds: 60,
  features: [{ name: 'x' }],
} as const;

const card = (extra: Record<string, unknown>): ModelCard => parseCard(JSON.stringify({ ...base, ...extra }), 'test');

describe('classification heads: cards and output reading', () => {
  it('softmax is shift-invariant and does not overflow on large logits', () => {
    const p = softmax([1000, 1001, 999]);
    const q = softmax([0, 1, -1]);
    assert.ok(maxAbsDiff(p, q) < 1e-12);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.ok(p[1]! > p[0]! && p[0]! > p[2]!);
  });

  it('a mixed card: numeric targets de-scaled, a classification target read as label + probability, horizon-major', () => {
    const c = card({
      targets: [{ name: 'temp', unit: '°C' }, { name: 'state', labels: ['normal', 'degraded', 'anomaly'] }],
      horizons: [0, 2],
      scaler: { features: { mean: [0], std: [1] }, targets: { mean: [10], std: [2] } },
    });
    assert.equal(cardOutputSize(c), 2 * (1 + 3));
    const head = new OutputHead(c);
    assert.equal(head.width, 8);
    assert.ok(head.classifies);
    // horizon 0: temp (scaled 1.5), logits [0, 0, ln 2]; horizon 2: temp (-1), logits [3, 1, 1].
    const out = head.read([1.5, 0, 0, Math.log(2), -1, 3, 1, 1]);
    assert.deepEqual(out.map((r) => [r.horizon, r.target]), [[0, 'temp'], [0, 'state'], [2, 'temp'], [2, 'state']]);
    assert.equal(out[0]!.value, 13);
    assert.equal(out[0]!.label, undefined);
    assert.equal(out[1]!.label, 'anomaly');
    assert.ok(Math.abs(out[1]!.value - 0.5) < 1e-12, `P(anomaly) = 2 / (1 + 1 + 2), got ${out[1]!.value}`);
    assert.deepEqual(Object.keys(out[1]!.probabilities!), ['normal', 'degraded', 'anomaly']);
    assert.ok(Math.abs(out[1]!.probabilities!.normal! - 0.25) < 1e-12);
    assert.equal(out[2]!.value, 8);
    assert.equal(out[3]!.label, 'normal');
    assert.equal(out[3]!.value, out[3]!.probabilities!.normal);
  });

  it('ties go to the label listed first', () => {
    const head = new OutputHead(card({ targets: [{ name: 's', labels: ['normal', 'anomaly'] }], horizons: [0] }));
    assert.equal(head.read([0.3, 0.3])[0]!.label, 'normal');
  });

  it('scores "probabilities" are taken as given; scores that are not probabilities are refused with the fix', () => {
    const head = new OutputHead(card({ targets: [{ name: 's', labels: ['normal', 'anomaly'], scores: 'probabilities' }], horizons: [0] }));
    const [r] = head.read(Float32Array.from([0.2, 0.8]));
    assert.equal(r!.label, 'anomaly');
    assert.ok(Math.abs(r!.value - 0.8) < 1e-6);
    assert.throws(() => head.read([2.5, -1]), (e: Error) => e instanceof OutputReadError && /set "scores": "logits"/.test(e.message));
    assert.throws(() => head.read([0.2, 0.3]), (e: Error) => e instanceof OutputReadError && /sum to 0\.5/.test(e.message));
  });

  it('card checks: scores without labels, too few labels, and scaler.targets counting numeric targets only', () => {
    const problems = (extra: Record<string, unknown>): string => {
      try {
        card(extra);
      } catch (err) {
        assert.equal((err as { code?: string }).code, ErrorCodes.CARD_INVALID);
        return (err as Error).message;
      }
      return '';
    };
    assert.match(problems({ targets: [{ name: 't', scores: 'logits' }], horizons: [1] }), /\/targets\/0\/scores: only a target with labels/);
    assert.match(problems({ targets: [{ name: 't', labels: ['only'] }], horizons: [1] }), /\/targets\/0\/labels: must NOT have fewer than 2 items/);
    assert.match(problems({ targets: [{ name: 't', labels: ['a', 'a'] }], horizons: [1] }), /\/targets\/0\/labels: must NOT have duplicate items/);
    assert.match(problems({ targets: [{ name: 't' }], horizons: [1, 1] }), /\/horizons: must NOT have duplicate items/);
    assert.match(problems({ targets: [{ name: 't' }, { name: 't', labels: ['a', 'b'] }], horizons: [1] }), /\/targets\/1\/name: "t" is listed twice/);
    const scaler = { features: { mean: [0], std: [1] }, targets: { mean: [0, 0], std: [1, 1] } };
    assert.match(problems({ targets: [{ name: 'v' }, { name: 'c', labels: ['a', 'b'] }], horizons: [1], scaler }), /\/scaler\/targets\/mean: has 2 values for 1 numeric targets/);
    assert.match(problems({ targets: [{ name: 'v' }], horizons: [1], scaler: { features: scaler.features } }), /\/scaler\/targets: missing, and the card has 1 numeric targets/);
    // A classifier's scaler needs no targets.
    assert.equal(problems({ targets: [{ name: 'c', labels: ['a', 'b'] }], horizons: [1], scaler: { features: scaler.features } }), '');
  });
});

describe('the shipped classifier weather-rain (models/train.py)', () => {
  const name = 'weather-rain';

  it('card: a dry/wet logits head at horizon 1, matching its file, with held-out metrics that beat both baselines', () => {
    const c = readCard(defaultCardPath(modelPath(name)));
    assert.equal(c.sha256, createHash('sha256').update(readFileSync(modelPath(name))).digest('hex'));
    assert.deepEqual(c.targets, [{ name: 'rain', labels: ['dry', 'wet'], scores: 'logits', description: 'wet: precipitation > 0 mm on the target day' }]);
    assert.deepEqual(c.horizons, [1]);
    assert.equal(cardOutputSize(c), 2);
    type M = { accuracy: number; brier: number; logLoss: number; n: number };
    const t = (c.metrics as { test: Record<'model' | 'persistence' | 'climatology', Record<string, M>> }).test;
    const [m, p, k] = [t.model['rain@1']!, t.persistence['rain@1']!, t.climatology['rain@1']!];
    assert.ok(m.n > 700 && m.n === p.n && m.n === k.n, `scored on the held-out year of both cities (n ${m.n})`);
    assert.ok(m.accuracy > p.accuracy && m.accuracy > k.accuracy, `accuracy ${m.accuracy} vs persistence ${p.accuracy}, climatology ${k.accuracy}`);
    assert.ok(m.brier < p.brier && m.brier < k.brier, `Brier ${m.brier} vs persistence ${p.brier}, climatology ${k.brier}`);
  });

  it('streamed step by step, the engine equals PyTorch (logits and final state), and the head reads them as probabilities', async (t) => {
    const fixture = readFixture(name);
    const model = await loadModel(modelPath(name));
    const scaler = new CardScaler(model.card!);
    const head = new OutputHead(model.card!);
    const runner = new StepRunner(model);
    let worst = 0;
    for (let t = 0; t < fixture.raw.length; t++) {
      assert.ok(maxAbsDiff(scaler.scaleInputs(fixture.raw[t]!, Date.parse(fixture.dates[t]!)), fixture.inputs[t]!) < 1e-6, 'card scaler = training scaler');
      const [r] = await runner.run([{ streamId: fixture.stream, input: Float32Array.from(fixture.inputs[t]!) }]);
      assert.equal(r!.status, 'ok');
      worst = Math.max(worst, maxAbsDiff(r!.output!, fixture.outputs[t]!));
      const [reading] = head.read(r!.output!);
      const want = softmax(fixture.outputs[t]!);
      assert.ok(Math.abs(reading!.probabilities!.wet! - want[1]!) < 1e-5);
      assert.equal(reading!.label, want[1]! > want[0]! ? 'wet' : 'dry');
    }
    assert.ok(worst <= 1e-5, `max |engine - torch| over 60 days = ${worst}`);
    t.diagnostic(`max |engine - torch| logits over 60 days: ${worst.toExponential(2)}`);
    const diff = maxAbsDiff(runner.slab!.read(fixture.stream)!, fixture.finalStates!.hn!);
    assert.ok(diff <= 1e-5, `final hn differs by ${diff}`);
    await model.session.release();
  });
});

/**
 * window-anomaly-gru.onnx (models/make_test_models.py): a many-to-one classifier
 * over the last 8 steps whose graph ends in a Softmax, with a card declaring
 * labels normal/anomaly, scores "probabilities", horizon 0 (the step itself).
 */
describe('a windowed classifier that outputs probabilities', () => {
  it('runs once its window is full; each output equals the graph on that window and reads as label + probability', async () => {
    const model = await loadModel(testModelPath('window-anomaly-gru.onnx'));
    assert.equal(model.mode, 'windowed');
    assert.equal(model.window, 8);
    const head = new OutputHead(model.card!);
    const runner = new StepRunner(model);
    const rand = prng(21);
    const steps = Array.from({ length: 40 }, (_, t) => Float32Array.from({ length: 3 }, () => (t >= 20 && t < 26 ? 3 : 0) + rand() * 2 - 1));
    const labels = new Set<string>();
    for (let t = 0; t < steps.length; t++) {
      const [r] = await runner.run([{ streamId: 'line-1', input: steps[t]! }]);
      if (t < 7) {
        assert.equal(r!.status, 'warming', `step ${t}: the window is not full yet`);
        continue;
      }
      assert.equal(r!.status, 'ok');
      const window = new Float32Array(8 * 3);
      for (let k = 0; k < 8; k++) window.set(steps[t - 7 + k]!, k * 3);
      const direct = (await model.session.run({ x: new ort.Tensor('float32', window, [1, 8, 3]) })).y!.data as Float32Array;
      assert.ok(maxAbsDiff(r!.output!, direct) < 1e-6);
      const [reading] = head.read(r!.output!);
      assert.equal(reading!.horizon, 0);
      assert.ok(Math.abs(reading!.probabilities!.normal! + reading!.probabilities!.anomaly! - 1) < 1e-9);
      assert.equal(reading!.label, direct[1]! > direct[0]! ? 'anomaly' : 'normal');
      assert.ok(Math.abs(reading!.value - Math.max(direct[0]!, direct[1]!)) < 1e-6);
      labels.add(reading!.label!);
    }
    assert.deepEqual([...labels].sort(), ['anomaly', 'normal'], 'the shifted stretch flips the label and back');
    await model.session.release();
  });
});
