/**
 * Retention: the writer's maintenance transactions, each in one transaction
 * (`WriterCore` runs them for the store's `prune` and `forget`).
 */
import type Database from 'better-sqlite3';

/**
 * What pruning deletes from each table: the rows older than a cutoff. On the
 * time-major keys (forecasts, step_inputs) each is the oldest range of the key.
 */
export const PRUNE_SQL = {
  forecasts: 'DELETE FROM forecasts WHERE issued_at < ?',
  steps: 'DELETE FROM step_inputs WHERE ts < ?',
  accuracy: 'DELETE FROM accuracy WHERE last_target_time < ?',
  events: 'DELETE FROM events WHERE at < ?',
  dead_letters: 'DELETE FROM dead_letters WHERE received_at < ?',
} as const;

/** Delete rows older than `cutoff`, and the oldest dead letters past `deadLetterMaxBytes` (0: no cap); returns rows deleted per table. */
export function pruneRows(db: Database.Database, cutoff: number, deadLetterMaxBytes: number): Record<string, number> {
  const deleted: Record<string, number> = {};
  db.transaction(() => {
    // The oldest range of each time-major key.
    deleted.forecasts = db.prepare(PRUNE_SQL.forecasts).run(cutoff).changes;
    deleted.steps = db.prepare(PRUNE_SQL.steps).run(cutoff).changes;
    deleted.accuracy = db.prepare(PRUNE_SQL.accuracy).run(cutoff).changes;
    deleted.events = db.prepare(PRUNE_SQL.events).run(cutoff).changes;
    deleted.dead_letters = db.prepare(PRUNE_SQL.dead_letters).run(cutoff).changes;
    if (deadLetterMaxBytes > 0) {
      // The newest dead letters that fit the cap stay (a row's size: its columns plus about 64 bytes of record and index).
      const over = db
        .prepare('SELECT id FROM (SELECT id, sum(length(payload) + length(topic) + length(detail) + coalesce(length(stream), 0) + 64) OVER (ORDER BY id DESC) AS total FROM dead_letters) WHERE total > ? LIMIT 1')
        .get(deadLetterMaxBytes) as { id: number } | undefined;
      if (over) deleted.dead_letters += db.prepare('DELETE FROM dead_letters WHERE id <= ?').run(over.id).changes;
    }
  })();
  return deleted;
}

/**
 * Forget up to `limit` streams out of memory (spilled) and idle since before
 * `cutoff`: their saved state, error sums and id. Their steps and forecasts
 * are older than the cutoff, so retention has pruned them already (the
 * config keeps store.forgetStreamsAfterDays at least retentionDays). A
 * stream that comes back later starts afresh, under a new id. Returns each
 * forgotten stream with the models it had state in.
 */
export function forgetIdleStreams(db: Database.Database, cutoff: number, limit: number): Array<{ stream: string; models: string[] }> {
  return db.transaction(() => {
    const idle = db
      .prepare('SELECT stream FROM stream_state GROUP BY stream HAVING max(last_active) < ? AND max(resident) = 0 LIMIT ?')
      .pluck()
      .all(cutoff, limit) as string[];
    const modelsOf = db.prepare('SELECT model FROM model_state WHERE stream = ?').pluck();
    const sidOf = db.prepare('SELECT sid FROM stream_ids WHERE name = ?').pluck();
    const del = {
      models: db.prepare('DELETE FROM model_state WHERE stream = ?'),
      state: db.prepare('DELETE FROM stream_state WHERE stream = ?'),
      accuracy: db.prepare('DELETE FROM accuracy WHERE sid = ?'),
      id: db.prepare('DELETE FROM stream_ids WHERE sid = ?'),
    };
    const out: Array<{ stream: string; models: string[] }> = [];
    for (const stream of idle) {
      out.push({ stream, models: modelsOf.all(stream) as string[] });
      del.models.run(stream);
      del.state.run(stream);
      const sid = sidOf.get(stream) as number | undefined;
      if (sid !== undefined) {
        del.accuracy.run(sid);
        del.id.run(sid);
      }
    }
    return out;
  })();
}
