import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DashboardApi } from '../src/http/dashboard-api.js';
import { silentLogger } from '../src/log.js';
import { ScoreBook } from '../src/daemon/score-book.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { modelsDir } from '../src/paths.js';
import { Store, type ForecastLayout, type ForecastRow, type StepRow } from '../src/store/store.js';

export interface ApiBenchResult {
  scenario: 'api';
  predictions: number;
  streams: number;
  build_s: number;
  /** Median and worst of repeated calls, ms. */
  ms: Record<string, { p50: number; max: number; bytes: number }>;
}

const DAY = 86_400_000;
const STREAMS = 200;
const STEPS = 834; // 200 streams x 834 steps x 6 predictions = 1,000,800 predictions

const FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind'];
const LAYOUT: ForecastLayout = { stepMs: DAY, cells: [1, 2, 3].flatMap((h) => ['temp_max', 'temp_min'].map((t) => [h, t, 0] as const)) };

/**
 * The dashboard API on a database with a million predictions (and their
 * scored errors): every endpoint the page calls, timed in the same run.
 */
export async function apiBench(): Promise<ApiBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-api-'));
  const store = new Store({ path: path.join(dir, 'bench.db'), retentionDays: 36500, log: silentLogger });
  store.start();
  const t0 = performance.now();
  const start = Date.UTC(2013, 0, 1);
  // Scored in memory as the daemon does; the sums reach the accuracy table with a checkpoint every 100 days.
  const book = new ScoreBook(readCard(defaultCardPath(path.join(modelsDir, 'weather-lstm.onnx'))));
  for (let t = 0; t < STEPS; t++) {
    const steps: StepRow[] = [];
    const forecasts: ForecastRow[] = [];
    for (let s = 0; s < STREAMS; s++) {
      const ts = start + t * DAY;
      const v = 10 + 8 * Math.sin((t + s) / 20);
      steps.push({ stream: `site${s % 20}/dev${s}`, route: 'bench', ts, receivedAt: ts, features: FEATURES, values: { precipitation: 0, temp_max: v, temp_min: v - 6, wind: 3 }, filled: [] });
      forecasts.push({ stream: `site${s % 20}/dev${s}`, issuedAt: ts, values: LAYOUT.cells.map(([h, target]) => v + h * 0.3 - (target === 'temp_min' ? 6 : 0)), labels: null });
    }
    await store.commit('weather-lstm', LAYOUT, steps, forecasts);
    for (let i = 0; i < steps.length; i++) book.step(steps[i]!.stream, steps[i]!.ts, steps[i]!.values, [], forecasts[i]!.values);
    if (t % 100 === 99 || t === STEPS - 1) {
      await store.writeCheckpoint(0, [], book.take());
      book.stored();
    }
  }
  const buildS = (performance.now() - t0) / 1000;
  const api = new DashboardApi(() => store.db, () => [{ name: 'weather-lstm', provider: 'cpu', mode: 'stateful', path: '', card: null }]);
  const calls: Record<string, [string, URLSearchParams]> = {
    'GET /api/streams (200 streams)': ['/api/streams', new URLSearchParams()],
    'GET /api/streams/{id}/series (90 days)': ['/api/streams/site7%2Fdev7/series', new URLSearchParams()],
    'GET /api/streams/{id}/series (2000 points)': ['/api/streams/site7%2Fdev7/series', new URLSearchParams({ from: '0', limit: '2000' })],
    'GET /api/accuracy?stream (window 100)': ['/api/accuracy', new URLSearchParams({ stream: 'site7/dev7', window: '100' })],
    'GET /api/events?stream': ['/api/events', new URLSearchParams({ stream: 'site7/dev7' })],
  };
  const ms: ApiBenchResult['ms'] = {};
  for (const [name, [p, q]] of Object.entries(calls)) {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 15; i++) {
      const a = performance.now();
      const r = api.handle(p, q);
      bytes = JSON.stringify(r.body).length;
      times.push(performance.now() - a);
      if (r.status !== 200) throw new Error(`${name}: ${r.status}`);
    }
    times.sort((x, y) => x - y);
    ms[name] = { p50: times[7]!, max: times[14]!, bytes };
  }
  const predictions = (store.db.prepare('SELECT count(*) n FROM predictions').get() as { n: number }).n;
  await store.stop();
  rmSync(dir, { recursive: true, force: true });
  return { scenario: 'api', predictions, streams: STREAMS, build_s: buildS, ms };
}

export function apiTable(r: ApiBenchResult): string {
  return [
    `api: ${r.predictions.toLocaleString('en-US')} predictions over ${r.streams} streams (built in ${r.build_s.toFixed(1)} s), 15 calls each`,
    '  endpoint                                        p50 ms    max ms   response bytes',
    ...Object.entries(r.ms).map(([k, v]) => `  ${k.padEnd(44)} ${v.p50.toFixed(2).padStart(8)} ${v.max.toFixed(2).padStart(9)} ${String(v.bytes).padStart(14)}`),
  ].join('\n');
}
