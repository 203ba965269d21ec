import type Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { openDatabase, type DatabaseHandle } from './database.js';
import { BatchWriter } from './batch-writer.js';
import { Ids, type ForecastLayout } from './ids.js';
import { InputLog, type InputRow } from './input-log.js';
import type { AccuracyDelta, DeadLetterRow, EventRow, ForecastRow, StepRow, StreamStateRow } from './rows.js';
import { StateStore } from './state-store.js';
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
  #stmts: Record<'deadLetter' | 'event', Stmt> | null = null;
  #batches: BatchWriter | null = null;
  #states: StateStore | null = null;
  readonly #queue: WriteQueue;

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
      // Rows with a seq come from the data path and are written once however often it is replayed.
      deadLetter: db.prepare('INSERT OR IGNORE INTO dead_letters (received_at, topic, reason, detail, payload, payload_bytes, stream, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      event: db.prepare('INSERT OR IGNORE INTO events (at, stream, model, kind, detail, seq) VALUES (?, ?, ?, ?, ?, ?)'),
    };
    this.#batches = new BatchWriter(db, ids, log, this.#now);
    this.#states = new StateStore(db, ids, log, this.#now);
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
    return this.#batches!.commit(ids.model(model), ids.layout(model, layout), steps, forecasts, events);
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
    this.#database();
    return this.#states!.checkpointSeq();
  }

  /**
   * Record a checkpoint in one transaction: the given streams' states (changed
   * or spilled since the last one) with their open forecasts, the error sums
   * scored since the last one, the log position they correspond to, and the
   * log trimmed up to it.
   */
  writeCheckpoint(seq: number, streams: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[] = []): void {
    this.#database();
    this.#states!.write(seq, streams, accuracy);
  }

  /** Streams of these route groups that were in memory at the last checkpoint, with their model states, in pages. */
  residentStreams(groups: readonly string[], page = 5000): IterableIterator<StreamStateRow> {
    this.#database();
    return this.#states!.resident(groups, page);
  }

  /** A stream's stored state (spilled after idling, or checkpointed), if any. */
  loadStream(group: string, stream: string): StreamStateRow | undefined {
    this.#database();
    return this.#states!.load(group, stream);
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
      this.#batches = null;
      this.#states = null;
    }
  }
}
