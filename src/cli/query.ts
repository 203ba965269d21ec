import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { ErrorCodes, TidecastError } from '../errors.js';
import { latestPredictions, type StoredPrediction } from '../store/store.js';

/** Read the latest predictions from a tidecast database (read-only; safe while the daemon runs). */
export function queryPredictions(file: string, opts: { stream?: string; limit: number }): StoredPrediction[] {
  if (!existsSync(file)) throw new TidecastError(ErrorCodes.STORE, `no database at ${file} (use --db PATH, or --config to read store.path)`);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return latestPredictions(db, opts);
  } finally {
    db.close();
  }
}

/** The predictions as a table, one line per row. */
export function formatPredictions(rows: readonly StoredPrediction[]): string {
  if (rows.length === 0) return '(no predictions)';
  const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
  const w = Math.max(6, ...rows.map((r) => r.stream.length));
  const m = Math.max(5, ...rows.map((r) => r.model.length));
  const t = Math.max(6, ...rows.map((r) => r.target.length));
  const head = `${'stream'.padEnd(w)}  ${'model'.padEnd(m)}  ${'issued_at'.padEnd(20)}  h  ${'target'.padEnd(t)}  ${'target_time'.padEnd(20)}  value`;
  return [head, ...rows.map((r) => `${r.stream.padEnd(w)}  ${r.model.padEnd(m)}  ${iso(r.issuedAt).padEnd(20)}  ${String(r.horizon).padStart(1)}  ${r.target.padEnd(t)}  ${iso(r.targetTime).padEnd(20)}  ${r.value.toFixed(3)}`)].join('\n');
}
