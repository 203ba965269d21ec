import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { MIGRATIONS } from './migrations.js';

/** A step a model consumed: the actual values, in physical units. */
export interface StepRow {
  readonly stream: string;
  readonly route: string;
  readonly ts: number;
  readonly receivedAt: number;
  readonly topic: string;
  readonly values: Readonly<Record<string, number>>;
  /** Features forward-filled from an earlier step (not scored as actuals). */
  readonly filled: readonly string[];
}

export interface PredictionRow {
  readonly stream: string;
  readonly model: string;
  readonly issuedAt: number;
  readonly horizon: number;
  readonly target: string;
  readonly targetTime: number;
  /** A numeric target's value, or a classification target's probability of `label`. */
  readonly value: number;
  /** Classification targets: the most probable label and every label's probability (JSON). */
  readonly label?: string | null;
  readonly probabilities?: string | null;
}

export interface DeadLetterRow {
  /** The stream, when the topic matched a route and gave one. */
  readonly stream?: string;
  readonly receivedAt: number;
  readonly topic: string;
  readonly reason: string;
  readonly detail: string;
  readonly payload: Buffer;
  readonly payloadBytes: number;
  /** Log position of the message, for rows written from the replayable data path. */
  readonly seq?: number;
}

export interface EventRow {
  readonly at: number;
  readonly stream: string | null;
  readonly model: string | null;
  readonly kind: string;
  readonly detail: string;
  /** Log position of the message that caused it (data-path events); null for others. */
  readonly seq?: number | null;
}

/** An earlier forecast scored against the step that just arrived. */
export interface ScoredRow {
  readonly model: string;
  readonly horizon: number;
  readonly target: string;
  readonly predicted: number;
  readonly actual: number;
  readonly persistence: number;
}

/** A prediction as `tidecast query` shows it. */
export interface StoredPrediction extends PredictionRow {
  readonly createdAt: number;
}

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

/** A logged input: a message (kind 0) or a wall-clock tick (kind 1). */
export interface InputRow {
  readonly seq: number;
  readonly kind: 0 | 1;
  readonly receivedAt: number;
  readonly topic: string;
  readonly payload: Buffer;
}

/** One model's state of a stream, as checkpointed. */
export interface ModelStateRow {
  readonly model: string;
  readonly fingerprint: string;
  readonly state: Buffer;
  readonly filled: number;
}

/** A stream's checkpointed state: its step assembly and each model's state. */
export interface StreamStateRow {
  readonly group: string;
  readonly stream: string;
  readonly resident: boolean;
  readonly lastActive: number;
  readonly assembler: string;
  readonly models: readonly ModelStateRow[];
}

/** What a batch commit did: errors scored, and per prediction whether it was new (a replay finds it stored). */
export interface CommitResult {
  readonly scored: ScoredRow[];
  readonly inserted: boolean[];
}

/** SQLite result codes that describe the moment, not the data: retry later. */
const TRANSIENT = /^SQLITE_(FULL|BUSY|LOCKED|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM)/;

/** True for a store error worth retrying (disk full, locked, I/O). */
function isTransientStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === ErrorCodes.STORE_UNAVAILABLE) return true;
  return typeof code === 'string' && TRANSIENT.test(code);
}

/** Retry delays for queued writes after a transient failure. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

type Stmt = Database.Statement;

/**
 * The SQLite store (better-sqlite3, WAL). Everything is written through
 * statements prepared once at start; a batch's steps and predictions commit in
 * one transaction (bench: ~200k rows/s in transactions vs ~50k/s autocommit).
 */
export class Store {
  readonly #opts: StoreOptions;
  readonly #now: () => number;
  #db: Database.Database | null = null;
  #stmts: Record<
    'step' | 'stream' | 'prediction' | 'deadLetter' | 'event' | 'input' | 'streamState' | 'modelState' | 'checkpoint' | 'trimLog' | 'loadStream' | 'loadModels',
    Stmt
  > | null = null;
  #commitBatch: ((model: string, steps: readonly StepRow[], predictions: readonly PredictionRow[], events: readonly EventRow[], horizonsMs: readonly number[]) => CommitResult) | null = null;
  /** Scoring statements by the horizons (ms) they look back over: the issue times are constants in the SQL. */
  readonly #scoreByOffsets = new Map<string, Stmt>();
  #writeCheckpoint: ((seq: number, streams: readonly StreamStateRow[]) => void) | null = null;
  /** Writes waiting after a transient failure, run in order. */
  readonly #queue: Array<{ what: string; run: () => void }> = [];
  #retryTimer: NodeJS.Timeout | null = null;
  #retryMs = RETRY_MIN_MS;
  /** The last transient failure, while writes are failing. */
  #failure: Error | null = null;
  /** Called when queued writes have all gone through after a failure. */
  onRecovered: (() => void) | null = null;
  #checkpointer: Worker | null = null;

  constructor(options: StoreOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
  }

  /** Open the file, set WAL, run pending migrations, prepare statements. */
  start(): void {
    if (this.#db) return;
    const file = this.#opts.path;
    try {
      if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      // Short: a locked database is retried by the write queue, not by blocking the event loop.
      db.pragma('busy_timeout = 1000');
      // 32 MiB page cache (default 2 MiB): predictions carry three indexes and a
      // million-row table no longer fits the default (bench/api: build time).
      db.pragma('cache_size = -32768');
      db.pragma('foreign_keys = ON');
      this.#migrate(db);
      if (file !== ':memory:') {
        // WAL checkpoints run in a worker thread on its own connection (wal-checkpointer.ts).
        db.pragma('wal_autocheckpoint = 0');
        const worker = new Worker(new URL('./wal-checkpointer.js', import.meta.url), { workerData: { file, intervalMs: 1000 } });
        worker.on('message', (m: { error?: string }) => this.#opts.log.warn({ err: m.error }, 'WAL checkpoint failed; retrying'));
        worker.on('error', (err) => this.#opts.log.error({ err }, 'WAL checkpointer stopped'));
        worker.unref();
        this.#checkpointer = worker;
      }
      if (this.#opts.maxSizeMiB) {
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor((this.#opts.maxSizeMiB * 1024 * 1024) / pageSize))}`);
      }
      this.#db = db;
    } catch (err) {
      throw new TidecastError(ErrorCodes.STORE, `cannot open the store ${file}: ${(err as Error).message}`, { cause: err });
    }
    const db = this.#db;
    this.#stmts = {
      step: db.prepare('INSERT INTO steps (stream, ts, received_at, topic, values_json, filled) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      stream: db.prepare(
        `INSERT INTO streams (id, route, first_seen, last_seen, steps) VALUES (?, ?, ?, ?, 1)
         ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), steps = steps + 1`,
      ),
      // ON CONFLICT (not OR IGNORE): a duplicate key is skipped, but a NULL (NaN)
      // or infinite value still fails the NOT NULL / CHECK constraints loudly.
      prediction: db.prepare(
        `INSERT INTO predictions (stream, model, issued_at, horizon, target, target_time, value, created_at, label, probabilities)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      // Rows with a seq come from the data path and are written once however often it is replayed.
      deadLetter: db.prepare('INSERT OR IGNORE INTO dead_letters (received_at, topic, reason, detail, payload, payload_bytes, stream, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      event: db.prepare('INSERT OR IGNORE INTO events (at, stream, model, kind, detail, seq) VALUES (?, ?, ?, ?, ?, ?)'),
      input: db.prepare('INSERT INTO input_log (kind, received_at, topic, payload) VALUES (?, ?, ?, ?)'),
      streamState: db.prepare(
        `INSERT INTO stream_state (grp, stream, resident, last_active, assembler) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (grp, stream) DO UPDATE SET resident = excluded.resident, last_active = excluded.last_active, assembler = excluded.assembler`,
      ),
      modelState: db.prepare(
        `INSERT INTO model_state (model, stream, fingerprint, state, filled) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (stream, model) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state, filled = excluded.filled`,
      ),
      checkpoint: db.prepare(
        `INSERT INTO checkpoint (id, seq, at, streams) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, at = excluded.at, streams = excluded.streams`,
      ),
      trimLog: db.prepare('DELETE FROM input_log WHERE seq <= ?'),
      loadStream: db.prepare('SELECT grp AS "group", stream, resident, last_active AS lastActive, assembler FROM stream_state WHERE grp = ? AND stream = ?'),
      loadModels: db.prepare('SELECT model, fingerprint, state, filled FROM model_state WHERE stream = ?'),
    };
    const s = this.#stmts;
    this.#commitBatch = db.transaction((model: string, steps: readonly StepRow[], predictions: readonly PredictionRow[], events: readonly EventRow[], horizonsMs: readonly number[]): CommitResult => {
      const score = horizonsMs.length > 0 ? this.#scoreStatement(db, horizonsMs) : null;
      const now = this.#now();
      const scored: ScoredRow[] = [];
      const inserted: boolean[] = [];
      for (const st of steps) {
        const values = JSON.stringify(st.values);
        const filled = st.filled.join(',');
        // A step shared by several models of a route is stored once.
        if (s.step.run(st.stream, st.ts, st.receivedAt, st.topic, values, filled).changes === 1) {
          s.stream.run(st.stream, st.route, st.receivedAt, st.receivedAt);
        }
        if (score) scored.push(...(score.all({ values, filled, stream: st.stream, model, ts: st.ts }) as ScoredRow[]));
      }
      for (const e of events) s.event.run(e.at, e.stream, e.model, e.kind, e.detail, e.seq ?? null);
      for (const p of predictions) inserted.push(s.prediction.run(p.stream, p.model, p.issuedAt, p.horizon, p.target, p.targetTime, p.value, now, p.label ?? null, p.probabilities ?? null).changes === 1);
      return { scored, inserted };
    });
    this.#writeCheckpoint = db.transaction((seq: number, streams: readonly StreamStateRow[]) => {
      for (const st of streams) {
        s.streamState.run(st.group, st.stream, st.resident ? 1 : 0, st.lastActive, st.assembler);
        for (const m of st.models) s.modelState.run(m.model, st.stream, m.fingerprint, m.state, m.filled);
      }
      s.checkpoint.run(seq, this.#now(), streams.length);
      s.trimLog.run(seq);
    });
  }

  /**
   * Online evaluation: the model's predictions whose target time is this step
   * (issued one horizon before it, so primary-key lookups) get their error;
   * persistence is the target's value at the issue step. Forward-filled actuals
   * are not scored, nor are classification targets (their labels have no actual to compare with).
   */
  #scoreStatement(db: Database.Database, horizonsMs: readonly number[]): Stmt {
    const key = horizonsMs.join(',');
    let stmt = this.#scoreByOffsets.get(key);
    if (!stmt) {
      const issued = horizonsMs.map((h) => `@ts - ${Math.trunc(h)}`).join(', ');
      stmt = db.prepare(
        `INSERT INTO forecast_errors (stream, model, issued_at, horizon, target, target_time, predicted, actual, persistence)
         SELECT p.stream, p.model, p.issued_at, p.horizon, p.target, p.target_time, p.value,
                json_extract(@values, '$."' || p.target || '"'), json_extract(s.values_json, '$."' || p.target || '"')
         FROM predictions p JOIN steps s ON s.stream = p.stream AND s.ts = p.issued_at
         WHERE p.stream = @stream AND p.model = @model AND p.issued_at IN (${issued}) AND p.target_time = @ts AND p.label IS NULL
           AND json_extract(@values, '$."' || p.target || '"') IS NOT NULL
           AND json_extract(s.values_json, '$."' || p.target || '"') IS NOT NULL
           AND instr(',' || @filled || ',', ',' || p.target || ',') = 0
         ON CONFLICT DO NOTHING
         RETURNING model, horizon, target, predicted, actual, persistence`,
      );
      this.#scoreByOffsets.set(key, stmt);
    }
    return stmt;
  }

  #migrate(db: Database.Database): void {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`the database is at schema version ${version}, newer than this tidecast (${MIGRATIONS.length}); upgrade tidecast`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.transaction(() => {
        db.exec(MIGRATIONS[v]!);
        db.pragma(`user_version = ${v + 1}`);
      })();
      this.#opts.log.info({ version: v + 1 }, 'store schema migrated');
    }
  }

  #database(): Database.Database {
    if (!this.#db) throw new TidecastError(ErrorCodes.STOPPED, 'the store is not open');
    return this.#db;
  }

  /**
   * Commit one model's batch in one transaction: its steps (the actuals), the
   * errors of its earlier predictions for those steps, and its new predictions.
   */
  commit(model: string, steps: readonly StepRow[], predictions: readonly PredictionRow[], events: readonly EventRow[] = [], horizonsMs?: readonly number[]): CommitResult {
    this.#database();
    // Scoring looks a step's forecasts up by issue time: the model's horizons, in ms (by default the ones in this batch).
    const offsets = horizonsMs ?? [...new Set(predictions.map((p) => p.targetTime - p.issuedAt))];
    return this.#commitBatch!(model, steps, predictions, events, offsets);
  }

  /**
   * Append an accepted message (or a clock tick) to the input log and return its
   * position. Runs before the message is acknowledged: once this returns, the
   * message survives a crash (and, with durability `power`, a power cut).
   * Throws a transient error when the store cannot write; the caller holds the
   * message unacknowledged and tries again.
   */
  appendInput(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer): number {
    this.#database();
    return Number(this.#stmts!.input.run(kind, receivedAt, topic, payload).lastInsertRowid);
  }

  /** Up to `limit` log entries after a position, in order (recovery replays them page by page). */
  inputAfter(seq: number, limit: number): InputRow[] {
    return this.#database().prepare('SELECT seq, kind, received_at AS receivedAt, topic, payload FROM input_log WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as InputRow[];
  }

  /** The last checkpoint: the log position every stored state reflects (0: none yet). */
  checkpointSeq(): number {
    const row = this.#database().prepare('SELECT seq FROM checkpoint WHERE id = 1').get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /**
   * Record a checkpoint in one transaction: the given streams' states (changed
   * or spilled since the last one), the log position they correspond to, and
   * the log trimmed up to it.
   */
  writeCheckpoint(seq: number, streams: readonly StreamStateRow[]): void {
    this.#database();
    this.#writeCheckpoint!(seq, streams);
  }

  /** Streams of these route groups that were in memory at the last checkpoint, with their model states, in pages. */
  *residentStreams(groups: readonly string[], page = 5000): IterableIterator<StreamStateRow> {
    if (groups.length === 0) return;
    const db = this.#database();
    // One joined query per page (bench/recovery: a query per stream cost half the restore time).
    const next = db.prepare(
      `SELECT s.grp AS "group", s.stream, s.last_active AS lastActive, s.assembler, m.model, m.fingerprint, m.state, m.filled
       FROM stream_state s LEFT JOIN model_state m ON m.stream = s.stream
       WHERE s.resident = 1 AND s.grp IN (SELECT value FROM json_each(?)) AND (s.grp, s.stream) > (?, ?)
       ORDER BY s.grp, s.stream LIMIT ?`,
    );
    type Joined = Omit<StreamStateRow, 'models' | 'resident'> & { model: string | null; fingerprint: string; state: Buffer; filled: number };
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
        if (r.model !== null) (cur.models as ModelStateRow[]).push({ model: r.model, fingerprint: r.fingerprint, state: r.state, filled: r.filled });
      }
      if (cur) yield cur;
      const end = take[take.length - 1]!;
      after = [end.group, end.stream];
    }
  }

  /** A stream's stored state (spilled after idling, or checkpointed), if any. */
  loadStream(group: string, stream: string): StreamStateRow | undefined {
    this.#database();
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
    this.#queue.push({ what, run });
    if (this.#queue.length === 1 && !this.#retryTimer) this.flush();
  }

  /** True while queued writes wait on a failing store. */
  get failing(): boolean {
    return this.#failure !== null;
  }

  /** The failure writes are waiting on, for logs and readiness. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** Writes waiting to be retried. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Run queued writes in order; stops at the first transient failure. Returns true when none are left. */
  flush(): boolean {
    while (this.#queue.length > 0) {
      const job = this.#queue[0]!;
      try {
        job.run();
      } catch (err) {
        if (isTransientStoreError(err)) {
          this.reportFailure(err as Error, job.what);
          return false;
        }
        this.#opts.log.error({ err, write: job.what }, 'store write refused; row dropped');
      }
      this.#queue.shift();
    }
    if (this.#failure) {
      this.#opts.log.warn({ after: this.#failure.message }, 'store writable again; queued writes committed');
      this.#failure = null;
      this.#retryMs = RETRY_MIN_MS;
      this.onRecovered?.();
    }
    return true;
  }

  /**
   * Note a transient failure and schedule a retry of the queue: from a queued
   * write, or from a write outside the queue (e.g. the input log).
   */
  reportFailure(err: Error, what: string): void {
    if (!this.#failure) this.#opts.log.error({ err: { message: err.message, code: (err as { code?: unknown }).code }, write: what }, 'store cannot write: holding messages unacknowledged and retrying');
    this.#failure = err;
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#db) this.flush();
    }, this.#retryMs);
    this.#retryTimer.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
  }

  /** A write outside the queue went through: clears a failure when nothing is queued. */
  reportSuccess(): void {
    if (this.#failure && this.#queue.length === 0) this.flush();
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
    const deleted: Record<string, number> = {};
    db.transaction(() => {
      // Stream by stream, on predictions_by_stream_time (predictions has no index on time alone: one B-tree less per row written).
      const byStream = db.prepare('DELETE FROM predictions WHERE stream = ? AND issued_at < ?');
      deleted.predictions = 0;
      for (const id of db.prepare('SELECT id FROM streams').pluck().all() as string[]) deleted.predictions += byStream.run(id, cutoff).changes;
      deleted.forecast_errors = db.prepare('DELETE FROM forecast_errors WHERE target_time < ?').run(cutoff).changes;
      deleted.steps = db.prepare('DELETE FROM steps WHERE ts < ?').run(cutoff).changes;
      deleted.events = db.prepare('DELETE FROM events WHERE at < ?').run(cutoff).changes;
      deleted.dead_letters = db.prepare('DELETE FROM dead_letters WHERE received_at < ?').run(cutoff).changes;
    })();
    return deleted;
  }

  /** The database handle, for read-only queries (tidecast query, tests). */
  get db(): Database.Database {
    return this.#database();
  }

  /** Checkpoint the WAL and close. Safe to call twice. */
  stop(): void {
    this.#checkpointer?.postMessage('stop');
    this.#checkpointer = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (!this.#db) return;
    if (this.#queue.length > 0) {
      this.flush();
      if (this.#queue.length > 0) this.#opts.log.error({ queued: this.#queue.length, err: this.#failure?.message }, 'store stopping with writes it could not commit; the input log replays them at the next start');
    }
    try {
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.#db.close();
      this.#db = null;
      this.#stmts = null;
      this.#commitBatch = null;
      this.#writeCheckpoint = null;
      this.#scoreByOffsets.clear();
    }
  }
}

/** Latest predictions, newest issue time first (uses predictions_by_stream_time when a stream is given). */
export function latestPredictions(db: Database.Database, opts: { stream?: string; limit: number }): StoredPrediction[] {
  const cols = `stream, model, issued_at AS issuedAt, horizon, target, target_time AS targetTime, value, label, probabilities, created_at AS createdAt`;
  const rows = opts.stream === undefined
    ? db.prepare(`SELECT ${cols} FROM predictions ORDER BY issued_at DESC, stream, model, horizon, target LIMIT ?`).all(opts.limit)
    : db.prepare(`SELECT ${cols} FROM predictions WHERE stream = ? ORDER BY issued_at DESC, model, horizon, target LIMIT ?`).all(opts.stream, opts.limit);
  return rows as StoredPrediction[];
}
