import type Database from 'better-sqlite3';
import type { StoredPrediction } from './rows.js';

const CELL_COLUMNS = `stream, model, issued_at AS issuedAt, horizon, target, target_time AS targetTime, value, label, probabilities, created_at AS createdAt`;

/**
 * Latest predictions, newest issue time first. With a stream: the latest
 * `limit` forecasts of each of its models, each a descending skip-scan of
 * `forecasts` (issued_at, sid, mid): a seek per issue time, newest first,
 * until `limit` are found; merged here. Without a stream: a scan.
 */
export function latestPredictions(db: Database.Database, opts: { stream?: string; limit: number }): StoredPrediction[] {
  if (opts.stream === undefined) {
    return db.prepare(`SELECT ${CELL_COLUMNS} FROM predictions ORDER BY issued_at DESC, stream, model, horizon, target LIMIT ?`).all(opts.limit) as StoredPrediction[];
  }
  const sid = db.prepare('SELECT sid FROM stream_ids WHERE name = ?').pluck().get(opts.stream) as number | undefined;
  if (sid === undefined) return [];
  const cells = db.prepare(
    `SELECT ${CELL_COLUMNS} FROM forecast_cells
     WHERE sid = @sid AND mid = @mid AND issued_at IN (SELECT issued_at FROM forecasts WHERE sid = @sid AND mid = @mid ORDER BY issued_at DESC LIMIT @limit)`,
  );
  const rows: StoredPrediction[] = [];
  for (const mid of db.prepare('SELECT mid FROM model_ids').pluck().all() as number[]) rows.push(...(cells.all({ sid, mid, limit: opts.limit }) as StoredPrediction[]));
  rows.sort((a, b) => b.issuedAt - a.issuedAt || cmp(a.model, b.model) || a.horizon - b.horizon || cmp(a.target, b.target));
  return rows.slice(0, opts.limit);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
