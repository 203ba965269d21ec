import type Database from 'better-sqlite3';
import { COMPACT_VIEW_NAMES, COMPACT_VIEWS } from './schema-7.js';

/**
 * Schema 10, time-major keys: `step_inputs` keyed (ts, sid) and `forecasts`
 * (issued_at, sid, mid), rebuilt in place (run by migrations.ts in one
 * transaction).
 *
 * Under schema 7's keys (stream first) every stream's next row went to a page
 * of its own once the stream had a page of history, so each row cost a page
 * read, split and write (bench/store: 6 µs and 589 WAL bytes per row at 20
 * steps per stream, 22 µs and 2,490 bytes at 100). Steps of one time sit
 * together under time-major keys: a transaction writes a few pages at the end
 * of the tree, whatever the history.
 *
 * A stream's rows are still found without a scan: steps fall on their route's
 * step grid, so many streams share each time, and SQLite's skip-scan seeks
 * (ts, sid) once per distinct time. The planner chooses it only when
 * `sqlite_stat1` says each time holds many rows; the migration writes that
 * shape (ANALYZE writes measured statistics in its place).
 */
export function migrateToTimeMajor(db: Database.Database): void {
  for (const view of COMPACT_VIEW_NAMES) db.exec(`DROP VIEW IF EXISTS ${view}`);
  db.exec(`
    CREATE TABLE step_inputs_tm (
      sid INTEGER NOT NULL,
      ts INTEGER NOT NULL,            -- event time of the step's start, ms
      received_at INTEGER NOT NULL,   -- arrival of the message that released it, ms
      fsid INTEGER NOT NULL,
      inputs TEXT NOT NULL,           -- [value, ...] in feature_sets order
      filled INTEGER NOT NULL,        -- bit i set: feature i was forward-filled
      PRIMARY KEY (ts, sid)
    ) WITHOUT ROWID;
    INSERT INTO step_inputs_tm (sid, ts, received_at, fsid, inputs, filled)
      SELECT sid, ts, received_at, fsid, inputs, filled FROM step_inputs ORDER BY ts, sid;
    DROP TABLE step_inputs;
    ALTER TABLE step_inputs_tm RENAME TO step_inputs;

    CREATE TABLE forecasts_tm (
      sid INTEGER NOT NULL,
      mid INTEGER NOT NULL,
      issued_at INTEGER NOT NULL,     -- event time of the step that produced it, ms
      lid INTEGER NOT NULL,
      created_at INTEGER NOT NULL,    -- when it was committed, ms
      vals TEXT NOT NULL CHECK (instr(vals, 'null') = 0),  -- [value, ...]; a label's probability for a classification cell
      labels TEXT,                    -- classification: [null | [label, {label: probability}], ...] per cell
      PRIMARY KEY (issued_at, sid, mid)
    ) WITHOUT ROWID;
    INSERT INTO forecasts_tm (sid, mid, issued_at, lid, created_at, vals, labels)
      SELECT sid, mid, issued_at, lid, created_at, vals, labels FROM forecasts ORDER BY issued_at, sid, mid;
    DROP TABLE forecasts;
    ALTER TABLE forecasts_tm RENAME TO forecasts;
  `);
  db.exec(COMPACT_VIEWS);
  writeShapeStatistics(db);
}

/**
 * The statistics that let the planner seek a stream's rows by skip-scan: about
 * a thousand rows per distinct time (the figures are a shape, not a count).
 */
export function writeShapeStatistics(db: Database.Database): void {
  db.exec(`
    ANALYZE sqlite_schema;
    DELETE FROM sqlite_stat1 WHERE tbl IN ('step_inputs', 'forecasts');
    INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('step_inputs', 'step_inputs', '1000000 1000 1'), ('forecasts', 'forecasts', '1000000 1000 1 1');
    ANALYZE sqlite_schema;
  `);
}
