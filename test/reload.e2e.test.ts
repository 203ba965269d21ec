import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { expectedForecasts, telemetry, waitFor, worstVsExpected, type StoredValue } from './support/fixtures.js';
import { modelPath } from './support/models.js';
import type { ConfigInput } from './support/test-config.js';
import { withDaemon } from './support/with-daemon.js';

const DAY = 86_400_000;
const EPOCH = Date.UTC(2015, 0, 1);

/** weather-lstm from a copy of its file and card in the test's dir (m.onnx, m.card.json), which the test then replaces. */
function modelCopy(dir: string): ConfigInput {
  copyFileSync(modelPath('weather-lstm'), path.join(dir, 'm.onnx'));
  copyFileSync(modelPath('weather-lstm').replace(/\.onnx$/, '.card.json'), path.join(dir, 'm.card.json'));
  return { models: { 'weather-lstm': { path: 'm.onnx', card: 'm.card.json' } } };
}

/**
 * Hot reload, in process against real Mosquitto: the model file the config
 * names is replaced while messages flow. The same graph in a new file keeps
 * every stream's state; a broken file leaves the old model running; a graph
 * whose state has another shape (the GRU behind the LSTM's card name) starts
 * the streams over. No message is dropped or predicted twice.
 */
describe('hot reload of a model file', () => {
  it('swaps between batches: state kept when shapes match, old model kept when the file is broken, streams reset when shapes differ', { timeout: 90_000 }, () =>
    withDaemon(modelCopy, async ({ dir, daemon, db, publish, count }) => {
      const onnx = path.join(dir, 'm.onnx');
      const card = path.join(dir, 'm.card.json');
      const events = (kind: string): number => count(`SELECT count(*) n FROM events WHERE kind = '${kind}'`);
      const msgs = telemetry(2, 25);
      const days = (from: number, to: number): typeof msgs => msgs.filter((m) => m.ts >= EPOCH + from * DAY && m.ts < EPOCH + to * DAY);
      const engine = daemon.engines.get('weather-lstm')!;

      await publish(days(0, 10));
      await waitFor(() => count('SELECT count(*) n FROM predictions') === 2 * 10 * 6, 10_000, 'days 1-10');

      // 1. The same graph in a new file (an unknown protobuf field appended): a real swap, state kept.
      const before = engine.model.fingerprint;
      writeFileSync(onnx, Buffer.concat([readFileSync(modelPath('weather-lstm')), Buffer.from([0x98, 0x06, 0x01])]));
      await daemon.reloadModels('test');
      assert.notEqual(engine.model.fingerprint, before, 'the new file is in use');
      assert.equal(events('model_reloaded'), 1);
      await publish(days(10, 20));
      await waitFor(() => count('SELECT count(*) n FROM predictions') === 2 * 20 * 6, 10_000, 'days 11-20');
      const want = await expectedForecasts(days(0, 20));
      const rows = db.prepare("SELECT stream, issued_at, horizon, target, value FROM predictions WHERE horizon = 1 AND target = 'temp_max'").all() as StoredValue[];
      const worst = worstVsExpected(rows, want);
      assert.ok(worst < 1e-4, `state carried across the swap: 20 steps equal one uninterrupted run (max diff ${worst})`);

      // 2. A broken file: the running model stays and says why.
      const running = engine.model.fingerprint;
      writeFileSync(onnx, 'not an onnx model');
      await daemon.reloadModels('test');
      assert.equal(engine.model.fingerprint, running, 'the old model keeps running');
      assert.ok(events('model_reload_failed') >= 1, 'the failure is recorded');
      await publish(days(20, 22));
      await waitFor(() => count('SELECT count(*) n FROM predictions') === 2 * 22 * 6, 10_000, 'days 21-22 on the old model');

      // 3. Another state shape (a GRU under the same card name): streams start over, logged.
      copyFileSync(modelPath('weather-gru'), onnx);
      const gruCard = JSON.parse(readFileSync(modelPath('weather-gru').replace(/\.onnx$/, '.card.json'), 'utf8')) as { name: string };
      writeFileSync(card, JSON.stringify({ ...gruCard, name: 'weather-lstm' }));
      await daemon.reloadModels('test');
      assert.equal(engine.model.signature.states.length, 1, 'the GRU runs now');
      assert.equal(events('model_reloaded_state_reset'), 1);
      await publish(days(22, 25));
      await waitFor(() => count('SELECT count(*) n FROM predictions') === 2 * 25 * 6, 10_000, 'days 23-25 on the GRU');
      assert.equal(count('SELECT count(*) n FROM steps'), 2 * 25, 'every message stored once');
      const text = await daemon.metrics.text();
      for (const outcome of ['kept_state', 'failed', 'reset_state']) assert.match(text, new RegExp(`tidecast_model_reloads_total\\{model="weather-lstm",outcome="${outcome}"\\} [1-9]`));
    }));
});
