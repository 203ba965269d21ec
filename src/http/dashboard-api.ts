import type Database from 'better-sqlite3';
import { rollingAccuracy } from '../store/accuracy.js';
import type { AccuracyDelta } from '../store/rows.js';

/** What the API knows about a loaded model besides the database. */
export interface ApiModel {
  name: string;
  provider: string;
  mode: string;
  path: string;
  card: unknown;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

/** Largest number of rows any list or series returns: responses stay bounded on any database. */
export const MAX_POINTS = 5000;
const MAX_STREAMS = 500;
const DAY = 86_400_000;

const int = (v: string | null, fallback: number, min: number, max: number): number => {
  const n = v === null || v === '' ? NaN : Number(v);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, Math.trunc(n))) : fallback;
};

/**
 * The API's lookups of one stream, whose plans the comments here describe
 * (test/store.test.ts runs EXPLAIN QUERY PLAN on each).
 */
export const STREAM_LOOKUP_SQL = {
  // A descending skip-scan that stops at the latest step.
  lastStep: 'SELECT ts, received_at, values_json FROM steps WHERE stream = ? ORDER BY ts DESC LIMIT 1',
  // One descending skip-scan per stream x loaded model, which stops at the stream's latest forecast.
  lastIssue: 'SELECT max(f.issued_at) FROM forecasts f WHERE f.sid = (SELECT sid FROM stream_ids WHERE name = ?) AND f.mid = (SELECT mid FROM model_ids WHERE name = ?)',
  forecast: 'SELECT horizon, target, target_time AS targetTime, value, label FROM predictions WHERE stream = ? AND model = ? AND issued_at = ? ORDER BY horizon, target',
  // Recent error sums of the shortest horizon, per target: the latest buckets (written at checkpoints), newest first.
  buckets: `SELECT bucket, n, sum_abs AS sumAbs, sum_pabs AS sumPAbs FROM accuracy
       WHERE sid = (SELECT sid FROM stream_ids WHERE name = ?) AND mid = (SELECT mid FROM model_ids WHERE name = ?) AND horizon = ? AND target = ?
       ORDER BY bucket DESC LIMIT 100`,
  lastTs: 'SELECT max(ts) AS t FROM steps WHERE stream = ?',
  actuals: 'SELECT ts, values_json FROM steps WHERE stream = ? AND ts BETWEEN ? AND ? ORDER BY ts DESC LIMIT ?',
  forecasts: `SELECT model, horizon, target, issued_at AS issuedAt, target_time AS targetTime, value, probabilities, levels, bounds FROM predictions
         WHERE stream = ? AND issued_at BETWEEN ? AND ? ORDER BY issued_at DESC, model DESC, horizon DESC, target DESC LIMIT ?`,
  events: 'SELECT at, model, kind, detail FROM events WHERE stream = ? AND at BETWEEN ? AND ? ORDER BY at DESC LIMIT ?',
  streamEvents: 'SELECT at, stream, model, kind, detail FROM events WHERE stream = ? ORDER BY at DESC LIMIT ?',
  // The stream's alert and drift changes, newest first: its current states are the newest of each.
  states: "SELECT at, model, kind, detail FROM events WHERE stream = ? AND (kind = 'model_drift' OR kind LIKE 'alert:%') ORDER BY at DESC LIMIT 1000",
  deadLetters: 'SELECT received_at AS receivedAt, topic, reason, detail FROM dead_letters WHERE stream = ? ORDER BY received_at DESC LIMIT 100',
} as const;

/**
 * The JSON API under /api/ that the dashboard page uses. Lookups go by
 * primary key (stream_ids, accuracy), by skip-scan on the time-major keys of
 * step_inputs and forecasts (a seek per step time), or by index
 * (events_by_stream, dead_letters_by_stream), and every response is capped.
 * The stream list's online MAE adds the error sums still in memory (scored
 * since the last checkpoint) to the stored buckets.
 *
 * - GET /api/streams?search=TEXT&limit=N (most recently active first)
 * - GET /api/streams/{id}/series?from=MS&to=MS&limit=N
 * - GET /api/accuracy?stream=ID&window=N
 * - GET /api/events?stream=ID&limit=N
 * - GET /api/models
 */
export class DashboardApi {
  readonly #db: () => Database.Database;
  readonly #models: () => ApiModel[];
  readonly #unstored: (stream: string, model: string) => readonly AccuracyDelta[];

  constructor(db: () => Database.Database, models: () => ApiModel[], unstored: (stream: string, model: string) => readonly AccuracyDelta[] = () => []) {
    this.#db = db;
    this.#models = models;
    this.#unstored = unstored;
  }

  handle(path: string, query: URLSearchParams): ApiResponse {
    let parts: string[];
    try {
      parts = path.split('/').filter(Boolean).map(decodeURIComponent); // ['api', ...]
    } catch {
      return { status: 400, body: { error: 'bad percent-encoding in the path' } };
    }
    if (parts[1] === 'streams' && parts.length === 2) return { status: 200, body: this.streams(query) };
    if (parts[1] === 'streams' && parts.length === 4 && parts[3] === 'series') return this.series(parts[2]!, query);
    if (parts[1] === 'accuracy' && parts.length === 2) {
      return { status: 200, body: rollingAccuracy(this.#db(), { stream: query.get('stream') ?? undefined, window: int(query.get('window'), 100, 1, MAX_POINTS) }) };
    }
    if (parts[1] === 'events' && parts.length === 2) return { status: 200, body: this.events(query.get('stream'), int(query.get('limit'), 100, 1, MAX_POINTS)) };
    if (parts[1] === 'models' && parts.length === 2) return { status: 200, body: this.#models() };
    return { status: 404, body: { error: `no such API: ${path}` } };
  }

  /** Streams by recent activity, with their latest actuals, latest forecast per model and recent 1-step MAE. */
  streams(q: URLSearchParams = new URLSearchParams()): unknown[] {
    return this.describeStreams(this.listStreams(q));
  }

  /**
   * Which streams the list shows: most recently active first (by their
   * checkpointed last activity, then newest first seen), those whose id
   * contains `?search=` (case-insensitive), at most `?limit=` (500).
   */
  listStreams(q: URLSearchParams): StreamListing[] {
    const search = (q.get('search') ?? '').slice(0, 256);
    const limit = int(q.get('limit'), MAX_STREAMS, 1, MAX_STREAMS);
    const like = `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    // Not the streams view: its step count seeks every step time of the stream (skip-scan); the list needs the latest step only.
    return this.#db()
      .prepare(
        `SELECT s.name AS id, s.route, s.first_seen AS firstSeen, a.lastActive
         FROM stream_ids s LEFT JOIN (SELECT stream, max(last_active) AS lastActive FROM stream_state GROUP BY stream) a ON a.stream = s.name
         WHERE s.name LIKE ? ESCAPE '\\' ORDER BY a.lastActive DESC NULLS LAST, s.sid DESC LIMIT ?`,
      )
      .all(like, limit) as StreamListing[];
  }

  /** The list's rows for these streams (`unstored`: the error sums not yet checkpointed, by default the constructor's). */
  describeStreams(streams: readonly StreamListing[], unstored: (stream: string, model: string) => readonly AccuracyDelta[] = this.#unstored): unknown[] {
    const db = this.#db();
    const lastStep = db.prepare(STREAM_LOOKUP_SQL.lastStep);
    const lastIssue = db.prepare(STREAM_LOOKUP_SQL.lastIssue).pluck();
    const loaded = this.#models().map((m) => m.name);
    const forecast = db.prepare(STREAM_LOOKUP_SQL.forecast);
    const buckets = db.prepare(STREAM_LOOKUP_SQL.buckets);
    const mae = (stream: string, model: string, horizon: number, target: string): ReturnType<typeof recentMae> => {
      const memory = unstored(stream, model).filter((d) => d.horizon === horizon && d.target === target);
      const stored = buckets.all(stream, model, horizon, target) as Bucket[];
      // Newest first; a bucket both stored and in memory counts both parts.
      return recentMae([...memory, ...stored].sort((a, b) => b.bucket - a.bucket), 100);
    };
    const providers = new Map(this.#models().map((m) => [m.name, m.provider]));
    const states = db.prepare(STREAM_LOOKUP_SQL.states);
    return streams.map((s) => {
      const step = lastStep.get(s.id) as { ts: number; received_at: number; values_json: string } | undefined;
      const issued = loaded.map((model) => ({ model, issuedAt: lastIssue.get(s.id, model) as number | null })).filter((m): m is { model: string; issuedAt: number } => m.issuedAt !== null);
      const models = issued.map(({ model, issuedAt }) => {
        const rows = forecast.all(s.id, model, issuedAt) as Array<{ horizon: number; target: string }>;
        const h = Math.min(...rows.map((r) => r.horizon));
        const targets = [...new Set(rows.map((r) => r.target))];
        return {
          model,
          provider: providers.get(model) ?? null,
          issuedAt,
          forecast: rows,
          mae: targets
            .map((target) => ({ target, horizon: h, ...mae(s.id, model, h, target) }))
            .filter((m) => m.n > 0),
        };
      });
      const on = this.states(s.id, states).filter((x) => x.on);
      return { id: s.id, route: s.route, firstSeen: s.firstSeen, lastSeen: step?.received_at ?? s.lastActive ?? s.firstSeen, lastStepAt: step?.ts ?? null, lastValues: step ? (JSON.parse(step.values_json) as Record<string, number>) : null, models, on };
    });
  }

  /** A stream's actuals, forecasts (by model and horizon, at their target times), events and dead letters in a time range. */
  series(stream: string, q: URLSearchParams): ApiResponse {
    const db = this.#db();
    if (db.prepare('SELECT 1 FROM stream_ids WHERE name = ?').get(stream) === undefined) return { status: 404, body: { error: `no stream "${stream}"` } };
    const limit = int(q.get('limit'), 2000, 1, MAX_POINTS);
    const last = (db.prepare(STREAM_LOOKUP_SQL.lastTs).get(stream) as { t: number | null }).t ?? Date.now();
    const to = int(q.get('to'), last, 0, Number.MAX_SAFE_INTEGER);
    const from = int(q.get('from'), to - 90 * DAY, 0, to);
    const actuals = (db.prepare(STREAM_LOOKUP_SQL.actuals).all(stream, from, to, limit) as Array<{ ts: number; values_json: string }>)
      .reverse()
      .map((r) => ({ ts: r.ts, values: JSON.parse(r.values_json) as Record<string, number> }));
    // Forecasts issued in the range (and a few steps before it, so its first target times are covered).
    const rows = db
      .prepare(STREAM_LOOKUP_SQL.forecasts)
      .all(stream, from - 7 * DAY, to, limit * 12) as Array<{ model: string; horizon: number; target: string; issuedAt: number; targetTime: number; value: number; probabilities: string | null; levels: string | null; bounds: string | null }>;
    // A point holds its numeric targets' values (and their interval bounds, [lower, upper] per level of `levels[model]`), and each classification target's label probabilities.
    type Point = { issuedAt: number; targetTime: number; values: Record<string, number>; bounds?: Record<string, number[]>; probabilities?: Record<string, Record<string, number>> };
    const forecasts: Record<string, Record<string, Point[]>> = {};
    const levels: Record<string, number[]> = {};
    for (const r of rows.reverse()) {
      const byH = (forecasts[r.model] ??= {});
      const list = (byH[String(r.horizon)] ??= []);
      let point = list[list.length - 1];
      if (!point || point.issuedAt !== r.issuedAt) list.push((point = { issuedAt: r.issuedAt, targetTime: r.targetTime, values: {} }));
      if (r.bounds !== null && r.levels !== null) {
        (point.bounds ??= {})[r.target] = JSON.parse(r.bounds) as number[];
        levels[r.model] ??= JSON.parse(r.levels) as number[];
      }
      if (r.probabilities === null) point.values[r.target] = r.value;
      else (point.probabilities ??= {})[r.target] = JSON.parse(r.probabilities) as Record<string, number>;
    }
    const events = db.prepare(STREAM_LOOKUP_SQL.events).all(stream, from, to, limit);
    const deadLetters = db.prepare(STREAM_LOOKUP_SQL.deadLetters).all(stream);
    return { status: 200, body: { stream, from, to, actuals, forecasts, levels, events, deadLetters, states: this.states(stream) } };
  }

  /**
   * A stream's threshold alerts and drift tests that have changed, each at its
   * latest state (from the newest of its last 1,000 changes): one that never
   * turned on has no event, so it is not listed. `query`: the statement of
   * `STREAM_LOOKUP_SQL.states`, when the caller looks up many streams.
   */
  states(stream: string, query: Database.Statement = this.#db().prepare(STREAM_LOOKUP_SQL.states)): StreamState[] {
    const rows = query.all(stream) as Array<{ at: number; model: string; kind: string; detail: string }>;
    const seen = new Map<string, StreamState>();
    for (const r of rows) {
      let detail: unknown;
      try {
        detail = JSON.parse(r.detail);
      } catch {
        continue;
      }
      if (r.kind === 'model_drift' && Array.isArray(detail)) {
        for (const d of detail as Array<{ target: string; state: string; reasons?: string[]; direction?: string }>) {
          const key = `${r.model}\u0000drift\u0000${d.target}`;
          if (!seen.has(key)) seen.set(key, { kind: 'drift', name: `${d.target} drift`, model: r.model, target: d.target, on: d.state === 'on', since: r.at, detail: d.state === 'on' ? `${(d.reasons ?? []).join(', ')} ${d.direction === 'down' ? '↓' : '↑'}` : '' });
        }
      } else if (r.kind.startsWith('alert:')) {
        const a = detail as { target?: string; state?: string; probability?: number; horizon?: number };
        const key = `${r.model}\u0000${r.kind}`;
        if (!seen.has(key)) seen.set(key, { kind: 'alert', name: r.kind.slice(6), model: r.model, target: a.target ?? '', on: a.state === 'on', since: r.at, detail: `p ${a.probability ?? '–'} at +${a.horizon ?? '–'}` });
      }
    }
    return [...seen.values()].sort((a, b) => Number(b.on) - Number(a.on) || a.name.localeCompare(b.name));
  }

  events(stream: string | null, limit: number): unknown[] {
    const db = this.#db();
    return stream === null
      ? db.prepare('SELECT at, stream, model, kind, detail FROM events ORDER BY id DESC LIMIT ?').all(limit)
      : db.prepare(STREAM_LOOKUP_SQL.streamEvents).all(stream, limit);
  }
}

interface Bucket { bucket: number; n: number; sumAbs: number; sumPAbs: number }

/** A stream's alert or drift state, as its latest change left it. */
export interface StreamState {
  kind: 'alert' | 'drift';
  /** The alert's name, or "TARGET drift". */
  name: string;
  model: string;
  target: string;
  on: boolean;
  /** When it last changed. */
  since: number;
  /** An alert's probability and horizon; a drift's reasons and direction (on). */
  detail: string;
}

/** A stream the list shows, before its details are looked up. */
export interface StreamListing {
  id: string;
  route: string;
  firstSeen: number;
  lastActive: number | null;
}

/** MAE and persistence MAE over the newest buckets that together hold at least `min` scored forecasts. */
function recentMae(newestFirst: readonly Bucket[], min: number): { mae: number | null; persistenceMae: number | null; n: number } {
  let n = 0;
  let abs = 0;
  let pabs = 0;
  for (const b of newestFirst) {
    n += b.n;
    abs += b.sumAbs;
    pabs += b.sumPAbs;
    if (n >= min) break;
  }
  return n === 0 ? { mae: null, persistenceMae: null, n: 0 } : { mae: abs / n, persistenceMae: pabs / n, n };
}
