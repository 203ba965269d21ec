import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ErrorCodes } from '../src/errors.js';
import { cardOutputSize, defaultCardPath, parseCard, readCard, type ModelCard } from '../src/inference/card.js';
import { loadModel } from '../src/inference/model.js';
import { OutputHead, OutputReadError, softmax } from '../src/inference/output-head.js';
import { CardScaler } from '../src/inference/scaler.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { maxAbsDiff, modelPath, readFixture } from './helpers.js';

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

  it('streamed step by step, the engine equals PyTorch (logits and final state), and the head reads them as probabilities', async () => {
    const fixture = readFixture(name);
    const model = await loadModel(modelPath(name));
    const scaler = new CardScaler(model.card!);
    const head = new OutputHead(model.card!);
    const runner = new StepRunner(model);
    let worst = 0;
    for (let t = 0; t < fixture.raw.length; t++) {
      assert.ok(maxAbsDiff(scaler.scaleFeatures(fixture.raw[t]!), fixture.inputs[t]!) < 1e-6, 'card scaler = training scaler');
      const [r] = await runner.run([{ streamId: fixture.stream, input: Float32Array.from(fixture.inputs[t]!) }]);
      assert.equal(r!.status, 'ok');
      worst = Math.max(worst, maxAbsDiff(r!.output!, fixture.outputs[t]!));
      const [reading] = head.read(r!.output!);
      const want = softmax(fixture.outputs[t]!);
      assert.ok(Math.abs(reading!.probabilities!.wet! - want[1]!) < 1e-5);
      assert.equal(reading!.label, want[1]! > want[0]! ? 'wet' : 'dry');
    }
    assert.ok(worst <= 1e-5, `max |engine - torch| over 60 days = ${worst}`);
    const diff = maxAbsDiff(runner.slab!.read(fixture.stream)!, fixture.finalStates!.hn!);
    assert.ok(diff <= 1e-5, `final hn differs by ${diff}`);
    await model.session.release();
  });
});
