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
  /** The same steps with 80% and 95% prediction intervals on every forecast cell (as the daemon stores them by default), in a second store, day by day alternating with the first (absent in older runs). */
  commit_intervals_us_per_step?: number[];
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
const LEVELS = [0.8, 0.95];
/** LAYOUT with intervals: bounds at a resolution of 0.01 (IntervalBook's scale for half-widths of 1 to 10). */
const LAYOUT_INTERVALS: ForecastLayout = { stepMs: DAY, cells: LAYOUT.cells.map(([h, t]) => [h, t, 0, LEVELS, 100] as const) };

/** A forecast's bounds as IntervalBook gives them: value ± about 1.3 and 2.6, rounded to 0.01. */
function bounds(values: readonly number[], j: number): Float64Array {
  const b = new Float64Array(values.length * LEVELS.length * 2);
  values.forEach((v, k) => {
    const w = 1.3 + (j % 17) / 100;
    [w, 2 * w].forEach((hw, i) => {
      b[k * 4 + 2 * i] = Math.round((v - hw) * 100) / 100;
      b[k * 4 + 2 * i + 1] = Math.round((v + hw * 1.1) * 100) / 100;
    });
  });
  return b;
}

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
  const withIntervals = new Store({ path: path.join(dir, 'i.db'), retentionDays: 36500, log: silentLogger });
  withIntervals.start();
  const commit: number[] = [];
  const commitIntervals: number[] = [];
  const posting: number[] = [];
  const scoring: number[] = [];
  try {
    for (let d = 0; d < days; d++) {
      const { steps, forecasts } = day(streams, d);
      const bounded = forecasts.map((f, j) => ({ ...f, bounds: bounds(f.values, j) }));
      // Both stores each day, in turns (first one, then the other), so that neither always runs in the other's wake (its WAL checkpoint).
      const plain = async (): Promise<void> => {
        const t = performance.now();
        const done: Array<Promise<unknown>> = [];
        for (let i = 0; i < streams; i += 256) done.push(store.commit('m', LAYOUT, steps.slice(i, i + 256), forecasts.slice(i, i + 256)));
        posting.push(round(((performance.now() - t) * 1000) / streams));
        await Promise.all(done);
        commit.push(round(((performance.now() - t) * 1000) / streams));
      };
      const intervals = async (): Promise<void> => {
        const t = performance.now();
        const done: Array<Promise<unknown>> = [];
        for (let i = 0; i < streams; i += 256) done.push(withIntervals.commit('m', LAYOUT_INTERVALS, steps.slice(i, i + 256), bounded.slice(i, i + 256)));
        await Promise.all(done);
        commitIntervals.push(round(((performance.now() - t) * 1000) / streams));
      };
      for (const run of d % 2 === 0 ? [plain, intervals] : [intervals, plain]) await run();
      const out: ScoredRow[] = [];
      const t = performance.now();
      for (let i = 0; i < streams; i++) book.step(steps[i]!.stream, steps[i]!.ts, steps[i]!.values, steps[i]!.filled, forecasts[i]!.values, out);
      scoring.push(round(((performance.now() - t) * 1000) / streams));
    }
  } finally {
    await store.stop();
    await withIntervals.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { scenario: 'store', streams, commit_us_per_step: commit, commit_intervals_us_per_step: commitIntervals, main_us_per_step: posting, scoring_us_per_step: scoring, key_layouts: keyLayoutBench(streams) };
}

const round = (x: number): number => Math.round(x * 10) / 10;

export function storeTable(r: StoreBenchResult): string {
  return [
    `store: ${r.streams} streams, batches of 256, µs per step (Store.commit: one step row + one forecast row of 6 cells, committed by the writer thread; main thread: packing and posting; scoring in memory)`,
    '',
    `| day | ${r.commit_us_per_step.map((_, d) => d).join(' | ')} |`,
    `|---|${r.commit_us_per_step.map(() => '---:').join('|')}|`,
    `| Store.commit (committed) | ${r.commit_us_per_step.join(' | ')} |`,
    ...(r.commit_intervals_us_per_step ? [`| Store.commit with 80%, 95% intervals (committed) | ${r.commit_intervals_us_per_step.join(' | ')} |`] : []),
    `| Store.commit (main thread) | ${r.main_us_per_step.join(' | ')} |`,
    `| ScoreBook.step | ${r.scoring_us_per_step.join(' | ')} |`,
    ...(r.key_layouts ? ['', keyLayoutTable(r.key_layouts)] : []),
  ].join('\n');
}
