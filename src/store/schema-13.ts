import type Database from 'better-sqlite3';

/**
 * Schema 13: `forecast_errors` with its join order fixed. Left to the planner,
 * its second join with `step_values` (the persistence value at the issue
 * step) was made through an automatic index on the stream alone, with each
 * of the stream's steps expanded from JSON for every forecast cell: 52 s for
 * a 2-station, 4-year replay's 17,508 rows, where the join by (ts, sid) on
 * step_inputs' primary key takes 70 ms (CROSS JOIN keeps the order written).
 */
export const FORECAST_ERRORS_VIEW = `
  CREATE VIEW forecast_errors AS
    SELECT p.stream, p.model, p.issued_at, p.horizon, p.target, p.target_time, p.value AS predicted, a.value AS actual, b.value AS persistence,
           p.levels, p.bounds
    FROM forecast_cells p
    CROSS JOIN step_values a ON a.sid = p.sid AND a.ts = p.target_time AND a.feature = p.target AND a.filled = 0
    CROSS JOIN step_values b ON b.sid = p.sid AND b.ts = p.issued_at AND b.feature = p.target
    WHERE p.label IS NULL;
`;

export function fixErrorsJoin(db: Database.Database): void {
  db.exec('DROP VIEW IF EXISTS forecast_errors');
  db.exec(FORECAST_ERRORS_VIEW);
}
