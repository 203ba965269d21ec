import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../clock.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { BatchWriter } from './batch-writer.js';
import { isDamagedStoreError, isTransientStoreError } from './failure-kinds.js';
import { boundScales } from './codec.js';
import { Ids, type ForecastLayout } from './ids.js';
import { forgetIdleStreams, pruneRows } from './retention.js';
import type { EventRow } from './rows.js';
import { CheckpointWriter } from './state-store.js';
import { describeOp, serializeError, type SerializedError, type WriterOp, type WriterReply } from './writer-messages.js';

/** Most rows (steps and forecasts) in one group of batches committed together: about 16 full batches. */
const GROUP_ROWS = 8192;

/** Retry delays for waiting writes after a transient failure. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

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
export interface WriterCoreOptions {
  /** Time for rows and the retry timer (default: the system clock). */
  clock?: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
  /**
   * Fault injection (TIDECAST_FAULT_CHECKPOINT_HOLD_MS): each checkpoint
   * transaction, its rows written, says so and waits that long before it
   * commits, so that a test can kill the process right there.
   */
  checkpointHoldMs?: number;
  /** Fault injection (TIDECAST_FAULT_WRITER_CORRUPT_AT): that commit group fails with SQLITE_CORRUPT, nothing of it written. */
  corruptAtCommit?: number;
}

export class WriterCore {
  readonly #db: Database.Database;
  readonly #ids: Ids;
  readonly #batches: BatchWriter;
  readonly #checkpoints: CheckpointWriter;
  readonly #stmts: Record<'deadLetter' | 'event' | 'adopt', Database.Statement>;
  readonly #reply: (r: WriterReply) => void;
  readonly #queue: WriterOp[] = [];
  #failure: SerializedError | null = null;
  readonly #clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
  #retryTimer: unknown = null;
  #retryMs = RETRY_MIN_MS;
  #drainSoon: NodeJS.Immediate | null = null;
  #stopped = false;
  /** Set by a fatal failure: nothing more is written. */
  #halted = false;
  /** The forecast layouts the main thread has sent, by their key (`WriterRequest` commit), with their cells' bound scales. */
  readonly #layouts = new Map<number, { layout: ForecastLayout; scales: number[] }>();
  /** Fault injection: the commit group that fails as a damaged database would (0: none), and the groups so far. */
  readonly #corruptAt: number;
  #commits = 0;

  constructor(db: Database.Database, reply: (r: WriterReply) => void, options: WriterCoreOptions = {}) {
    const clock = options.clock ?? systemClock;
    const now = (): number => clock.now();
    const checkpointHoldMs = options.checkpointHoldMs ?? 0;
    this.#clock = clock;
    this.#db = db;
    this.#corruptAt = options.corruptAtCommit ?? 0;
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
    // A layout comes once, with the first commit that uses it (whatever becomes of that commit).
    if (op.op === 'commit' && op.layout !== null) this.#layouts.set(op.layoutKey, { layout: op.layout, scales: boundScales(op.layout) });
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
        this.#reply({ kind: 'dropped', id: op.id, what: describeOp(op), error: serializeError(err) });
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
        group.map((op) => {
          const known = this.#layouts.get(op.layoutKey);
          if (!known) throw new TidecastError(ErrorCodes.INTERNAL, `batch of ${op.model}: forecast layout ${op.layoutKey} was never sent`);
          return { mid: this.#ids.model(op.model), lid: this.#ids.layout(op.model, known.layout), scales: known.scales, batch: op.batch };
        }),
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
      this.#reply({ kind: 'dropped', id: group[0]!.id, what: describeOp(group[0]!), error: serializeError(err) });
      return true;
    }
    this.#queue.splice(0, group.length);
    group.forEach((op, i) => {
      const r = results[i]!;
      if (r instanceof Error) this.#reply({ kind: 'dropped', id: op.id, what: describeOp(op), error: serializeError(r) });
      else this.#reply({ kind: 'done', id: op.id, result: r });
    });
    return true;
  }

  /** A failure no retry fixes: stop writing and say why; the op and every op after it stay unwritten. */
  #halt(err: unknown, op: WriterOp): void {
    this.#halted = true;
    this.#reply({ kind: 'fatal', id: op.id, what: describeOp(op), error: serializeError(err) });
  }

  #fail(err: unknown, op: WriterOp): void {
    if (!this.#failure) this.#reply({ kind: 'failing', what: describeOp(op), error: serializeError(err) });
    this.#failure = serializeError(err);
    this.#retryTimer = this.#clock.setTimeout(() => {
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
        return pruneRows(this.#db, op.cutoff, op.deadLetterMaxBytes);
      case 'forget':
        return forgetIdleStreams(this.#db, op.cutoff, op.limit);
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

  /** Try once more what waits, then stop; answers with the number of ops left unwritten. */
  #stop(id: number): void {
    if (this.#drainSoon) clearImmediate(this.#drainSoon);
    this.#drainSoon = null;
    if (this.#retryTimer !== null) this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.#queue.length > 0) {
      // One more try; ops that still fail stay unwritten (the input log replays their inputs at the next start).
      this.#drain();
      if (this.#retryTimer !== null) this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    this.#stopped = true;
    this.#reply({ kind: 'done', id, result: this.#queue.length });
  }
}
