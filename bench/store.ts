import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ScoreBook, type ScoredRow } from '../src/daemon/score-book.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { silentLogger } from '../src/log.js';
import { modelsDir } from '../src/paths.js';
import { Store, type ForecastLayout, type ForecastRow, type StepRow } from '../src/store/store.js';
import { keyLayoutBench, keyLayoutTable, type KeyLayoutPoint } from './store-keys.js';

export interface StoreBenchResult {
  scenario: 'store';
  streams: number;
  /** µs per step of Store.commit on day d, until the writer thread has committed: one step_inputs row and one forecasts row (6 cells) per step. */
  commit_us_per_step: number[];
  /** µs per step the main thread spends in Store.commit (packing the batch and posting it to the writer). */
  main_us_per_step: number[];
  /** µs per step of the in-memory scoring (ScoreBook.step): from day 3, six forecasts scored per step. */
  scoring_us_per_step: number[];
  /** step_inputs-like rows under schema 7's key (stream, time) and the store's time-major one (schema 10), as history grows (absent in older runs). */
  key_layouts?: KeyLayoutPoint[];
}

const DAY = 86_400_000;
const T0 = Date.UTC(2015, 0, 1);
const FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind'];
const LAYOUT: ForecastLayout = { stepMs: DAY, cells: [1, 2, 3].flatMap((h) => ['temp_max', 'temp_min'].map((t) => [h, t, 0] as const)) };

function day(streams: number, d: number): { steps: StepRow[]; forecasts: ForecastRow[] } {
  const steps: StepRow[] = [];
  const forecasts: ForecastRow[] = [];
  for (let j = 0; j < streams; j++) {
    const stream = `g${j % 100}/d${j}`;
    const ts = T0 + d * DAY;
    steps.push({ stream, route: 'r', ts, receivedAt: ts, features: FEATURES, values: { precipitation: 0.1 * j, temp_max: 10 + d, temp_min: 2 + d, wind: 3 }, filled: [] });
    forecasts.push({ stream, issuedAt: ts, values: [11, 3, 12, 4, 13, 5], labels: null });
  }
  return { steps, forecasts };
}

/** The daemon's write path: Store.commit, 10,000 streams, batches of 256, five days in a row; the in-memory scoring beside it; and the cost of a row under two key layouts as history grows. */
export async function storeBench(streams = 10_000, days = 5): Promise<StoreBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-store-'));
  const store = new Store({ path: path.join(dir, 'b.db'), retentionDays: 36500, log: silentLogger });
  store.start();
  const book = new ScoreBook(readCard(defaultCardPath(path.join(modelsDir, 'weather-lstm.onnx'))));
  const commit: number[] = [];
  const posting: number[] = [];
  const scoring: number[] = [];
  try {
    for (let d = 0; d < days; d++) {
      const { steps, forecasts } = day(streams, d);
      let t = performance.now();
      const done: Array<Promise<unknown>> = [];
      for (let i = 0; i < streams; i += 256) done.push(store.commit('m', LAYOUT, steps.slice(i, i + 256), forecasts.slice(i, i + 256)));
      posting.push(round(((performance.now() - t) * 1000) / streams));
      await Promise.all(done);
      commit.push(round(((performance.now() - t) * 1000) / streams));
      const out: ScoredRow[] = [];
      t = performance.now();
      for (let i = 0; i < streams; i++) book.step(steps[i]!.stream, steps[i]!.ts, steps[i]!.values, steps[i]!.filled, forecasts[i]!.values, out);
      scoring.push(round(((performance.now() - t) * 1000) / streams));
    }
  } finally {
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { scenario: 'store', streams, commit_us_per_step: commit, main_us_per_step: posting, scoring_us_per_step: scoring, key_layouts: keyLayoutBench(streams) };
}

const round = (x: number): number => Math.round(x * 10) / 10;

export function storeTable(r: StoreBenchResult): string {
  return [
    `store: ${r.streams} streams, batches of 256, µs per step (Store.commit: one step row + one forecast row of 6 cells, committed by the writer thread; main thread: packing and posting; scoring in memory)`,
    '',
    `| day | ${r.commit_us_per_step.map((_, d) => d).join(' | ')} |`,
    `|---|${r.commit_us_per_step.map(() => '---:').join('|')}|`,
    `| Store.commit (committed) | ${r.commit_us_per_step.join(' | ')} |`,
    `| Store.commit (main thread) | ${r.main_us_per_step.join(' | ')} |`,
    `| ScoreBook.step | ${r.scoring_us_per_step.join(' | ')} |`,
    ...(r.key_layouts ? ['', keyLayoutTable(r.key_layouts)] : []),
  ].join('\n');
}
