import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../src/log.js';
import { Store, type PredictionRow, type StepRow } from '../src/store/store.js';

export interface StoreBenchResult {
  scenario: 'store';
  streams: number;
  /** µs per step of Store.commit on day d (d = 0: nothing to score yet; from d = 3: six forecasts scored per step). */
  commit_us_per_step: number[];
  /** The same commits without scoring. */
  commit_no_scoring_us_per_step: number[];
}

const DAY = 86_400_000;
const T0 = Date.UTC(2015, 0, 1);

function day(streams: number, d: number): { steps: StepRow[]; preds: PredictionRow[] } {
  const steps: StepRow[] = [];
  const preds: PredictionRow[] = [];
  for (let j = 0; j < streams; j++) {
    const stream = `g${j % 100}/d${j}`;
    const ts = T0 + d * DAY;
    steps.push({ stream, route: 'r', ts, receivedAt: ts, topic: `sensors/${stream}/telemetry`, values: { precipitation: 0.1 * j, temp_max: 10 + d, temp_min: 2 + d, wind: 3 }, filled: [] });
    for (let h = 1; h <= 3; h++) for (const target of ['temp_max', 'temp_min']) preds.push({ stream, model: 'm', issuedAt: ts, horizon: h, target, targetTime: ts + h * DAY, value: 10 + h });
  }
  return { steps, preds };
}

/** Store.commit alone, the daemon's write path: 10,000 streams, batches of 256, five days in a row. */
export function storeBench(streams = 10_000, days = 5): StoreBenchResult {
  const run = (score: boolean): number[] => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-store-'));
    const store = new Store({ path: path.join(dir, 'b.db'), retentionDays: 36500, log: silentLogger });
    store.start();
    const out: number[] = [];
    try {
      for (let d = 0; d < days; d++) {
        const { steps, preds } = day(streams, d);
        const t = performance.now();
        for (let i = 0; i < streams; i += 256) store.commit('m', steps.slice(i, i + 256), preds.slice(i * 6, (i + 256) * 6), [], score ? [DAY, 2 * DAY, 3 * DAY] : []);
        out.push(Math.round(((performance.now() - t) * 1000) / streams));
      }
    } finally {
      store.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    return out;
  };
  return { scenario: 'store', streams, commit_us_per_step: run(true), commit_no_scoring_us_per_step: run(false) };
}

export function storeTable(r: StoreBenchResult): string {
  return [
    `store: Store.commit, ${r.streams} streams, batches of 256, µs per step (one step row + 6 prediction rows + scoring)`,
    '',
    `| day | ${r.commit_us_per_step.map((_, d) => d).join(' | ')} |`,
    `|---|${r.commit_us_per_step.map(() => '---:').join('|')}|`,
    `| with scoring | ${r.commit_us_per_step.join(' | ')} |`,
    `| without scoring | ${r.commit_no_scoring_us_per_step.join(' | ')} |`,
  ].join('\n');
}
