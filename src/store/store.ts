import Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { batchTransfer, checkpointTransfer, packBatch, packCheckpoint, spills, type PackedBatch, type PackedCheckpoint } from './codec.js';
import { closeInputLog, moveLegacyLog, openDatabase, openInputLog } from './database.js';
import type { ForecastLayout } from './ids.js';
import { InputLog, type InputRow } from './input-log.js';
import { LogGuard } from './log-guard.js';
import type { AccuracyDelta, DeadLetterRow, EventRow, ForecastRow, StepRow, StreamStateRow } from './rows.js';
import { StateReader } from './state-store.js';
import { MAX_BACKLOG, WriterClient } from './writer-client.js';
import type { WriterRequest } from './writer-messages.js';

export type { ForecastLayout } from './ids.js';
export type { InputRow } from './input-log.js';
export type * from './rows.js';
export { latestPredictions } from './queries.js';

export interface StoreOptions {
  /** SQLite file, or ':memory:'. */
  path: string;
  retentionDays: number;
  /** Dead letters kept at most (MiB, the oldest pruned first); 0 or absent: by age only. */
  deadLetterMaxMiB?: number;
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
  /** `quick` (default): `PRAGMA quick_check` on the database and the input log at start; `off`: none. */
  integrityCheck?: 'quick' | 'off';
}

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
/** How long, and up to how many, dead letters are gathered into one write. */
const DEAD_LETTER_GATHER_MS = 50;
const DEAD_LETTER_GATHER_ROWS = 256;

export class Store {
  readonly #opts: StoreOptions;
  readonly #now: () => number;
  #db: Database.Database | null = null;
  #logDb: Database.Database | null = null;
  #log: InputLog | null = null;
  #states: StateReader | null = null;
  #writer: WriterClient | null = null;
  readonly #guard: LogGuard;
  #stopping: Promise<void> | null = null;
  #deadLetters: DeadLetterRow[] = [];
  #deadLetterTimer: NodeJS.Timeout | null = null;
  /** Called when writes go through again after a failure, or the writer's backlog has drained. */
  onRecovered: (() => void) | null = null;
  /** Called once if the writer meets a failure no retry fixes (a damaged database): nothing more is written, the daemon must stop. */
  onFatal: ((err: TidecastError) => void) | null = null;
  /** Called for each write refused for its rows and dropped (logged). */
  onDropped: (() => void) | null = null;

  constructor(options: StoreOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#guard = new LogGuard({
      log: options.log,
      retry: () => this.#log?.flushQuietly() ?? false,
      othersFailing: () => (this.#writer?.failure ?? null) !== null,
      recovered: () => this.onRecovered?.(),
    });
  }

  /** Open the files, run pending migrations, start the writer. */
  start(): void {
    if (this.#db) return;
    const file = this.#opts.path;
    const logDb = file === ':memory:' ? null : openInputLog(this.#opts);
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
    this.#writer = new WriterClient({
      db,
      file,
      durability: this.#opts.durability,
      maxSizeMiB: this.#opts.maxSizeMiB,
      now: this.#now,
      log: this.#opts.log,
      failing: () => this.failing,
      recovered: () => this.onRecovered?.(),
      fatal: (err) => this.onFatal?.(err),
      dropped: () => this.onDropped?.(),
    });
  }

  #database(): Database.Database {
    if (!this.#db) throw new TidecastError(ErrorCodes.STOPPED, 'the store is not open');
    return this.#db;
  }

  /** Hand an op to the writer; resolves with its result, or null when it was dropped. */
  #send(op: WriterRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    this.#database();
    // Dead letters gathered before this op go first: the writer sees every op in the order it was made.
    if (this.#deadLetters.length > 0) this.#sendDeadLetters();
    return this.#writer!.send(op, transfer);
  }

  /** The gathered dead letters, to the writer as one op (one transaction). */
  #sendDeadLetters(): void {
    if (this.#deadLetterTimer) clearTimeout(this.#deadLetterTimer);
    this.#deadLetterTimer = null;
    const rows = this.#deadLetters;
    if (rows.length === 0 || !this.#writer) return;
    this.#deadLetters = [];
    void this.#writer.send({ op: 'deadLetters', rows });
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

  /**
   * Store a dead letter (retried while the store fails). Dead letters are
   * gathered for up to DEAD_LETTER_GATHER_MS (or DEAD_LETTER_GATHER_ROWS) and
   * written in one transaction: one at a time, a flood of refused messages
   * wrote several pages of WAL for each. Any other op sends them first.
   */
  addDeadLetter(row: DeadLetterRow): void {
    this.#database();
    if (row.seq !== undefined) this.#flushLog();
    // Its own copy of the payload: a slice of the connection's read buffer would carry the whole buffer across.
    this.#deadLetters.push({ ...row, payload: Buffer.from(row.payload) });
    if (this.#deadLetters.length >= DEAD_LETTER_GATHER_ROWS) this.#sendDeadLetters();
    else this.#deadLetterTimer ??= setTimeout(() => this.#sendDeadLetters(), DEAD_LETTER_GATHER_MS).unref();
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

  /** Delete rows older than the retention window, and the oldest dead letters past their size cap; resolves with rows deleted per table. */
  async prune(): Promise<Record<string, number>> {
    const cutoff = this.#now() - this.#opts.retentionDays * 86_400_000;
    const result = await this.#send({ op: 'prune', cutoff, deadLetterMaxBytes: (this.#opts.deadLetterMaxMiB ?? 0) * 1024 * 1024 });
    if (result === null) throw new TidecastError(ErrorCodes.STORE, 'retention pruning was refused by the store');
    return result as Record<string, number>;
  }

  /**
   * Forget streams idle (and out of memory) since before `cutoff`, up to
   * `limit` of them: their state, error sums and id (see WriterCore#forget);
   * resolves with each forgotten stream and the models it had state in.
   */
  async forget(cutoff: number, limit = 5000): Promise<Array<{ stream: string; models: string[] }>> {
    const result = await this.#send({ op: 'forget', cutoff, limit });
    if (result === null) throw new TidecastError(ErrorCodes.STORE, 'forgetting idle streams was refused by the store');
    return result as Array<{ stream: string; models: string[] }>;
  }

  /** True while writes fail (the writer's, or the input log's). */
  get failing(): boolean {
    return (this.#writer?.failure ?? null) !== null || this.#guard.failure !== null;
  }

  /** The failure writes are waiting on, for logs and readiness. */
  get failure(): Error | null {
    return this.#writer?.failure ?? this.#guard.failure;
  }

  /** Ops handed to the writer and not yet answered. */
  get backlog(): number {
    return this.#writer?.backlog ?? 0;
  }

  /** True while the writer has as much in hand as it should (the intake waits). */
  get backlogged(): boolean {
    return this.backlog >= MAX_BACKLOG;
  }

  /** Note a failed input-log write (the caller holds its message) and retry the log until it writes again. */
  reportFailure(err: Error, what: string): void {
    this.#guard.fail(err, what);
  }

  /** An input-log write went through: clears its failure. */
  reportSuccess(): void {
    this.#guard.succeed();
  }

  /** Whether the input log can take a write now (readiness), and the writer is not failing. */
  writable(): boolean {
    return !this.failing && this.#log !== null && this.#log.writable();
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
    this.#guard.cancel();
    this.#log!.flushQuietly();
    this.#sendDeadLetters();
    const left = await this.#writer!.stop();
    if (left > 0 || this.#log!.pending > 0) {
      this.#opts.log.error({ queued: left, pendingInputs: this.#log!.pending, err: this.failure?.message }, 'store stopping with writes it could not commit; the input log replays durable inputs at the next start');
    }
    await this.#log!.stop();
    try {
      if (this.#logDb !== this.#db) closeInputLog(this.#logDb!);
    } finally {
      this.#db.close();
      this.#db = null;
      this.#logDb = null;
      this.#log = null;
      this.#states = null;
    }
  }
}
