import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rollingAccuracy } from '../src/store/accuracy.js';
import { expectedForecasts, forecastKey, telemetry, waitFor, worstVsExpected, type StoredValue } from './support/fixtures.js';
import { STATIONS_ROUTE } from './support/test-config.js';
import { withDaemon } from './support/with-daemon.js';

/**
 * Challengers: one route runs the LSTM and the GRU on the same streams. Each
 * keeps its own per-stream state (its forecasts equal that model run alone),
 * and predictions and online accuracy are stored side by side per model, so a
 * user can compare them before switching.
 */
describe('challenger models', () => {
  it('a route with two models: each keeps its own state, forecasts and accuracy side by side', { timeout: 60_000 }, () =>
    withDaemon({ models: { 'weather-lstm': {}, 'weather-gru': {} }, routes: [{ ...STATIONS_ROUTE, models: ['weather-lstm', 'weather-gru'] }] }, async ({ db, publish, count }) => {
      const msgs = telemetry(3, 30).sort((a, b) => a.ts - b.ts);
      await publish(msgs);
      const per = (model: string): number => count('SELECT count(*) n FROM predictions WHERE model = ?', model);
      await waitFor(() => per('weather-lstm') === msgs.length * 6 && per('weather-gru') === msgs.length * 6, 15_000, 'both models\u2019 forecasts');
      assert.equal(count('SELECT count(*) n FROM steps'), msgs.length, 'a step shared by both models is stored once');

      for (const model of ['weather-lstm', 'weather-gru']) {
        const want = await expectedForecasts(msgs, model);
        const rows = db.prepare("SELECT stream, issued_at, horizon, target, value FROM predictions WHERE model = ? AND horizon = 1 AND target = 'temp_max'").all(model) as StoredValue[];
        const worst = worstVsExpected(rows, want);
        assert.ok(worst < 1e-4, `${model}: equal to the model run alone (max diff ${worst})`);
      }
      const lstm = await expectedForecasts(msgs, 'weather-lstm');
      const gru = await expectedForecasts(msgs, 'weather-gru');
      const k = forecastKey(msgs[40]!.stream, msgs[40]!.ts, 1, 'temp_max');
      assert.ok(Math.abs(lstm.get(k)! - gru.get(k)!) > 1e-3, 'the two models really differ, so the check above can tell them apart');

      const acc = rollingAccuracy(db, { window: 100 });
      for (const model of ['weather-lstm', 'weather-gru']) {
        const rows = acc.filter((r) => r.model === model && r.horizon === 1 && r.target === 'temp_max');
        assert.equal(rows.length, 3, `${model}: online accuracy per stream`);
        for (const r of rows) assert.ok(r.n >= 25 && Number.isFinite(r.mae) && Number.isFinite(r.persistenceMae), `${model} ${r.stream}: ${JSON.stringify(r)}`);
      }
    }));
});
