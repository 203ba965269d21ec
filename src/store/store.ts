import type Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { openDatabase, type DatabaseHandle } from './database.js';
import { Ids, type ForecastLayout } from './ids.js';
import { InputLog, type InputRow } from './input-log.js';
import type { AccuracyDelta, DeadLetterRow, EventRow, ForecastRow, ModelStateRow, StepRow, StreamStateRow } from './rows.js';
import { WriteQueue } from './write-queue.js';

export type { ForecastLayout } from './ids.js';
export type { InputRow } from './input-log.js';
export type * from './rows.js';
export { latestPredictions } from './queries.js';

export interface StoreOptions {
  /** SQLite file, or ':memory:'. */
  path: string;
  retentionDays: number;
  log: Logger;
  now?: () => number;
  /**
   * `process` (default): synchronous=NORMAL, a commit survives the process
   * crashing; `power`: synchronous=FULL, a commit also survives power loss, at
   * one fsync per commit.
   */
  durability?: 'process' | 'power';
  /** Cap on the database size (0: only the disk limits it); reaching it behaves as a full disk. */
  maxSizeMiB?: number;
}

type Stmt = Database.Statement;

/**
 * The SQLite store (better-sqlite3, WAL, schema 7). Names are interned to
 * integer ids (`ids.ts`); a batch commit writes one `step_inputs` row per step
 * and one `forecasts` row per forecast (all horizons × targets) in one
 * transaction, together with the QoS 0 inputs still waiting for their group
 * commit (`input-log.ts`). Scoring happens in memory (daemon/score-book.ts);
 * its sums arrive with checkpoints. Writes that fail on a transient error wait
 * in `write-queue.ts` and are retried in order.
 */
export class Store {
  readonly #opts: StoreOptions;
  readonly #now: () => number;
  #handle: DatabaseHandle | null = null;
  #ids: Ids | null = null;
  #log: InputLog | null = null;
  #stmts: Record<'step' | 'forecast' | 'deadLetter' | 'event' | 'streamState' | 'modelState' | 'accuracy' | 'checkpoint' | 'trimLog' | 'loadStream' | 'loadModels', Stmt> | null = null;
  #commitBatch: ((mid: number, lid: number, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[]) => boolean[]) | null = null;
  #writeCheckpoint: ((seq: number, streams: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[]) => void) | null = null;
  readonly #queue: WriteQueue;
  /**
   * Whether stream_state may hold a stream that is not in memory: rows from
   * before this start, or a stream spilled since. While false (a fresh
   * database), a new stream needs no lookup.
   */
  #statesStored = true;

  constructor(options: StoreOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#queue = new WriteQueue({ log: options.log, isOpen: () => this.#handle !== null });
  }

  /** Called when queued writes have all gone through after a failure. */
  set onRecovered(fn: (() => void) | null) {
    this.#queue.onRecovered = fn;
  }

  /** Open the file, set WAL, run pending migrations, prepare statements. */
  start(): void {
    if (this.#handle) return;
    this.#handle = openDatabase(this.#opts);
    const db = this.#handle.db;
    const ids = (this.#ids = new Ids(db));
    const log = (this.#log = new InputLog(db, { onGroupFailure: (err) => this.reportFailure(err, 'input log (QoS 0 group)') }));
    this.#stmts = {
      step: db.prepare('INSERT INTO step_inputs (sid, ts, received_at, fsid, inputs, filled) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      // ON CONFLICT (not OR IGNORE): a duplicate key is skipped, but a non-finite value
      // (JSON null) still fails the CHECK loudly.
      forecast: db.prepare('INSERT INTO forecasts (sid, mid, issued_at, lid, created_at, vals, labels) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      // Rows with a seq come from the data path and are written once however often it is replayed.
      deadLetter: db.prepare('INSERT OR IGNORE INTO dead_letters (received_at, topic, reason, detail, payload, payload_bytes, stream, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      event: db.prepare('INSERT OR IGNORE INTO events (at, stream, model, kind, detail, seq) VALUES (?, ?, ?, ?, ?, ?)'),
      streamState: db.prepare(
        `INSERT INTO stream_state (grp, stream, resident, last_active, assembler) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (grp, stream) DO UPDATE SET resident = excluded.resident, last_active = excluded.last_active, assembler = excluded.assembler`,
      ),
      modelState: db.prepare(
        `INSERT INTO model_state (model, stream, fingerprint, state, filled, pending) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (stream, model) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state, filled = excluded.filled, pending = excluded.pending`,
      ),
      accuracy: db.prepare(
        `INSERT INTO accuracy (sid, mid, horizon, target, bucket, n, sum_abs, sum_sq, sum_err, sum_pabs, last_target_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET n = n + excluded.n, sum_abs = sum_abs + excluded.sum_abs, sum_sq = sum_sq + excluded.sum_sq,
           sum_err = sum_err + excluded.sum_err, sum_pabs = sum_pabs + excluded.sum_pabs, last_target_time = max(last_target_time, excluded.last_target_time)`,
      ),
      checkpoint: db.prepare(
        `INSERT INTO checkpoint (id, seq, at, streams) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, at = excluded.at, streams = excluded.streams`,
      ),
      trimLog: db.prepare('DELETE FROM input_log WHERE seq <= ?'),
      loadStream: db.prepare('SELECT grp AS "group", stream, resident, last_active AS lastActive, assembler FROM stream_state WHERE grp = ? AND stream = ?'),
      loadModels: db.prepare('SELECT model, fingerprint, state, filled, pending FROM model_state WHERE stream = ?'),
    };
    const s = this.#stmts;
    // Every write transaction also writes the ids handed out and the QoS 0 inputs pending since the
    // last one; both are marked written only once it commits (a rollback leaves them for the retry).
    const transaction = <A extends unknown[]>(body: (...args: A) => void): ((...args: A) => void) => {
      const tx = db.transaction((...args: A) => {
        const inputs = log.writePending();
        body(...args);
        return { ids: ids.writeNew(), inputs };
      });
      return (...args: A) => {
        const written = tx(...args);
        ids.saved(written.ids);
        log.written(written.inputs);
      };
    };
    let inserted: boolean[] = [];
    const commit = transaction((mid: number, lid: number, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[]) => {
      const now = this.#now();
      inserted = [];
      for (const st of steps) {
        const sid = ids.stream(st.stream, st.route, st.receivedAt);
        // A step shared by several models of a route is stored once.
        s.step.run(sid, st.ts, st.receivedAt, ids.featureSet(st.features), inputsJson(st), filledMask(st));
      }
      for (const e of events) s.event.run(e.at, e.stream, e.model, e.kind, e.detail, e.seq ?? null);
      for (const f of forecasts) {
        const sid = ids.stream(f.stream, '', f.issuedAt);
        inserted.push(s.forecast.run(sid, mid, f.issuedAt, lid, now, JSON.stringify(f.values), f.labels ? JSON.stringify(f.labels) : null).changes === 1);
      }
    });
    this.#commitBatch = (mid, lid, steps, forecasts, events) => {
      commit(mid, lid, steps, forecasts, events);
      return inserted;
    };
    this.#statesStored = db.prepare('SELECT 1 FROM stream_state LIMIT 1').get() !== undefined;
    this.#writeCheckpoint = transaction((seq: number, streams: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[]) => {
      for (const st of streams) {
        s.streamState.run(st.group, st.stream, st.resident ? 1 : 0, st.lastActive, st.assembler);
        for (const m of st.models) s.modelState.run(m.model, st.stream, m.fingerprint, m.state, m.filled, m.pending ?? null);
      }
      for (const a of accuracy) {
        s.accuracy.run(ids.stream(a.stream, '', a.lastTargetTime), ids.model(a.model), a.horizon, a.target, a.bucket, a.n, a.sumAbs, a.sumSq, a.sumErr, a.sumPAbs, a.lastTargetTime);
      }
      s.checkpoint.run(seq, this.#now(), streams.length);
      s.trimLog.run(seq);
    });
  }

  #database(): Database.Database {
    if (!this.#handle) throw new TidecastError(ErrorCodes.STOPPED, 'the store is not open');
    return this.#handle.db;
  }

  /**
   * Commit one model's batch in one transaction: its steps (the actuals), its
   * events and its forecasts, one row each. Returns, per forecast, whether it
   * was new (a replay after a crash recomputes forecasts already stored).
   */
  commit(model: string, layout: ForecastLayout, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[] = []): boolean[] {
    this.#database();
    const ids = this.#ids!;
    return this.#commitBatch!(ids.model(model), ids.layout(model, layout), steps, forecasts, events);
  }

  /**
   * Append an accepted message (or a clock tick) to the input log and return
   * its position. `durable` (QoS 1/2, ticks): written before this returns, so
   * once the caller acknowledges, the message survives a crash (and, with
   * durability `power`, a power cut); throws a transient error when the store
   * cannot write, and the caller holds the message. Otherwise (QoS 0) the row
   * joins a group commit within 5 ms (see InputLog).
   */
  appendInput(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer, durable = true): number {
    this.#database();
    return this.#log!.append(kind, receivedAt, topic, payload, durable);
  }

  /** QoS 0 inputs not yet written. */
  get pendingInputs(): number {
    return this.#log?.pending ?? 0;
  }

  /** Up to `limit` log entries after a position, in order (recovery replays them page by page). */
  inputAfter(seq: number, limit: number): InputRow[] {
    this.#database();
    return this.#log!.after(seq, limit);
  }

  /** The last checkpoint: the log position every stored state reflects (0: none yet). */
  checkpointSeq(): number {
    const row = this.#database().prepare('SELECT seq FROM checkpoint WHERE id = 1').get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /**
   * Record a checkpoint in one transaction: the given streams' states (changed
   * or spilled since the last one) with their open forecasts, the error sums
   * scored since the last one, the log position they correspond to, and the
   * log trimmed up to it.
   */
  writeCheckpoint(seq: number, streams: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[] = []): void {
    this.#database();
    this.#writeCheckpoint!(seq, streams, accuracy);
    if (streams.some((st) => !st.resident)) this.#statesStored = true;
  }

  /** Streams of these route groups that were in memory at the last checkpoint, with their model states, in pages. */
  *residentStreams(groups: readonly string[], page = 5000): IterableIterator<StreamStateRow> {
    if (groups.length === 0) return;
    const db = this.#database();
    // One joined query per page (bench/recovery: a query per stream cost half the restore time).
    const next = db.prepare(
      `SELECT s.grp AS "group", s.stream, s.last_active AS lastActive, s.assembler, m.model, m.fingerprint, m.state, m.filled, m.pending
       FROM stream_state s LEFT JOIN model_state m ON m.stream = s.stream
       WHERE s.resident = 1 AND s.grp IN (SELECT value FROM json_each(?)) AND (s.grp, s.stream) > (?, ?)
       ORDER BY s.grp, s.stream LIMIT ?`,
    );
    type Joined = Omit<StreamStateRow, 'models' | 'resident'> & { model: string | null; fingerprint: string; state: Buffer; filled: number; pending: Buffer | null };
    let after: [string, string] = ['', ''];
    for (;;) {
      // A page at a time: better-sqlite3 runs no other statement while a cursor is open.
      const rows = next.all(JSON.stringify(groups), after[0], after[1], page) as Joined[];
      if (rows.length === 0) return;
      // A full page may end inside a stream's models: leave that stream to the next page.
      const last = rows[rows.length - 1]!;
      const complete = rows.length < page ? rows : rows.filter((r) => r.group !== last.group || r.stream !== last.stream);
      const take = complete.length > 0 ? complete : rows; // one stream with more models than a page: take it whole
      let cur: StreamStateRow | null = null;
      for (const r of take) {
        if (!cur || cur.group !== r.group || cur.stream !== r.stream) {
          if (cur) yield cur;
          cur = { group: r.group, stream: r.stream, resident: true, lastActive: r.lastActive, assembler: r.assembler, models: [] };
        }
        if (r.model !== null) (cur.models as ModelStateRow[]).push({ model: r.model, fingerprint: r.fingerprint, state: r.state, filled: r.filled, pending: r.pending });
      }
      if (cur) yield cur;
      const end = take[take.length - 1]!;
      after = [end.group, end.stream];
    }
  }

  /** A stream's stored state (spilled after idling, or checkpointed), if any. */
  loadStream(group: string, stream: string): StreamStateRow | undefined {
    this.#database();
    if (!this.#statesStored) return undefined;
    const r = this.#stmts!.loadStream.get(group, stream) as (Omit<StreamStateRow, 'models' | 'resident'> & { resident: number }) | undefined;
    if (!r) return undefined;
    return { ...r, resident: r.resident === 1, models: this.#stmts!.loadModels.all(stream) as ModelStateRow[] };
  }

  /**
   * Run a write now, or after the writes already waiting. A transient failure
   * (disk full, locked, I/O) keeps it queued and retries with backoff until it
   * goes through; any other failure is a bug in the row and is logged and dropped.
   * `run` must be all-or-nothing (one statement or one transaction).
   */
  enqueue(what: string, run: () => void): void {
    this.#queue.enqueue(what, run);
  }

  /** True while queued writes wait on a failing store. */
  get failing(): boolean {
    return this.#queue.failure !== null;
  }

  /** The failure writes are waiting on, for logs and readiness. */
  get failure(): Error | null {
    return this.#queue.failure;
  }

  /** Writes waiting to be retried. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Run queued writes in order, then the pending QoS 0 inputs; false when something is left (the store is failing). */
  flush(): boolean {
    if (!this.#queue.flush()) return false;
    try {
      this.#log?.flush();
      return true;
    } catch (err) {
      this.reportFailure(err as Error, 'input log (QoS 0 group)');
      return false;
    }
  }

  /** Note a transient failure and schedule a retry of the queue: from a queued write, or from a write outside the queue. */
  reportFailure(err: Error, what: string): void {
    this.#queue.reportFailure(err, what);
  }

  /** A write outside the queue went through: clears a failure when nothing is queued. */
  reportSuccess(): void {
    this.#queue.reportSuccess();
  }

  /** Whether a write transaction can start now (readiness). */
  writable(): boolean {
    try {
      this.#database().exec('BEGIN IMMEDIATE; ROLLBACK');
      return true;
    } catch {
      return false;
    }
  }

  /** Store a dead letter now (throws when the store cannot write). */
  addDeadLetter(row: DeadLetterRow): void {
    this.#database();
    this.#stmts!.deadLetter.run(row.receivedAt, row.topic, row.reason, row.detail, row.payload, row.payloadBytes, row.stream ?? null, row.seq ?? null);
  }

  /** Store an event now (throws when the store cannot write). */
  addEvent(row: EventRow): void {
    this.#database();
    this.#stmts!.event.run(row.at, row.stream, row.model, row.kind, row.detail, row.seq ?? null);
  }

  /** Delete rows older than the retention window; returns rows deleted per table. */
  prune(): Record<string, number> {
    const db = this.#database();
    const cutoff = this.#now() - this.#opts.retentionDays * 86_400_000;
    const deleted: Record<string, number> = { forecasts: 0, steps: 0 };
    db.transaction(() => {
      // Stream by stream (and model by model), along the primary keys: no index on time alone to keep up.
      const forecasts = db.prepare('DELETE FROM forecasts WHERE sid = ? AND mid = ? AND issued_at < ?');
      const steps = db.prepare('DELETE FROM step_inputs WHERE sid = ? AND ts < ?');
      const mids = db.prepare('SELECT mid FROM model_ids').pluck().all() as number[];
      for (const sid of db.prepare('SELECT sid FROM stream_ids').pluck().all() as number[]) {
        for (const mid of mids) deleted.forecasts! += forecasts.run(sid, mid, cutoff).changes;
        deleted.steps! += steps.run(sid, cutoff).changes;
      }
      deleted.accuracy = db.prepare('DELETE FROM accuracy WHERE last_target_time < ?').run(cutoff).changes;
      deleted.events = db.prepare('DELETE FROM events WHERE at < ?').run(cutoff).changes;
      deleted.dead_letters = db.prepare('DELETE FROM dead_letters WHERE received_at < ?').run(cutoff).changes;
    })();
    return deleted;
  }

  /** The database handle, for read-only queries (tidecast query, tests). */
  get db(): Database.Database {
    return this.#database();
  }

  /** Write what is pending, checkpoint the WAL and close. Safe to call twice. */
  stop(): void {
    if (!this.#handle) return;
    this.#queue.stop();
    if (!this.flush()) this.#opts.log.error({ queued: this.#queue.length, pendingInputs: this.pendingInputs, err: this.failure?.message }, 'store stopping with writes it could not commit; the input log replays durable inputs at the next start');
    this.#log?.stop();
    try {
      this.#handle.close();
    } finally {
      this.#handle = null;
      this.#stmts = null;
      this.#commitBatch = null;
      this.#writeCheckpoint = null;
    }
  }
}

/** The step's values as a JSON array in feature order (finite numbers: the decoder refuses others). */
function inputsJson(st: StepRow): string {
  let out = '[';
  for (let i = 0; i < st.features.length; i++) out += (i > 0 ? ',' : '') + JSON.stringify(st.values[st.features[i]!] ?? null);
  return out + ']';
}

/** Bit i set: the step's feature i (in `features` order) was forward-filled (exact for the first 53 features). */
function filledMask(st: StepRow): number {
  let mask = 0;
  for (const f of st.filled) {
    const i = st.features.indexOf(f);
    if (i >= 0 && i < 53) mask += 2 ** i;
  }
  return mask;
}
