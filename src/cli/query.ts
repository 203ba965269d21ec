import { parseArgs } from 'node:util';
import { findConfigFile, loadConfig } from '../config/load-config.js';
import { ExitCodes } from '../exit-codes.js';
import type { CliIo } from './io.js';
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { ErrorCodes, TidecastError } from '../errors.js';
import { rollingAccuracy, type AccuracyRow } from '../store/accuracy.js';
import { latestPredictions, type StoredPrediction } from '../store/store.js';

function withDatabase<T>(file: string, read: (db: Database.Database) => T): T {
  if (!existsSync(file)) throw new TidecastError(ErrorCodes.STORE, `no database at ${file} (use --db PATH, or --config to read store.path)`);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** Read the latest predictions from a tidecast database (read-only; safe while the daemon runs). */
export function queryPredictions(file: string, opts: { stream?: string; limit: number }): StoredPrediction[] {
  return withDatabase(file, (db) => latestPredictions(db, opts));
}

/** Rolling online accuracy per stream × model × horizon × target. */
export function queryAccuracy(file: string, opts: { stream?: string; window: number }): AccuracyRow[] {
  return withDatabase(file, (db) => rollingAccuracy(db, opts));
}

export function formatAccuracy(rows: readonly AccuracyRow[], window: number): string {
  if (rows.length === 0) return '(no scored forecasts yet: errors are stored when the actual for a target time arrives)';
  const w = Math.max(6, ...rows.map((r) => r.stream.length));
  const m = Math.max(5, ...rows.map((r) => r.model.length));
  const t = Math.max(6, ...rows.map((r) => r.target.length));
  const f = (x: number): string => x.toFixed(3).padStart(7);
  const levels = [...new Set(rows.flatMap((r) => Object.keys(r.coverage)))].sort((a, b) => Number(a) - Number(b));
  const covHead = levels.map((l) => `cov${Math.round(Number(l) * 100)}`.padStart(7)).join('  ');
  const head = `${'stream'.padEnd(w)}  ${'model'.padEnd(m)}  h  ${'target'.padEnd(t)}      n      mae     rmse     bias  pers.mae   skill${levels.length > 0 ? `  ${covHead}` : ''}`;
  const cov = (r: AccuracyRow): string => levels.map((l) => (r.coverage[l] === undefined ? '      -' : f(r.coverage[l]!))).join('  ');
  return [
    `rolling accuracy over the latest ${window} scored forecasts (skill = 1 - mae / persistence mae${levels.length > 0 ? '; covNN: fraction of actuals inside the NN% interval' : ''})`,
    head,
    ...rows.map((r) => `${r.stream.padEnd(w)}  ${r.model.padEnd(m)}  ${r.horizon}  ${r.target.padEnd(t)}  ${String(r.n).padStart(5)}  ${f(r.mae)}  ${f(r.rmse)}  ${f(r.bias)}  ${f(r.persistenceMae)}  ${r.skill === null ? '      -' : f(r.skill)}${levels.length > 0 ? `  ${cov(r)}` : ''}`),
  ].join('\n');
}

/** The predictions as a table, one line per row. */
export function formatPredictions(rows: readonly StoredPrediction[]): string {
  if (rows.length === 0) return '(no predictions)';
  const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
  const w = Math.max(6, ...rows.map((r) => r.stream.length));
  const m = Math.max(5, ...rows.map((r) => r.model.length));
  const t = Math.max(6, ...rows.map((r) => r.target.length));
  const head = `${'stream'.padEnd(w)}  ${'model'.padEnd(m)}  ${'issued_at'.padEnd(20)}  h  ${'target'.padEnd(t)}  ${'target_time'.padEnd(20)}  value`;
  // A classification target shows its label and that label's probability.
  const value = (r: StoredPrediction): string => (r.label == null ? r.value.toFixed(3) : `${r.label} (p=${r.value.toFixed(3)})`);
  return [head, ...rows.map((r) => `${r.stream.padEnd(w)}  ${r.model.padEnd(m)}  ${iso(r.issuedAt).padEnd(20)}  ${String(r.horizon).padStart(1)}  ${r.target.padEnd(t)}  ${iso(r.targetTime).padEnd(20)}  ${value(r)}`)].join('\n');
}

/** `tidecast query`: the latest stored predictions, or rolling accuracy, read-only. */
export default async function queryCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      db: { type: 'string' },
      config: { type: 'string' },
      stream: { type: 'string' },
      limit: { type: 'string', default: '20' },
      json: { type: 'boolean' },
      accuracy: { type: 'boolean' },
      window: { type: 'string', default: '100' },
    },
  });
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) {
    io.err('tidecast query: --limit must be a positive integer');
    return ExitCodes.USAGE;
  }
  const db = values.db ?? loadConfig(findConfigFile(values.config, process.env, process.cwd()), process.env).config.store.path;
  if (values.accuracy) {
    const window = Number(values.window);
    if (!Number.isInteger(window) || window < 1) {
      io.err('tidecast query: --window must be a positive integer');
      return ExitCodes.USAGE;
    }
    const acc = queryAccuracy(db, { stream: values.stream, window });
    if (values.json) for (const r of acc) io.out(JSON.stringify(r));
    else io.out(formatAccuracy(acc, window));
    return 0;
  }
  const rows = queryPredictions(db, { stream: values.stream, limit });
  if (values.json) for (const r of rows) io.out(JSON.stringify(r));
  else io.out(formatPredictions(rows));
  return 0;
}
