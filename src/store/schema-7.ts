import type Database from 'better-sqlite3';

/**
 * Schema 7, the compact schema: its tables and views, and the move of a
 * schema-6 database into them (run by migrations.ts in one transaction).
 */

const DAY_MS = 86_400_000;
const BUCKET_STEPS = 7;

/** Length of an accuracy bucket for a model's step: a day, or seven steps when a step is longer than a few hours. */
export function bucketMsFor(stepMs: number): number {
  return Math.max(DAY_MS, BUCKET_STEPS * stepMs);
}

/**
 * The views that keep the compact tables pleasant to query by hand and from
 * Grafana: the old tables' rows, computed on read (schema 10 creates them
 * again after rebuilding the tables under them).
 */
export const COMPACT_VIEWS = `
  CREATE VIEW streams AS
    SELECT s.name AS id, s.route, s.first_seen,
           ifnull((SELECT received_at FROM step_inputs i WHERE i.sid = s.sid ORDER BY ts DESC LIMIT 1), s.first_seen) AS last_seen,
           (SELECT count(*) FROM step_inputs i WHERE i.sid = s.sid) AS steps
    FROM stream_ids s;
  CREATE VIEW step_values AS
    SELECT i.sid, i.ts, f.value AS feature, json_extract(i.inputs, '$[' || f.key || ']') AS value, (i.filled >> f.key) & 1 AS filled
    FROM step_inputs i JOIN feature_sets fs ON fs.fsid = i.fsid, json_each(fs.names) f;
  CREATE VIEW steps AS
    SELECT s.name AS stream, i.ts, i.received_at,
           (SELECT json_group_object(f.value, json_extract(i.inputs, '$[' || f.key || ']')) FROM json_each(fs.names) f) AS values_json,
           (SELECT ifnull(group_concat(f.value, ','), '') FROM json_each(fs.names) f WHERE (i.filled >> f.key) & 1) AS filled
    FROM step_inputs i JOIN stream_ids s ON s.sid = i.sid JOIN feature_sets fs ON fs.fsid = i.fsid;
  CREATE VIEW forecast_cells AS
    SELECT f.sid, f.mid, s.name AS stream, m.name AS model, f.issued_at,
           json_extract(c.value, '$[0]') AS horizon, json_extract(c.value, '$[1]') AS target,
           f.issued_at + json_extract(c.value, '$[0]') * l.step_ms AS target_time,
           json_extract(f.vals, '$[' || c.key || ']') AS value, f.created_at,
           json_extract(f.labels, '$[' || c.key || '][0]') AS label,
           json_extract(f.labels, '$[' || c.key || '][1]') AS probabilities
    FROM forecasts f JOIN stream_ids s ON s.sid = f.sid JOIN model_ids m ON m.mid = f.mid
         JOIN forecast_layouts l ON l.lid = f.lid, json_each(l.cells) c;
  CREATE VIEW predictions AS
    SELECT stream, model, issued_at, horizon, target, target_time, value, created_at, label, probabilities FROM forecast_cells;
  CREATE VIEW forecast_errors AS
    SELECT p.stream, p.model, p.issued_at, p.horizon, p.target, p.target_time, p.value AS predicted, a.value AS actual, b.value AS persistence
    FROM forecast_cells p
    JOIN step_values a ON a.sid = p.sid AND a.ts = p.target_time AND a.feature = p.target AND a.filled = 0
    JOIN step_values b ON b.sid = p.sid AND b.ts = p.issued_at AND b.feature = p.target
    WHERE p.label IS NULL;
`;

/** Names of COMPACT_VIEWS, in the order they can be dropped (a view before those it reads). */
export const COMPACT_VIEW_NAMES = ['forecast_errors', 'predictions', 'forecast_cells', 'steps', 'step_values', 'streams'] as const;

/** Schema 7's tables and views (see docs/ARCHITECTURE.md, "The database"). */
export const COMPACT_SCHEMA = `
  CREATE TABLE stream_ids (
    sid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    route TEXT NOT NULL,
    first_seen INTEGER NOT NULL     -- arrival of its first stored step, ms
  );
  CREATE TABLE model_ids (
    mid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
  );
  -- The feature names of a route's steps, in the order step_inputs.inputs holds them (a JSON array).
  CREATE TABLE feature_sets (
    fsid INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE
  );
  -- How a model's forecast vector reads: cells [[horizon, target, classification 0/1], ...] in the
  -- order forecasts.vals holds them, and the step length that turns a horizon into a target time.
  CREATE TABLE forecast_layouts (
    lid INTEGER PRIMARY KEY,
    mid INTEGER NOT NULL REFERENCES model_ids (mid),
    step_ms INTEGER NOT NULL,
    cells TEXT NOT NULL,
    UNIQUE (mid, step_ms, cells)
  );
  -- One row per step a stream fed its models: the actuals, in physical units.
  CREATE TABLE step_inputs (
    sid INTEGER NOT NULL,
    ts INTEGER NOT NULL,            -- event time of the step's start, ms
    received_at INTEGER NOT NULL,   -- arrival of the message that released it, ms
    fsid INTEGER NOT NULL,
    inputs TEXT NOT NULL,           -- [value, ...] in feature_sets order
    filled INTEGER NOT NULL,        -- bit i set: feature i was forward-filled
    PRIMARY KEY (sid, ts)
  ) WITHOUT ROWID;
  -- One row per (stream, model, issue step): every cell of the layout. A non-finite value would be
  -- JSON null, which the CHECK refuses (NaN must never be stored silently).
  CREATE TABLE forecasts (
    sid INTEGER NOT NULL,
    mid INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,     -- event time of the step that produced it, ms
    lid INTEGER NOT NULL,
    created_at INTEGER NOT NULL,    -- when it was committed, ms
    vals TEXT NOT NULL CHECK (instr(vals, 'null') = 0),  -- [value, ...]; a label's probability for a classification cell
    labels TEXT,                    -- classification: [null | [label, {label: probability}], ...] per cell
    PRIMARY KEY (sid, mid, issued_at)
  ) WITHOUT ROWID;
  -- Online accuracy: errors of numeric forecasts summed per time bucket of their target time.
  CREATE TABLE accuracy (
    sid INTEGER NOT NULL,
    mid INTEGER NOT NULL,
    horizon INTEGER NOT NULL,
    target TEXT NOT NULL,
    bucket INTEGER NOT NULL,        -- start of the bucket, ms
    n INTEGER NOT NULL,
    sum_abs REAL NOT NULL,          -- sum |predicted - actual|
    sum_sq REAL NOT NULL,           -- sum (predicted - actual)^2
    sum_err REAL NOT NULL,          -- sum (predicted - actual)
    sum_pabs REAL NOT NULL,         -- sum |persistence - actual|
    last_target_time INTEGER NOT NULL,
    PRIMARY KEY (sid, mid, horizon, target, bucket)
  ) WITHOUT ROWID;
  -- A stream-model's forecasts still waiting for their actuals (scored in memory), as of the checkpoint.
  ALTER TABLE model_state ADD COLUMN pending BLOB;

${COMPACT_VIEWS}`;

/** Schema 6 → 7: create the compact tables, move every step and prediction into them, drop the old tables. */
export function migrateToCompact(db: Database.Database): void {
  db.exec(`
    ALTER TABLE streams RENAME TO streams_v6;
    ALTER TABLE steps RENAME TO steps_v6;
    ALTER TABLE predictions RENAME TO predictions_v6;
    ALTER TABLE forecast_errors RENAME TO forecast_errors_v6;
  `);
  db.exec(COMPACT_SCHEMA);
  const intern = (table: string, key: string, col: string) => {
    const find = db.prepare(`SELECT ${key} FROM ${table} WHERE ${col} = ?`).pluck();
    const add = db.prepare(`INSERT INTO ${table} (${col}) VALUES (?)`);
    return (v: string): number => (find.get(v) as number | undefined) ?? Number(add.run(v).lastInsertRowid);
  };
  const fsid = intern('feature_sets', 'fsid', 'names');
  const mid = intern('model_ids', 'mid', 'name');
  db.exec('INSERT INTO stream_ids (name, route, first_seen) SELECT id, route, first_seen FROM streams_v6 ORDER BY id');
  const sidOf = db.prepare('SELECT sid FROM stream_ids WHERE name = ?').pluck();
  const addStream = db.prepare('INSERT INTO stream_ids (name, route, first_seen) VALUES (?, ?, ?)');
  const sid = (name: string, at: number): number => (sidOf.get(name) as number | undefined) ?? Number(addStream.run(name, '', at).lastInsertRowid);
  const putStep = db.prepare('INSERT INTO step_inputs (sid, ts, received_at, fsid, inputs, filled) VALUES (?, ?, ?, ?, ?, ?)');
  type OldStep = { stream: string; ts: number; received_at: number; values_json: string; filled: string };
  // Pages by primary key: better-sqlite3 runs no other statement while a cursor is open.
  for (const r of pages<OldStep>(db, 'SELECT stream, ts, received_at, values_json, filled FROM steps_v6', ['stream', 'ts'])) {
    const values = JSON.parse(r.values_json) as Record<string, number>;
    const names = Object.keys(values);
    const filled = new Set(r.filled.split(',').filter(Boolean));
    const mask = names.reduce((m, f, i) => (filled.has(f) && i < 53 ? m + 2 ** i : m), 0);
    putStep.run(sid(r.stream, r.received_at), r.ts, r.received_at, fsid(JSON.stringify(names)), JSON.stringify(names.map((f) => values[f])), mask);
  }
  const layoutOf = db.prepare('SELECT lid FROM forecast_layouts WHERE mid = ? AND step_ms = ? AND cells = ?').pluck();
  const addLayout = db.prepare('INSERT INTO forecast_layouts (mid, step_ms, cells) VALUES (?, ?, ?)');
  const putForecast = db.prepare('INSERT INTO forecasts (sid, mid, issued_at, lid, created_at, vals, labels) VALUES (?, ?, ?, ?, ?, ?, ?)');
  type Old = { stream: string; model: string; issued_at: number; horizon: number; target: string; target_time: number; value: number; created_at: number; label: string | null; probabilities: string | null };
  let group: Old[] = [];
  const flush = (): void => {
    if (group.length === 0) return;
    const g = group[0]!;
    const m = mid(g.model);
    const stepMs = g.horizon > 0 ? (g.target_time - g.issued_at) / g.horizon : 0;
    const cells = JSON.stringify(group.map((p) => [p.horizon, p.target, p.label === null ? 0 : 1]));
    const lid = (layoutOf.get(m, stepMs, cells) as number | undefined) ?? Number(addLayout.run(m, stepMs, cells).lastInsertRowid);
    const labels = group.some((p) => p.label !== null) ? JSON.stringify(group.map((p) => (p.label === null ? null : [p.label, JSON.parse(p.probabilities ?? '{}')]))) : null;
    putForecast.run(sid(g.stream, g.created_at), m, g.issued_at, lid, g.created_at, JSON.stringify(group.map((p) => p.value)), labels);
    group = [];
  };
  for (const p of pages<Old>(db, 'SELECT * FROM predictions_v6', ['stream', 'model', 'issued_at', 'horizon', 'target'])) {
    const g = group[0];
    if (g && (g.stream !== p.stream || g.model !== p.model || g.issued_at !== p.issued_at)) flush();
    group.push(p);
  }
  flush();
  // The stored errors become accuracy buckets (the same bucket length as bucketMsFor).
  for (const m of db.prepare('SELECT DISTINCT model FROM forecast_errors_v6').pluck().all() as string[]) mid(m);
  db.exec(`
    INSERT INTO accuracy (sid, mid, horizon, target, bucket, n, sum_abs, sum_sq, sum_err, sum_pabs, last_target_time)
    SELECT s.sid, m.mid, e.horizon, e.target, (e.target_time / e.bms) * e.bms, count(*), sum(abs(e.predicted - e.actual)),
           sum((e.predicted - e.actual) * (e.predicted - e.actual)), sum(e.predicted - e.actual), sum(abs(e.persistence - e.actual)), max(e.target_time)
    FROM (SELECT *, max(${DAY_MS}, ${BUCKET_STEPS} * ((target_time - issued_at) / horizon)) AS bms FROM forecast_errors_v6 WHERE horizon > 0) e
    JOIN stream_ids s ON s.name = e.stream JOIN model_ids m ON m.name = e.model
    GROUP BY 1, 2, 3, 4, 5;
    DROP TABLE streams_v6; DROP TABLE steps_v6; DROP TABLE predictions_v6; DROP TABLE forecast_errors_v6;
  `);
}

/** Every row of a query, read in pages along `key` (the table's primary key). */
function* pages<T extends Record<string, unknown>>(db: Database.Database, select: string, key: readonly string[], size = 10_000): Generator<T> {
  const cols = key.join(', ');
  const first = db.prepare(`${select} ORDER BY ${cols} LIMIT ?`);
  const next = db.prepare(`${select} WHERE (${cols}) > (${key.map(() => '?').join(', ')}) ORDER BY ${cols} LIMIT ?`);
  let page = first.all(size) as T[];
  while (page.length > 0) {
    yield* page;
    const last = page[page.length - 1]!;
    page = next.all(...key.map((k) => last[k]), size) as T[];
  }
}
