import type Database from 'better-sqlite3';
import { migrateToTimeMajor } from './schema-10.js';
import { addIntervals } from './schema-11.js';
import { packBounds } from './schema-12.js';
import { fixErrorsJoin } from './schema-13.js';
import { migrateToCompact } from './schema-7.js';

/** One migration: SQL, or a function for one that moves data (run in the same transaction). */
export type Migration = string | ((db: Database.Database) => void);

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many
 * have run. Never edit a shipped migration: append a new one.
 */
export const MIGRATIONS: readonly Migration[] = [
  // 1: streams, consumed steps (the actuals), predictions, events, dead letters.
  `
  CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;

  -- One row per step a stream fed its models: the actual values, in physical units.
  CREATE TABLE steps (
    stream TEXT NOT NULL,
    ts INTEGER NOT NULL,            -- event time, ms since the epoch
    received_at INTEGER NOT NULL,   -- arrival time, ms
    topic TEXT NOT NULL,
    values_json TEXT NOT NULL,      -- {"feature": value, ...}
    PRIMARY KEY (stream, ts)
  ) WITHOUT ROWID;

  -- One row per (step, horizon, target). value is NOT NULL and finite: SQLite
  -- stores NaN as NULL, and the CHECK refuses ±Infinity.
  CREATE TABLE predictions (
    stream TEXT NOT NULL,
    model TEXT NOT NULL,
    issued_at INTEGER NOT NULL,     -- event time of the step that produced it, ms
    horizon INTEGER NOT NULL,       -- steps ahead
    target TEXT NOT NULL,
    target_time INTEGER NOT NULL,   -- issued_at + horizon * step, ms
    value REAL NOT NULL CHECK (abs(value) <= 1.7976931348623157e308),
    created_at INTEGER NOT NULL,    -- when it was committed, ms
    PRIMARY KEY (stream, model, issued_at, horizon, target)
  ) WITHOUT ROWID;
  -- "Latest N predictions of a stream" (any model) and retention by time.
  CREATE INDEX predictions_by_stream_time ON predictions (stream, issued_at);
  CREATE INDEX predictions_by_time ON predictions (issued_at);
  CREATE INDEX steps_by_time ON steps (ts);

  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    stream TEXT,
    model TEXT,
    kind TEXT NOT NULL,             -- state_reset, ...
    detail TEXT
  );
  CREATE INDEX events_by_stream ON events (stream, at);

  CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,           -- no_route, too_large, bad_json, missing_field, ...
    detail TEXT NOT NULL,
    payload BLOB NOT NULL,          -- the message as received (first 1 KiB when too_large)
    payload_bytes INTEGER NOT NULL
  );
  CREATE INDEX dead_letters_by_time ON dead_letters (received_at);
  `,
  // 2: online evaluation. A step records which features were forward-filled; when
  // a step arrives, each model's predictions for its time get their error stored.
  `
  ALTER TABLE steps ADD COLUMN filled TEXT NOT NULL DEFAULT '';  -- comma-separated feature names
  CREATE INDEX predictions_by_target ON predictions (stream, model, target_time);
  CREATE TABLE forecast_errors (
    stream TEXT NOT NULL,
    model TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    horizon INTEGER NOT NULL,
    target TEXT NOT NULL,
    target_time INTEGER NOT NULL,
    predicted REAL NOT NULL,
    actual REAL NOT NULL,
    persistence REAL NOT NULL,      -- the target's value at issued_at: "same as now"
    PRIMARY KEY (stream, model, issued_at, horizon, target)
  ) WITHOUT ROWID;
  CREATE INDEX forecast_errors_by_time ON forecast_errors (stream, model, horizon, target, target_time);
  `,
  // 3: dead letters remember their stream when the topic got that far (the dashboard lists them per stream).
  `
  ALTER TABLE dead_letters ADD COLUMN stream TEXT;
  CREATE INDEX dead_letters_by_stream ON dead_letters (stream, received_at);
  `,
  // 4: durability. Every accepted message is logged before its PUBACK; a
  // checkpoint records each stream's state as of one log position, and
  // recovery replays the log after it. Rows the data path writes carry the log
  // position (seq) of the message that caused them, so a replay adds nothing twice.
  `
  CREATE TABLE input_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, -- log position; never reused, even after the log is trimmed
    kind INTEGER NOT NULL,          -- 0: message, 1: clock tick (wall-clock step closing)
    received_at INTEGER NOT NULL,   -- arrival time (or the tick's time), ms
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
  );
  -- A stream's step assembly as of the checkpoint (resident: it was in memory and
  -- is restored at start; otherwise it was spilled after idling and loads on return).
  CREATE TABLE stream_state (
    grp TEXT NOT NULL,              -- the models a route runs, joined with '+'
    stream TEXT NOT NULL,
    resident INTEGER NOT NULL,
    last_active INTEGER NOT NULL,   -- ms
    assembler TEXT NOT NULL,        -- JSON
    PRIMARY KEY (grp, stream)
  ) WITHOUT ROWID;
  -- A stream's recurrent state (or window) in one model, float32 little-endian.
  CREATE TABLE model_state (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- the model file it belongs to
    state BLOB NOT NULL,
    filled INTEGER NOT NULL,        -- steps in a window (windowed models)
    PRIMARY KEY (stream, model)
  ) WITHOUT ROWID;
  CREATE TABLE checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,           -- every input_log row up to here is reflected in the state tables
    at INTEGER NOT NULL,
    streams INTEGER NOT NULL
  );
  ALTER TABLE events ADD COLUMN seq INTEGER;
  CREATE UNIQUE INDEX events_once ON events (seq, kind, ifnull(stream, ''), ifnull(model, ''), at) WHERE seq IS NOT NULL;
  ALTER TABLE dead_letters ADD COLUMN seq INTEGER;
  CREATE UNIQUE INDEX dead_letters_once ON dead_letters (seq) WHERE seq IS NOT NULL;
  `,
  // 5: a lighter write path (bench/e2e: each prediction row paid for four B-trees). Scoring finds an
  // arriving step's forecasts by primary key (their issue times are the step's time minus each
  // horizon), and pruning walks predictions_by_stream_time stream by stream, so these two go.
  `
  DROP INDEX predictions_by_target;
  DROP INDEX predictions_by_time;
  `,
  // 6: classification heads. A prediction of a target with labels stores the most probable
  // label, its probability in value, and every label's probability as JSON; numeric targets
  // leave both NULL (and only they are scored against actuals).
  `
  ALTER TABLE predictions ADD COLUMN label TEXT;
  ALTER TABLE predictions ADD COLUMN probabilities TEXT;  -- {"label": probability, ...}
  `,
  // 7: the compact schema (bench/e2e: storage cost ten times the inference). Names are interned to
  // integers; one row per step holds its inputs (a JSON array in the order of its feature set) and one
  // row per (stream, model, issue step) holds every horizon x target of a forecast. Errors are scored
  // in memory and kept as aggregates per time bucket. predictions, steps, streams and forecast_errors
  // become views with their old columns, so hand-written and Grafana queries keep working.
  migrateToCompact,
  // 8: the input log moves to a file of its own (<store>-inputs), written only by the main thread,
  // so that an append before a PUBACK never waits for the writer thread's transactions on this file.
  // The store copies the rows an older version left here into it before this runs.
  `
  DROP TABLE IF EXISTS input_log;
  `,
  // 9: incremental checkpoints. A checkpoint writes its streams in chunks while messages flow, each
  // stream as it stood at some log position: seq, recorded with it. Recovery replays the log from the
  // last complete checkpoint and skips, per stream, the inputs its stored state already reflects.
  `
  ALTER TABLE stream_state ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
  `,
  // 10: time-major keys (bench/store: under stream-first keys a row cost a page of its own once its
  // stream had history, 22 us at 100 steps per stream). step_inputs and forecasts are rebuilt keyed
  // by time first; a stream's rows are found by skip-scan (see schema-10.ts), retention deletes a range.
  migrateToTimeMajor,
  // 11: prediction intervals. forecasts.bounds holds each forecast's intervals (per cell, lower and
  // upper per level); a layout's numeric cells name their levels; the views show both, and
  // prediction_intervals has one row per cell and level.
  addIntervals,
  // 12: packed bounds. forecasts.bounds becomes a BLOB of 2- or 4-byte integers (codec.ts boundsBlob)
  // where it held JSON text: about a third of the bytes, and no text to build per forecast (bench/store).
  packBounds,
  // 13: forecast_errors joins step_values in the order written (CROSS JOIN): the planner had chosen
  // an automatic index on the stream alone for the persistence join, quadratic in a stream's steps.
  fixErrorsJoin,
];
