import type Database from 'better-sqlite3';
import { COMPACT_VIEW_NAMES } from './schema-7.js';

/**
 * The views over the compact tables from schema 11 on: schema 7's, with each
 * forecast cell's prediction intervals (`levels`, a JSON array of the
 * layout's levels, and `bounds`, lower and upper per level, in the target's
 * units: the stored integers over the cell's scale), and
 * `prediction_intervals`, one row per forecast cell and level.
 */
export const INTERVAL_VIEWS = `
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
           json_extract(f.labels, '$[' || c.key || '][1]') AS probabilities,
           json_extract(c.value, '$[3]') AS levels,
           CASE WHEN f.bounds IS NULL OR json_extract(c.value, '$[4]') IS NULL THEN NULL
                ELSE (SELECT json_group_array(CAST(b.value AS REAL) / json_extract(c.value, '$[4]')) FROM json_each(f.bounds, '$[' || c.key || ']') b) END AS bounds
    FROM forecasts f JOIN stream_ids s ON s.sid = f.sid JOIN model_ids m ON m.mid = f.mid
         JOIN forecast_layouts l ON l.lid = f.lid, json_each(l.cells) c;
  CREATE VIEW predictions AS
    SELECT stream, model, issued_at, horizon, target, target_time, value, created_at, label, probabilities, levels, bounds FROM forecast_cells;
  CREATE VIEW prediction_intervals AS
    SELECT p.stream, p.model, p.issued_at, p.horizon, p.target, p.target_time, p.value, l.value AS level,
           json_extract(p.bounds, '$[' || (2 * l.key) || ']') AS lower,
           json_extract(p.bounds, '$[' || (2 * l.key + 1) || ']') AS upper
    FROM forecast_cells p, json_each(p.levels) l
    WHERE p.bounds IS NOT NULL;
  CREATE VIEW forecast_errors AS
    SELECT p.stream, p.model, p.issued_at, p.horizon, p.target, p.target_time, p.value AS predicted, a.value AS actual, b.value AS persistence,
           p.levels, p.bounds
    FROM forecast_cells p
    JOIN step_values a ON a.sid = p.sid AND a.ts = p.target_time AND a.feature = p.target AND a.filled = 0
    JOIN step_values b ON b.sid = p.sid AND b.ts = p.issued_at AND b.feature = p.target
    WHERE p.label IS NULL;
`;

/** Names of INTERVAL_VIEWS, in the order they can be dropped (a view before those it reads). */
export const INTERVAL_VIEW_NAMES = ['forecast_errors', 'prediction_intervals', 'predictions', 'forecast_cells', 'steps', 'step_values', 'streams'] as const;

/**
 * Schema 11, prediction intervals: `forecasts.bounds` holds a forecast's
 * intervals (per layout cell, [lower, upper] per level of the layout as
 * integers, bound × the cell's scale; null for a cell without intervals;
 * NULL for a forecast without intervals), and a numeric cell of a layout
 * with intervals names its levels and that scale as a fourth and fifth
 * element ([horizon, target, 0, [0.8, 0.95], 100]).
 */
export function addIntervals(db: Database.Database): void {
  for (const view of COMPACT_VIEW_NAMES) db.exec(`DROP VIEW IF EXISTS ${view}`);
  db.exec(`ALTER TABLE forecasts ADD COLUMN bounds TEXT;`);
  db.exec(INTERVAL_VIEWS);
}
