import type Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';
import { BatchWriter } from './batch-writer.js';
import type { PackedBatch, PackedCheckpoint } from './codec.js';
import { Ids, type ForecastLayout } from './ids.js';
import type { DeadLetterRow, EventRow } from './rows.js';
import { CheckpointWriter } from './state-store.js';

/** What the main thread asks of the writer. */
export type WriterRequest =
  | { readonly op: 'commit'; readonly model: string; readonly layout: ForecastLayout; readonly batch: PackedBatch }
  /** Streams of a checkpoint; with `seq` (not null), also the checkpoint's record. */
  | { readonly op: 'checkpoint'; readonly seq: number | null; readonly packs: readonly PackedCheckpoint[] }
  | { readonly op: 'deadLetters'; readonly rows: readonly DeadLetterRow[] }
  | { readonly op: 'event'; readonly row: EventRow }
  | { readonly op: 'adoptFingerprint'; readonly model: string; readonly from: string; readonly to: string }
  | { readonly op: 'prune'; readonly cutoff: number; readonly deadLetterMaxBytes: number }
  | { readonly op: 'forget'; readonly cutoff: number; readonly limit: number }
  /** Nothing to write: answered once every op before it is. */
  | { readonly op: 'barrier' }
  | { readonly op: 'stop' };

/** A request with its id: each op is answered once, in order. */
export type WriterOp = WriterRequest & { readonly id: number };

/** What the writer tells the main thread. */
export type WriterReply =
  /** The op went through (`result`: a commit's per-forecast "new" flags, a prune's counts, a stop's ops left unwritten). */
  | { readonly kind: 'done'; readonly id: number; readonly result?: unknown }
  /** The op's rows were refused (a bug in the row, such as a non-finite value the schema's CHECK refuses): dropped. */
  | { readonly kind: 'dropped'; readonly id: number; readonly what: string; readonly error: SerializedError }
  /**
   * The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB): the writer
   * stops writing, nothing is dropped, and the daemon stops (exit 74) with
   * every input since the last checkpoint still in the log.
   */
  | { readonly kind: 'fatal'; readonly id: number; readonly what: string; readonly error: SerializedError }
  /** Writes fail for now (disk full, locked, I/O): they wait, in order, and are retried with backoff. */
  | { readonly kind: 'failing'; readonly what: string; readonly error: SerializedError }
  /** Every write that waited has gone through. */
  | { readonly kind: 'recovered'; readonly after: string }
  /** Fault injection (tests): a checkpoint transaction is open and held. */
  | { readonly kind: 'fault'; readonly what: string; readonly holdMs: number };

export interface SerializedError {
  readonly message: string;
  readonly code?: string;
}

/** SQLite result codes that describe the moment, not the data: retry later. */
const TRANSIENT = /^SQLITE_(FULL|BUSY|LOCKED|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM)/;

/** True for a store error worth retrying (disk full, locked, I/O). */
export function isTransientStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === ErrorCodes.STORE_UNAVAILABLE) return true;
  return typeof code === 'string' && TRANSIENT.test(code);
}

/** SQLite result codes of a damaged database file. */
const DAMAGED = /^SQLITE_(CORRUPT|NOTADB)/;

/** True for a store error that says the database file is damaged (SQLITE_CORRUPT*, SQLITE_NOTADB). */
export function isDamagedStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && DAMAGED.test(code);
}

/** Most rows (steps and forecasts) in one group of batches committed together: about 16 full batches. */
const GROUP_ROWS = 8192;

/** Retry delays for waiting writes after a transient failure. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

const serialize = (err: unknown): SerializedError => {
  const code = (err as { code?: unknown }).code;
  return { message: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) };
};

/**
 * The store's writer: runs the main thread's ops on its own connection, in
 * order, each in one transaction. It runs in a worker thread
 * (`writer-thread.ts`), so that SQLite's writes never stall the event loop
 * that acknowledges messages; for ':memory:' databases, on the main thread.
 *
 * A transient failure (disk full, locked, I/O) keeps the op, and every op
 * after it, waiting and retried with backoff; the main thread hears
 * `failing`, then `recovered`. A damaged database (SQLITE_CORRUPT,
 * SQLITE_NOTADB) is `fatal`: the writer writes nothing more, so no later
 * checkpoint can cover what was not written. Any other failure is a bug in
 * the row: the op is dropped and the main thread hears why.
 */
export class WriterCore {
  readonly #db: Database.Database;
  readonly #ids: Ids;
  readonly #batches: BatchWriter;
  readonly #checkpoints: CheckpointWriter;
  readonly #stmts: Record<'deadLetter' | 'event' | 'adopt', Database.Statement>;
  readonly #reply: (r: WriterReply) => void;
  readonly #queue: WriterOp[] = [];
  #failure: SerializedError | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #retryMs = RETRY_MIN_MS;
  #drainSoon: NodeJS.Immediate | null = null;
  #stopped = false;
  /** Set by a fatal failure: nothing more is written. */
  #halted = false;
  /** Fault injection: the commit group that fails as a damaged database would (0: none), and the groups so far. */
  readonly #corruptAt: number;
  #commits = 0;

  /**
   * `checkpointHoldMs` (fault injection, TIDECAST_FAULT_CHECKPOINT_HOLD_MS): each
   * checkpoint transaction, its rows written, says so and waits that long
   * before it commits, so that a test can kill the process right there.
   * `corruptAtCommit` (fault injection, TIDECAST_FAULT_WRITER_CORRUPT_AT): that
   * commit group fails with SQLITE_CORRUPT, nothing of it written.
   */
  constructor(db: Database.Database, reply: (r: WriterReply) => void, now: () => number = Date.now, checkpointHoldMs = 0, corruptAtCommit = 0) {
    this.#db = db;
    this.#corruptAt = corruptAtCommit;
    this.#reply = reply;
    this.#ids = new Ids(db);
    this.#batches = new BatchWriter(db, this.#ids, now, (e) => this.#event(e));
    const hold =
      checkpointHoldMs > 0
        ? () => {
            reply({ kind: 'fault', what: 'checkpoint transaction open', holdMs: checkpointHoldMs });
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, checkpointHoldMs);
          }
        : undefined;
    this.#checkpoints = new CheckpointWriter(db, this.#ids, now, hold);
    this.#stmts = {
      // Rows with a seq come from the data path and are written once however often it is replayed.
      deadLetter: db.prepare('INSERT OR IGNORE INTO dead_letters (received_at, topic, reason, detail, payload, payload_bytes, stream, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      event: db.prepare('INSERT OR IGNORE INTO events (at, stream, model, kind, detail, seq) VALUES (?, ?, ?, ?, ?, ?)'),
      adopt: db.prepare('UPDATE model_state SET fingerprint = ? WHERE model = ? AND fingerprint = ?'),
    };
  }

  /** Take an op: run it now, or after the ops waiting on a failure. */
  receive(op: WriterOp): void {
    if (this.#stopped) return;
    if (op.op === 'stop') {
      this.#stop(op.id);
      return;
    }
    this.#queue.push(op);
    // On the next turn: ops that arrive together (the writer fell behind) are committed together.
    if (this.#retryTimer === null && this.#drainSoon === null) {
      this.#drainSoon = setImmediate(() => {
        this.#drainSoon = null;
        if (!this.#stopped && this.#retryTimer === null) this.#drain();
      });
    }
  }

  #drain(): void {
    while (this.#queue.length > 0 && !this.#halted) {
      const op = this.#queue[0]!;
      if (op.op === 'commit') {
        if (!this.#commitGroup()) return;
        continue;
      }
      let result: unknown;
      try {
        result = this.#run(op);
      } catch (err) {
        if (isTransientStoreError(err)) {
          this.#fail(err, op);
          return;
        }
        if (isDamagedStoreError(err)) {
          this.#halt(err, op);
          return;
        }
        this.#queue.shift();
        this.#reply({ kind: 'dropped', id: op.id, what: describe(op), error: serialize(err) });
        continue;
      }
      this.#queue.shift();
      this.#reply({ kind: 'done', id: op.id, result });
    }
    if (this.#failure && !this.#halted) {
      const after = this.#failure.message;
      this.#failure = null;
      this.#retryMs = RETRY_MIN_MS;
      this.#reply({ kind: 'recovered', after });
    }
  }

  /**
   * Commit the batches waiting at the head of the queue in one transaction
   * (up to GROUP_ROWS steps and forecasts): one commit, and one write of each
   * page they share, for all of them. False when the store cannot write (they
   * wait and are retried).
   */
  #commitGroup(): boolean {
    const group: Array<Extract<WriterOp, { op: 'commit' }>> = [];
    let rows = 0;
    for (const op of this.#queue) {
      if (op.op !== 'commit' || (group.length > 0 && rows + op.batch.steps + op.batch.forecasts > GROUP_ROWS)) break;
      group.push(op);
      rows += op.batch.steps + op.batch.forecasts;
    }
    let results: Array<Uint8Array | Error>;
    try {
      if (this.#corruptAt > 0 && ++this.#commits === this.#corruptAt) {
        throw Object.assign(new Error('database disk image is malformed (fault injection: TIDECAST_FAULT_WRITER_CORRUPT_AT)'), { code: 'SQLITE_CORRUPT' });
      }
      results = this.#batches.commitGroup(
        group.map((op) => ({ mid: this.#ids.model(op.model), lid: this.#ids.layout(op.model, op.layout), batch: op.batch })),
        (e) => isTransientStoreError(e) || isDamagedStoreError(e),
      );
    } catch (err) {
      if (isTransientStoreError(err)) {
        this.#fail(err, group[0]!);
        return false;
      }
      if (isDamagedStoreError(err)) {
        this.#halt(err, group[0]!);
        return false;
      }
      // Not the rows of one batch (those are caught inside): refuse the first, try the rest again.
      this.#queue.shift();
      this.#reply({ kind: 'dropped', id: group[0]!.id, what: describe(group[0]!), error: serialize(err) });
      return true;
    }
    this.#queue.splice(0, group.length);
    group.forEach((op, i) => {
      const r = results[i]!;
      if (r instanceof Error) this.#reply({ kind: 'dropped', id: op.id, what: describe(op), error: serialize(r) });
      else this.#reply({ kind: 'done', id: op.id, result: r });
    });
    return true;
  }

  /** A failure no retry fixes: stop writing and say why; the op and every op after it stay unwritten. */
  #halt(err: unknown, op: WriterOp): void {
    this.#halted = true;
    this.#reply({ kind: 'fatal', id: op.id, what: describe(op), error: serialize(err) });
  }

  #fail(err: unknown, op: WriterOp): void {
    if (!this.#failure) this.#reply({ kind: 'failing', what: describe(op), error: serialize(err) });
    this.#failure = serialize(err);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#stopped) this.#drain();
    }, this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
  }

  #run(op: WriterOp): unknown {
    switch (op.op) {
      case 'checkpoint':
        this.#checkpoints.write(op.seq, op.packs);
        return undefined;
      case 'deadLetters': {
        const insert = this.#stmts.deadLetter;
        this.#db.transaction(() => {
          for (const r of op.rows) insert.run(r.receivedAt, r.topic, r.reason, r.detail, r.payload, r.payloadBytes, r.stream ?? null, r.seq ?? null);
        })();
        return undefined;
      }
      case 'event':
        this.#event(op.row);
        return undefined;
      case 'adoptFingerprint':
        return this.#stmts.adopt.run(op.to, op.model, op.from).changes;
      case 'prune':
        return this.#prune(op.cutoff, op.deadLetterMaxBytes);
      case 'forget':
        return this.#forget(op.cutoff, op.limit);
      case 'barrier':
        return undefined;
      default:
        throw new TidecastError(ErrorCodes.INTERNAL, `unknown writer op ${(op as { op: string }).op}`);
    }
  }

  /** Rows with a seq come from the data path and are written once however often it is replayed. */
  #event(e: EventRow): void {
    this.#stmts.event.run(e.at, e.stream, e.model, e.kind, e.detail, e.seq ?? null);
  }

  /** Delete rows older than `cutoff`, and the oldest dead letters past `deadLetterMaxBytes` (0: no cap); returns rows deleted per table. */
  #prune(cutoff: number, deadLetterMaxBytes: number): Record<string, number> {
    const db = this.#db;
    const deleted: Record<string, number> = {};
    db.transaction(() => {
      // The oldest range of each time-major key.
      deleted.forecasts = db.prepare('DELETE FROM forecasts WHERE issued_at < ?').run(cutoff).changes;
      deleted.steps = db.prepare('DELETE FROM step_inputs WHERE ts < ?').run(cutoff).changes;
      deleted.accuracy = db.prepare('DELETE FROM accuracy WHERE last_target_time < ?').run(cutoff).changes;
      deleted.events = db.prepare('DELETE FROM events WHERE at < ?').run(cutoff).changes;
      deleted.dead_letters = db.prepare('DELETE FROM dead_letters WHERE received_at < ?').run(cutoff).changes;
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
  #forget(cutoff: number, limit: number): Array<{ stream: string; models: string[] }> {
    const db = this.#db;
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

  /** Try once more what waits, then stop; answers with the number of ops left unwritten. */
  #stop(id: number): void {
    if (this.#drainSoon) clearImmediate(this.#drainSoon);
    this.#drainSoon = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.#queue.length > 0) {
      // One more try; ops that still fail stay unwritten (the input log replays their inputs at the next start).
      this.#drain();
      if (this.#retryTimer) clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    this.#stopped = true;
    this.#reply({ kind: 'done', id, result: this.#queue.length });
  }
}

function describe(op: WriterOp): string {
  switch (op.op) {
    case 'commit':
      return `batch of ${op.model}`;
    case 'deadLetters':
      return op.rows.length === 1 ? 'dead letter' : `${op.rows.length} dead letters`;
    case 'adoptFingerprint':
      return 'model state';
    default:
      return op.op;
  }
}
