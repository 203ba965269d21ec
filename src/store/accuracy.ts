import type Database from 'better-sqlite3';

/** Online accuracy of one stream × model × horizon × target over its latest scored forecasts. */
export interface AccuracyRow {
  stream: string;
  model: string;
  horizon: number;
  target: string;
  /** Forecasts scored (at most the window). */
  n: number;
  mae: number;
  rmse: number;
  /** Mean of forecast − actual: positive means the model runs high. */
  bias: number;
  /** MAE of the persistence forecast on the same steps. */
  persistenceMae: number;
  /** 1 − MAE / persistence MAE: above 0 the model beats "same as now". */
  skill: number | null;
  lastTargetTime: number;
  /** Empirical coverage of the prediction intervals by level ("0.8": the fraction of actuals inside); {} without intervals. */
  coverage: Record<string, number>;
}

/** Interval levels a layout can have (config `intervals.levels`, at most 4): one coverage column each. */
const MAX_LEVELS = 4;

/** The query of `rollingAccuracy`, filtered by `@stream` and `@model` when they are given. */
export function rollingAccuracySql(filters: { stream: boolean; model: boolean }): string {
  // Filters are spelled out, not `(@x IS NULL OR col = @x)`, which keeps SQLite off the index.
  const where = [filters.stream ? 'stream = @stream' : null, filters.model ? 'model = @model' : null].filter(Boolean);
  return `WITH ranked AS (
         SELECT *, row_number() OVER (PARTITION BY stream, model, horizon, target ORDER BY target_time DESC) AS k
         FROM forecast_errors
         ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       )
       SELECT stream, model, horizon, target, count(*) AS n,
              avg(abs(predicted - actual)) AS mae,
              sqrt(avg((predicted - actual) * (predicted - actual))) AS rmse,
              avg(predicted - actual) AS bias,
              avg(abs(persistence - actual)) AS persistenceMae,
              max(target_time) AS lastTargetTime,
              max(levels) AS levels,
              ${Array.from({ length: MAX_LEVELS }, (_, l) => `avg(CASE WHEN bounds IS NULL THEN NULL WHEN actual BETWEEN json_extract(bounds, '$[${2 * l}]') AND json_extract(bounds, '$[${2 * l + 1}]') THEN 1.0 ELSE 0.0 END) AS cov${l}`).join(',\n              ')}
       FROM ranked WHERE k <= @window
       GROUP BY stream, model, horizon, target
       ORDER BY stream, model, horizon, target`;
}

/**
 * Rolling accuracy from `forecast_errors`: the latest `window` scored forecasts
 * of each stream × model × horizon × target.
 */
export function rollingAccuracy(db: Database.Database, opts: { window: number; stream?: string; model?: string }): AccuracyRow[] {
  const rows = db
    .prepare(rollingAccuracySql({ stream: opts.stream !== undefined, model: opts.model !== undefined }))
    .all({ window: opts.window, stream: opts.stream ?? null, model: opts.model ?? null }) as Array<Omit<AccuracyRow, 'skill' | 'coverage'> & { levels: string | null } & Record<`cov${number}`, number | null>>;
  return rows.map(({ levels, cov0, cov1, cov2, cov3, ...r }) => {
    const coverage: Record<string, number> = {};
    const covs = [cov0, cov1, cov2, cov3];
    (levels ? (JSON.parse(levels) as number[]) : []).forEach((level, l) => {
      if (covs[l] !== null && covs[l] !== undefined) coverage[String(level)] = covs[l]!;
    });
    return { ...r, skill: r.persistenceMae > 0 ? 1 - r.mae / r.persistenceMae : null, coverage };
  });
}
