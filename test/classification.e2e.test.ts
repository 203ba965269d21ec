import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { Daemon } from '../src/daemon/daemon.js';
import type { ForecastMessage } from '../src/daemon/forecast-sink.js';
import { weatherPayload } from '../src/demo/mqtt-demo.js';
import { readWeather } from '../src/demo/weather-data.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { loadModel } from '../src/inference/model.js';
import { softmax } from '../src/inference/output-head.js';
import { CardScaler } from '../src/inference/scaler.js';
import { StepRunner } from '../src/inference/step-runner.js';
import { entityId } from '../src/mqtt/ha-discovery.js';
import { modelsDir } from '../src/paths.js';
import { maxAbsDiff, modelPath } from './support/models.js';
import { retained, waitFor } from './support/fixtures.js';
import type { ConfigInput } from './support/test-config.js';
import { withDaemon } from './support/with-daemon.js';

/** What models/train.py's classifier gave offline for the held-out year: [P(dry), P(wet)] per day. */
interface Heldout { from: string; labels: string[]; streams: Record<string, { dates: string[]; probabilities: number[][] }> }
const heldout = JSON.parse(readFileSync(path.join(modelsDir, 'fixtures', 'weather-rain.heldout.json'), 'utf8')) as Heldout;
const card = readCard(defaultCardPath(modelPath('weather-rain')));
const slug = (c: string): string => c.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** weather-lstm and weather-rain on one JSON message a day per station (weather/<station>/daily), published and announced to Home Assistant. */
function classifierConfig(rain: ConfigInput['models'] = {}): ConfigInput {
  return {
    mqtt: { clientId: 'tidecast-classify' },
    models: { 'weather-lstm': {}, 'weather-rain': {}, ...rain },
    routes: [
      {
        topic: 'weather/+station/daily',
        stream: '{station}',
        models: ['weather-lstm', 'weather-rain'],
        decoder: { type: 'json', timestamp: { field: 'date', format: 'iso' } },
        resample: { emit: 'complete', wallClock: false },
      },
    ],
    publish: { topic: 'tidecast/forecast/{model}/{stream}' },
    homeAssistant: { discovery: true },
  };
}

/** A config whose weather-rain reads `card` from a file of the test's dir (so the test can change it). */
function withCardFile(card: unknown): (dir: string) => ConfigInput {
  return (dir) => {
    writeFileSync(path.join(dir, CARD_FILE), JSON.stringify(card));
    return classifierConfig({ 'weather-rain': { card: CARD_FILE } });
  };
}

const CARD_FILE = 'weather-rain.card.json';

/** Every day of both stations (2012 to 2015: the training years warm the state, as in train.py), one JSON message per day. */
function dailyMessages(days = Infinity): Array<{ topic: string; payload: string }> {
  const cities = readWeather();
  const out: Array<{ topic: string; payload: string }> = [];
  const n = Math.min(days, ...[...cities.values()].map((d) => d.length));
  for (let t = 0; t < n; t++) for (const [c, d] of cities) out.push({ topic: `weather/${slug(c)}/daily`, payload: weatherPayload(d[t]!) });
  return out;
}

async function metric(daemon: Daemon, line: RegExp): Promise<number[]> {
  const { host, port } = daemon.httpAddress!;
  const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
  return text.split('\n').filter((l) => line.test(l)).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
}

interface Row { stream: string; issued_at: number; target_time: number; horizon: number; target: string; value: number; label: string; probabilities: string }

describe('classification heads end to end (Mosquitto, SQLite, onnxruntime)', () => {
  it('weather-rain beside weather-lstm: stored and published as label + probability, equal to PyTorch offline, accuracy as the card says', (t) =>
    withDaemon(classifierConfig(), async ({ daemon, db, url, publish, count, defer }) => {
      const published = new Map<string, ForecastMessage>();
      const sub = await mqtt.connectAsync(url, { clientId: 'classify-sub' });
      defer(() => sub.endAsync());
      sub.on('message', (_t, p) => {
        const m = JSON.parse(p.toString()) as ForecastMessage;
        published.set(`${m.stream}@${m.issued_at.slice(0, 10)}`, m);
      });
      await sub.subscribeAsync('tidecast/forecast/weather-rain/#', { qos: 1 });
      const msgs = dailyMessages();
      await publish(msgs);
      const predictions = (model: string): number => count('SELECT count(*) AS n FROM predictions WHERE model = ?', model);
      await waitFor(() => predictions('weather-rain') === msgs.length && predictions('weather-lstm') === msgs.length * 6 && published.size === msgs.length, 120_000, 'every day classified, forecast and published');

      // Stored rows: one per day and stream, the most probable label with its probability, equal to the offline run.
      const rows = db.prepare("SELECT stream, issued_at, target_time, horizon, target, value, label, probabilities FROM predictions WHERE model = 'weather-rain'").all() as Row[];
      const byKey = new Map(rows.map((r) => [`${r.stream}@${new Date(r.issued_at).toISOString().slice(0, 10)}`, r]));
      let worst = 0;
      let compared = 0;
      for (const [city, { dates, probabilities }] of Object.entries(heldout.streams)) {
        dates.forEach((date, i) => {
          const r = byKey.get(`${slug(city)}@${date}`);
          assert.ok(r, `${city} ${date} classified`);
          assert.equal(r.target, 'rain');
          assert.equal(r.horizon, 1);
          assert.equal(r.target_time - r.issued_at, 86_400_000);
          const p = JSON.parse(r.probabilities) as Record<string, number>;
          assert.deepEqual(Object.keys(p), ['dry', 'wet']);
          const want = probabilities[i]!;
          worst = Math.max(worst, Math.abs(p.dry! - want[0]!), Math.abs(p.wet! - want[1]!));
          assert.equal(r.label, p.wet! > p.dry! ? 'wet' : 'dry');
          assert.equal(r.value, p[r.label]);
          compared++;
        });
      }
      assert.equal(compared, 2 * 365);
      assert.ok(worst < 1e-4, `stored probabilities vs PyTorch offline: max diff ${worst}`);

      // The stored labels, scored against the next day's actual precipitation (also stored), give the card's held-out accuracy.
      const scored = db
        .prepare(
          `SELECT count(*) AS n, sum((p.label = 'wet') = (json_extract(s.values_json, '$.precipitation') > 0)) AS hits
           FROM predictions p JOIN steps s ON s.stream = p.stream AND s.ts = p.target_time
           WHERE p.model = 'weather-rain' AND p.issued_at >= ?`,
        )
        .get(Date.parse(heldout.from)) as { n: number; hits: number };
      const cardAccuracy = (card.metrics as { test: { model: Record<string, { accuracy: number; n: number }> } }).test.model['rain@1']!;
      assert.equal(scored.n, cardAccuracy.n);
      assert.ok(Math.abs(scored.hits / scored.n - cardAccuracy.accuracy) < 1e-3, `accuracy from stored labels ${scored.hits / scored.n} vs card ${cardAccuracy.accuracy}`);
      t.diagnostic(`held-out probabilities vs PyTorch: max diff ${worst.toExponential(2)} over ${compared} days; accuracy from stored labels ${(scored.hits / scored.n).toFixed(4)} (n ${scored.n}), card ${cardAccuracy.accuracy}`);

      // Classification targets are not scored as numbers; the forecaster beside it still is.
      const errors = (model: string): number => count('SELECT count(*) AS n FROM forecast_errors WHERE model = ?', model);
      assert.equal(errors('weather-rain'), 0);
      assert.ok(errors('weather-lstm') > 8000);

      // Published: labels next to (empty) numeric values, the same numbers as stored.
      const m = published.get('seattle@2015-06-01')!;
      const stored = byKey.get('seattle@2015-06-01')!;
      assert.equal(m.forecast.length, 1);
      assert.deepEqual(m.forecast[0]!.values, {});
      assert.deepEqual(m.forecast[0]!.labels, { rain: { label: stored.label, probability: stored.value, probabilities: JSON.parse(stored.probabilities) } });

      // Home Assistant: an enum sensor whose state is the label.
      const configs = await retained(url, 'homeassistant/sensor/#');
      const ha = JSON.parse(configs.get(`homeassistant/sensor/${entityId('weather-rain', 'seattle', 'rain', 1)}/config`)!) as Record<string, unknown>;
      assert.equal(ha.device_class, 'enum');
      assert.deepEqual(ha.options, ['dry', 'wet']);
      assert.equal(ha.value_template, "{{ value_json.forecast[0].labels['rain'].label }}");
      assert.equal(ha.unit_of_measurement, undefined);
      assert.equal(ha.state_class, undefined);

      // tidecast_labels_total counts each committed label.
      const wet = count("SELECT count(*) AS n FROM predictions WHERE model = 'weather-rain' AND label = 'wet'");
      assert.deepEqual(await metric(daemon, /^tidecast_labels_total\{model="weather-rain",target="rain",label="wet"\}/), [wet]);
      assert.deepEqual(await metric(daemon, /^tidecast_labels_total\{model="weather-rain",target="rain",label="dry"\}/), [msgs.length - wet]);
    }));

  it('a hot-reloaded card with new label names: later rows and the Home Assistant options use them, state kept', (t) =>
    withDaemon(withCardFile(card), async ({ dir, db, url, publish, count }) => {
      const msgs = dailyMessages(40);
      const labels = (from: number): string[] => (db.prepare("SELECT DISTINCT label FROM predictions WHERE model = 'weather-rain' AND issued_at >= ? ORDER BY label").pluck().all(from) as string[]);
      const rows = (): number => count("SELECT count(*) AS n FROM predictions WHERE model = 'weather-rain'");
      await publish(msgs.slice(0, 40));
      await waitFor(() => rows() === 40, 20_000, 'the first 20 days classified');
      const ha = async (): Promise<{ options: string[]; value_template: string }> =>
        JSON.parse((await retained(url, 'homeassistant/sensor/#')).get(`homeassistant/sensor/${entityId('weather-rain', 'seattle', 'rain', 1)}/config`)!) as { options: string[]; value_template: string };
      assert.deepEqual((await ha()).options, ['dry', 'wet']);

      // Same graph, same width, new names for the two classes.
      writeFileSync(path.join(dir, CARD_FILE), JSON.stringify({ ...card, targets: [{ ...card.targets[0], labels: ['no_rain', 'rain'] }] }));
      await waitFor(() => count("SELECT count(*) AS n FROM events WHERE kind = 'model_reloaded' AND model = 'weather-rain'") === 1, 20_000, 'the reload');
      await publish(msgs.slice(40));
      await waitFor(() => rows() === 80, 20_000, 'the next 20 days classified');
      const second = Date.parse(JSON.parse(msgs[40]!.payload).date as string);
      assert.deepEqual(labels(second), ['no_rain', 'rain']);
      const before = db.prepare("SELECT DISTINCT label FROM predictions WHERE model = 'weather-rain' AND issued_at < ?").pluck().all(second) as string[];
      assert.ok(before.length > 0 && before.every((l) => l === 'dry' || l === 'wet'), `rows before the reload keep their labels: ${before}`);
      assert.deepEqual((await ha()).options, ['no_rain', 'rain'], 're-announced with the new options');

      // The state was kept: every stored distribution equals one uninterrupted run of the same 40 days through the engine.
      const model = await loadModel(modelPath('weather-rain'));
      const runner = new StepRunner(model);
      const scaler = new CardScaler(model.card!);
      const stored = new Map((db.prepare("SELECT stream, issued_at, probabilities FROM predictions WHERE model = 'weather-rain'").all() as Array<{ stream: string; issued_at: number; probabilities: string }>)
        .map((r) => [`${r.stream}@${r.issued_at}`, Object.values(JSON.parse(r.probabilities) as Record<string, number>)]));
      let worst = 0;
      for (const m of msgs) {
        const d = JSON.parse(m.payload) as { date: string; precipitation: number; temp_max: number; temp_min: number; wind: number };
        const stream = m.topic.split('/')[1]!;
        const [r] = await runner.run([{ streamId: stream, input: scaler.scaleInputs([d.precipitation, d.temp_max, d.temp_min, d.wind], Date.parse(d.date)) }]);
        worst = Math.max(worst, maxAbsDiff(stored.get(`${stream}@${Date.parse(d.date)}`)!, softmax(r!.output!)));
      }
      await model.session.release();
      assert.ok(worst < 1e-4, `probabilities vs an uninterrupted run: max diff ${worst}`);
      t.diagnostic(`80 classifications across the reload vs an uninterrupted engine run: max diff ${worst.toExponential(2)}`);
    }));

  it('a card that calls logits probabilities: nothing stored for that model, an invalid_output event per step and a metric; the other model runs on', () =>
    // Fault injection: the shipped card with one wrong claim.
    withDaemon(withCardFile({ ...card, targets: [{ ...card.targets[0], scores: 'probabilities' }] }), async ({ daemon, db, publish, count }) => {
      const msgs = dailyMessages(30);
      await publish(msgs);
      const events = (): Array<{ stream: string; detail: string }> => db.prepare("SELECT stream, detail FROM events WHERE kind = 'invalid_output' AND model = 'weather-rain'").all() as Array<{ stream: string; detail: string }>;
      await waitFor(() => events().length === msgs.length && count("SELECT count(*) AS n FROM predictions WHERE model = 'weather-lstm'") === msgs.length * 6, 30_000, 'every step refused for weather-rain, forecast by weather-lstm');
      // At least some logits fall outside [0, 1] or do not sum to 1: all 60 did here, each with the fix in its detail.
      for (const e of events()) assert.match(e.detail, /target rain: the card says the class scores are probabilities, .*set "scores": "logits"/);
      assert.equal(count("SELECT count(*) AS n FROM predictions WHERE model = 'weather-rain'"), 0);
      assert.equal(count('SELECT count(*) AS n FROM steps'), msgs.length, 'the inputs are kept');
      assert.deepEqual(await metric(daemon, /^tidecast_invalid_outputs_total\{model="weather-rain"\}/), [msgs.length]);
    }));
});
