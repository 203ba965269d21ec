import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { cardOutputSize, defaultCardPath, readCard } from '../src/inference/card.js';
import { CardScaler } from '../src/inference/scaler.js';
import { SHIPPED_MODELS, maxAbsDiff, modelPath, readFixture } from './support/models.js';

interface ErrorStats { mae: number; rmse: number; n: number }

describe('shipped models and cards', () => {
  for (const name of SHIPPED_MODELS) {
    it(`${name}: card is valid, matches its file, and records provenance and held-out metrics`, () => {
      const card = readCard(defaultCardPath(modelPath(name)));
      assert.equal(card.name, name);
      assert.equal(card.sha256, createHash('sha256').update(readFileSync(modelPath(name))).digest('hex'), 'card sha256 is the committed .onnx');
      assert.deepEqual(card.features.map((f) => f.name), ['precipitation', 'temp_max', 'temp_min', 'wind']);
      assert.equal(cardOutputSize(card), 6);
      assert.equal(card.mode, name === 'weather-brnn' ? 'windowed' : 'stateful');

      const prov = card.provenance as { dataset: string; file: string; train: { to: string }; test: { from: string } };
      assert.equal(prov.dataset, 'vega-datasets');
      assert.equal(prov.file, 'data/weather.csv');
      assert.ok(prov.train.to < prov.test.from, 'split by date: training ends before the held-out period');

      const test = (card.metrics as { test: { model: Record<string, ErrorStats>; persistence: Record<string, ErrorStats> } }).test;
      for (const h of card.horizons) {
        for (const t of card.targets) {
          const key = `${t.name}@${h}`;
          for (const m of [test.model[key], test.persistence[key]]) {
            assert.ok(m && m.mae > 0 && m.rmse >= m.mae && m.n > 300, `${key} metrics present and plausible`);
          }
        }
      }
    });

    it(`${name}: the card's scaler maps the fixture's raw data to the inputs PyTorch saw`, () => {
      const card = readCard(defaultCardPath(modelPath(name)));
      const fixture = readFixture(name);
      const scaler = new CardScaler(card);
      let worst = 0;
      fixture.raw.forEach((raw, t) => (worst = Math.max(worst, maxAbsDiff(scaler.scaleInputs(raw, Date.parse(fixture.dates[t]!)), fixture.inputs[t]!))));
      assert.ok(worst < 1e-6, `scaled inputs differ by ${worst}`);
    });
  }
});
