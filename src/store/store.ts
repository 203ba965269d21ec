import Database from 'better-sqlite3';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { batchTransfer, checkpointTransfer, packBatch, packCheckpoint, spills, type PackedBatch, type PackedCheckpoint } from './codec.js';
import { CACHE_MIB, configure, inputLogPath, openDatabase } from './database.js';
import type { ForecastLayout } from './ids.js';
import { INPUT_LOG_SCHEMA, InputLog, type InputRow } from './input-log.js';
import type { AccuracyDelta, DeadLetterRow, EventRow, ForecastRow, StepRow, StreamStateRow } from './rows.js';
import { StateReader } from './state-store.js';
import { WriterCore, type WriterOp, type WriterReply, type WriterRequest } from './writer.js';

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

/** Ops the writer may have in hand before the intake waits (a batch op carries up to maxBatch steps). */
/**
 * The writer thread's young generation, MB. Under load V8 grew it to 16 MB
 * (the text of its rows dies young either way); at 8 MB the thread's heap at
 * 100k streams is about 22 MB instead of 30, at the same CPU per message
 * (7.0–7.3 µs against 7.5–7.7, two runs each).
 */
const WRITER_YOUNG_GENERATION_MB = 8;
const MAX_BACKLOG = 64;
/** Retry delays for the input log after a failed write. */
const LOG_RETRY_MIN_MS = 50;
const LOG_RETRY_MAX_MS = 2000;

type Pending = { resolve(result: unknown): void; reject(err: Error): void };

/**
 * The SQLite store (better-sqlite3, WAL, schema 8), as the main thread sees it.
 *
 * - The input log (`input-log.ts`) is the main thread's: its own database
 *   file (`<path>-inputs`), appended before a QoS 1/2 message is acknowledged.
 * - Every other write (batches of steps and forecasts, checkpoints, events,
 *   dead letters, pruning) is an op for the writer (`writer.ts`), which runs
 *   them in order on its own connection in a worker thread
 *   (`writer-thread.ts`); rows cross packed in a few transferred buffers
 *   (`codec.ts`). For ':memory:' the writer runs on the main thread, on the
 *   same connection, and the log lives in the same database.
 * - Reads (recovery, a returning stream, the dashboard and `tidecast query`)
 *   run on the main thread's connection.
 */
export class Store {
  readonly #opts: StoreOptions;
  readonly #now: () => number;
  #db: Database.Database | null = null;
  #logDb: Database.Database | null = null;
  #log: InputLog | null = null;
  #states: StateReader | null = null;
  #worker: Worker | null = null;
  #checkpointer: Worker | null = null;
  #checkpointerExited: Promise<void> | null = null;
  #inline: WriterCore | null = null;
  #exited: Promise<void> | null = null;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #writerFailure: Error | null = null;
  #logFailure: Error | null = null;
  #logRetry: NodeJS.Timeout | null = null;
  #logRetryMs = LOG_RETRY_MIN_MS;
  #stopping: Promise<void> | null = null;
  /** Called when writes go through again after a failure, or the writer's backlog has drained. */
  onRecovered: (() => void) | null = null;

  constructor(options: StoreOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
  }

  /** Open the files, run pending migrations, start the writer. */
  start(): void {
    if (this.#db) return;
    const file = this.#opts.path;
    const memory = file === ':memory:';
    let logDb: Database.Database | null = null;
    try {
      if (!memory) {
        logDb = new Database(inputLogPath(file));
        // A durable append commits one page to the WAL: small pages for small rows (a new file only;
        // WAL mode fixes the page size of an existing one). bench: 3.2x less WAL, a third less time per append.
        if ((logDb.pragma('page_count', { simple: true }) as number) === 0) logDb.pragma(`page_size = ${INPUT_LOG_PAGE_SIZE}`);
        configure(logDb, this.#opts, CACHE_MIB.log);
        // The checkpointer thread copies its WAL back: never on this thread.
        logDb.pragma('wal_autocheckpoint = 0');
      }
    } catch (err) {
      logDb?.close();
      throw new TidecastError(ErrorCodes.STORE, `cannot open the input log ${inputLogPath(file)}: ${(err as Error).message}`, { cause: err });
    }
    const db = openDatabase(this.#opts, (old, version) => {
      // Schema 8 moved the input log into its own file: carry over what an older version left.
      if (logDb && version < 8) moveLegacyLog(old, logDb);
    });
    this.#db = db;
    this.#logDb = logDb ?? db;
    this.#states = new StateReader(db);
    // Positions are never reused: a stream checkpointed after the record may reflect inputs beyond the log (a QoS 0 group lost in a crash).
    const lastSeq = Math.max(this.#states.checkpointSeq(), this.#states.maxStreamSeq());
    this.#log = new InputLog(this.#logDb, { lastSeq, onGroupFailure: (err) => this.reportFailure(err, 'input log (QoS 0 group)') });
    if (memory) {
      this.#inline = new WriterCore(db, (r) => this.#onReply(r), this.#now);
      return;
    }
    const worker = new Worker(new URL('./writer-thread.js', import.meta.url), {
      workerData: { file, durability: this.#opts.durability, maxSizeMiB: this.#opts.maxSizeMiB },
      resourceLimits: { maxYoungGenerationSizeMb: WRITER_YOUNG_GENERATION_MB },
    });
    const checkpointer = new Worker(new URL('./wal-checkpointer.js', import.meta.url), { workerData: { files: [file, inputLogPath(file)], intervalMs: 1000 } });
    checkpointer.on('message', (m: { error?: string }) => this.#opts.log.warn({ err: m.error }, 'WAL checkpoint failed; retrying'));
    checkpointer.on('error', (err) => this.#opts.log.error({ err }, 'WAL checkpointer stopped'));
    checkpointer.unref();
    this.#checkpointer = checkpointer;
    this.#checkpointerExited = new Promise((resolve) => checkpointer.once('exit', () => resolve()));
    worker.on('message', (r: WriterReply) => this.#onReply(r));
    worker.on('error', (err) => {
      this.#opts.log.error({ err }, 'store writer thread failed');
      this.#writerFailure = err;
    });
    this.#exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        this.#worker = null;
        if (this.#pending.size > 0 && this.#stopping === null) {
          // Died before stop: nothing it had is written (the input log replays it at the next start).
          this.#writerFailure ??= new TidecastError(ErrorCodes.STORE_UNAVAILABLE, `the store writer thread exited (code ${code})`);
          this.#opts.log.error({ code, ops: this.#pending.size }, 'store writer thread exited; holding messages');
        }
        for (const p of this.#pending.values()) p.resolve(null);
        this.#pending.clear();
        resolve();
      }),
    );
    this.#worker = worker;
  }

  #database(): Database.Database {
    if (!this.#db) throw new TidecastError(ErrorCodes.STOPPED, 'the store is not open');
    return this.#db;
  }

  /** Hand an op to the writer; resolves with its result, or null when it was dropped. */
  #send(op: WriterRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    this.#database();
    if (this.#exited !== null && this.#worker === null) return Promise.resolve(null); // the writer thread is gone
    const id = this.#nextId++;
    const full = { ...op, id } as WriterOp;
    const done = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    if (this.#worker) this.#worker.postMessage(full, transfer);
    else {
      const core = this.#inline!;
      setImmediate(() => core.receive(full));
    }
    return done;
  }

  #onReply(r: WriterReply): void {
    const log = this.#opts.log;
    switch (r.kind) {
      case 'done':
      case 'dropped': {
        const p = this.#pending.get(r.id);
        this.#pending.delete(r.id);
        if (r.kind === 'dropped') {
          log.error({ err: r.error, write: r.what }, 'store write refused; row dropped');
          p?.resolve(null);
        } else p?.resolve(r.result);
        if (this.#pending.size === MAX_BACKLOG / 2 && !this.failing) this.onRecovered?.();
        return;
      }
      case 'failing':
        if (!this.failing) log.error({ err: r.error, write: r.what }, 'store cannot write: holding messages unacknowledged and retrying');
        this.#writerFailure = Object.assign(new Error(r.error.message), { code: r.error.code });
        return;
      case 'fault':
        log.warn({ what: r.what, holdMs: r.holdMs }, 'fault injection: holding a checkpoint transaction open');
        return;
      case 'recovered':
        this.#writerFailure = null;
        log.warn({ after: r.after }, 'store writable again; queued writes committed');
        if (!this.failing) this.onRecovered?.();
        return;
    }
  }

  /**
   * Commit one model's batch in one transaction: its steps (the actuals), its
   * events and its forecasts, one row each. Resolves, per forecast, whether it
   * was new (a replay after a crash recomputes forecasts already stored), or
   * null when the writer refused the batch (logged there).
   *
   * Not an async function: one would keep its arguments, every row object
   * of the batch, alive until the writer answers, long enough for the
   * young-generation GC to copy them and often to promote them. Packed here,
   * the rows die young.
   */
  commit(model: string, layout: ForecastLayout, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[] = []): Promise<boolean[] | null> {
    let batch: PackedBatch;
    try {
      this.#flushLog();
      batch = packBatch(steps, forecasts, events);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.#send({ op: 'commit', model, layout, batch }, batchTransfer(batch)).then((inserted) => (inserted ? Array.from(inserted as Uint8Array, (x) => x === 1) : null));
  }

  /**
   * Append an accepted message (or a clock tick) to the input log and return
   * its position. `durable` (QoS 1/2, ticks): written before this returns, so
   * once the caller acknowledges, the message survives a crash (and, with
   * durability `power`, a power cut); throws a transient error when the log
   * cannot be written, and the caller holds the message. Otherwise (QoS 0) the
   * row joins a group commit within 5 ms (see InputLog).
   */
  appendInput(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer, durable = true): number {
    this.#database();
    return this.#log!.append(kind, receivedAt, topic, payload, durable);
  }

  /**
   * A message refused before its acknowledgement: `durable` (QoS 1/2), it is
   * logged (kind 2) before this returns, so its dead letter is stored whatever
   * happens next (throws when the log cannot be written); then the dead letter
   * goes to the writer.
   */
  refuse(row: DeadLetterRow, durable: boolean): void {
    this.#database();
    let seq: number | undefined;
    if (durable) {
      const note = JSON.stringify({ reason: row.reason, detail: row.detail, stream: row.stream ?? null, payloadBytes: row.payloadBytes });
      seq = this.#log!.append(2, row.receivedAt, row.topic, row.payload, true, note);
    }
    this.addDeadLetter(seq === undefined ? row : { ...row, seq });
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
   * Write, in one transaction, streams' states (each with the log position it
   * reflects) with their open forecasts and the error sums scored for them;
   * with `seq` (not null), also the checkpoint's record: the position a
   * recovery replays from. The rows are packed here (the caller may change
   * its state as soon as this returns). The op goes to the writer once every
   * batch handed over before has been committed and its forecasts published,
   * so that no checkpoint covers a forecast stored but never sent. Resolves
   * once committed (a record: the log is then trimmed up to `seq`); rejects
   * when the writer refused it or stopped first.
   */
  writeCheckpoint(seq: number | null, streams: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[] = []): Promise<void> {
    return this.writePacked(seq, [packCheckpoint(streams, accuracy)]);
  }

  /** `writeCheckpoint` for chunks packed beforehand (`codec.packCheckpoint`), written in one transaction. */
  async writePacked(seq: number | null, packs: readonly PackedCheckpoint[]): Promise<void> {
    // Read before the buffers are transferred (they are empty here afterwards).
    const spilling = packs.some(spills);
    await this.settled();
    const result = await this.#send({ op: 'checkpoint', seq, packs }, packs.flatMap(checkpointTransfer));
    if (result === null) throw new TidecastError(ErrorCodes.STORE, 'the checkpoint was refused by the store');
    if (spilling) this.#states!.spilled();
    if (seq !== null) void this.#log?.trim(seq);
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

  /** Store a dead letter (retried while the store fails). */
  addDeadLetter(row: DeadLetterRow): void {
    if (row.seq !== undefined) this.#flushLog();
    // Its own copy of the payload: a slice of the connection's read buffer would carry the whole buffer across.
    void this.#send({ op: 'deadLetter', row: { ...row, payload: Buffer.from(row.payload) } });
  }

  /** Store an event (retried while the store fails). */
  addEvent(row: EventRow): void {
    if (row.seq != null) this.#flushLog();
    void this.#send({ op: 'event', row });
  }

  /** A reloaded model file keeps the states saved under the previous one: re-label them. */
  adoptFingerprint(model: string, from: string, to: string): void {
    void this.#send({ op: 'adoptFingerprint', model, from, to });
  }

  /** Resolves once every write handed to the store so far has been answered (committed, or refused). */
  async settled(): Promise<void> {
    await this.#send({ op: 'barrier' });
  }

  /** Delete rows older than the retention window; resolves with rows deleted per table. */
  async prune(): Promise<Record<string, number>> {
    const cutoff = this.#now() - this.#opts.retentionDays * 86_400_000;
    const result = await this.#send({ op: 'prune', cutoff });
    if (result === null) throw new TidecastError(ErrorCodes.STORE, 'retention pruning was refused by the store');
    return result as Record<string, number>;
  }

  /** True while writes fail (the writer's, or the input log's). */
  get failing(): boolean {
    return this.#writerFailure !== null || this.#logFailure !== null;
  }

  /** The failure writes are waiting on, for logs and readiness. */
  get failure(): Error | null {
    return this.#writerFailure ?? this.#logFailure;
  }

  /** Ops handed to the writer and not yet answered. */
  get backlog(): number {
    return this.#pending.size;
  }

  /** True while the writer has as much in hand as it should (the intake waits). */
  get backlogged(): boolean {
    return this.#pending.size >= MAX_BACKLOG;
  }

  /** Note a failed input-log write (the caller holds its message) and retry the log until it writes again. */
  reportFailure(err: Error, what: string): void {
    if (!this.failing) this.#opts.log.error({ err: { message: err.message, code: (err as { code?: unknown }).code }, write: what }, 'store cannot write: holding messages unacknowledged and retrying');
    this.#logFailure = err;
    if (this.#logRetry) return;
    this.#logRetry = setTimeout(() => {
      this.#logRetry = null;
      if (!this.#log) return;
      if (this.#log.flushQuietly()) this.reportSuccess();
    }, this.#logRetryMs);
    this.#logRetry.unref();
    this.#logRetryMs = Math.min(this.#logRetryMs * 2, LOG_RETRY_MAX_MS);
  }

  /** An input-log write went through: clears its failure. */
  reportSuccess(): void {
    if (!this.#logFailure) return;
    this.#logFailure = null;
    this.#logRetryMs = LOG_RETRY_MIN_MS;
    if (this.#logRetry) clearTimeout(this.#logRetry);
    this.#logRetry = null;
    if (!this.failing) {
      this.#opts.log.warn('store writable again; queued writes committed');
      this.onRecovered?.();
    }
  }

  /** Whether the input log can take a write now (readiness), and the writer is not failing. */
  writable(): boolean {
    if (this.failing) return false;
    try {
      this.#logDb!.exec('BEGIN IMMEDIATE; ROLLBACK');
      return true;
    } catch {
      return false;
    }
  }

  /** Write the pending QoS 0 group; a failure is reported, the rows stay pending. */
  #flushLog(): void {
    if (this.#log && this.#log.pending > 0) this.#log.flushQuietly();
  }

  /** The main thread's connection, for read-only queries (tidecast query, the dashboard, tests). */
  get db(): Database.Database {
    return this.#database();
  }

  /**
   * Write the pending inputs, let the writer finish what it has (one more try
   * for writes waiting on a failure), copy the WALs back and close. Ops the
   * writer could not write are dropped: the input log replays their inputs at
   * the next start. Safe to call twice.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (!this.#db) return;
    if (this.#logRetry) clearTimeout(this.#logRetry);
    this.#logRetry = null;
    this.#log!.flushQuietly();
    // Its connections close (and may delete the WAL files) before stop returns: nothing touches the files after.
    // Referenced again, so that the event loop waits for its exit even when nothing else is left (a writer that
    // died); terminated if it has not gone within 5 s.
    const checkpointer = this.#checkpointer;
    this.#checkpointer = null;
    checkpointer?.ref();
    checkpointer?.postMessage('stop');
    const checkpointerGone = checkpointer
      ? Promise.race([this.#checkpointerExited, new Promise<void>((r) => setTimeout(r, 5000).unref())]).then(() => void checkpointer.terminate())
      : Promise.resolve();
    const left = ((await this.#send({ op: 'stop' })) as number | null) ?? this.#pending.size;
    if (left > 0 || this.#log!.pending > 0) {
      this.#opts.log.error({ queued: left, pendingInputs: this.#log!.pending, err: this.failure?.message }, 'store stopping with writes it could not commit; the input log replays durable inputs at the next start');
    }
    await this.#exited;
    await checkpointerGone;
    for (const p of this.#pending.values()) p.reject(new TidecastError(ErrorCodes.STOPPED, 'the store stopped before this write'));
    this.#pending.clear();
    await this.#log!.stop();
    try {
      if (this.#logDb !== this.#db) {
        try {
          this.#logDb!.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          this.#logDb!.close();
        }
      }
    } finally {
      this.#db.close();
      this.#db = null;
      this.#logDb = null;
      this.#log = null;
      this.#states = null;
      this.#worker = null;
      this.#inline = null;
    }
  }
}

/** Page size of a new input log file: an input row is some 100-200 bytes. */
const INPUT_LOG_PAGE_SIZE = 1024;

/** Copy an input log of schema 7 or older into the log's own file (idempotent: a crash before the migration copies again). */
function moveLegacyLog(db: Database.Database, logDb: Database.Database): void {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'input_log'").get();
  if (!exists) return;
  const rows = db.prepare('SELECT seq, kind, received_at, topic, payload FROM input_log ORDER BY seq').iterate() as IterableIterator<{ seq: number; kind: number; received_at: number; topic: string; payload: Buffer }>;
  logDb.exec(INPUT_LOG_SCHEMA);
  const insert = logDb.prepare('INSERT OR IGNORE INTO input_log (seq, kind, received_at, topic, payload) VALUES (?, ?, ?, ?, ?)');
  logDb.transaction(() => {
    for (const r of rows) insert.run(r.seq, r.kind, r.received_at, r.topic, r.payload);
  })();
}
