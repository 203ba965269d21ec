import Database from 'better-sqlite3';
import { systemClock, type Clock } from '../clock.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { batchTransfer, checkpointTransfer, packBatch, packCheckpoint, spills, type PackedBatch, type PackedCheckpoint } from './codec.js';
import { DeadLetterGatherer } from './dead-letter-gatherer.js';
import type { ForecastLayout } from './ids.js';
import { REDELIVERED_NOTE, type InputRow } from './input-log.js';
import { LogGuard } from './log-guard.js';
import { closeStore, openStore, type OpenStore } from './open-store.js';
import type { AccuracyDelta, DeadLetterRow, EventRow, ForecastRow, StepRow, StreamStateRow } from './rows.js';
import type { StoreOptions } from './store-options.js';
import { MAX_BACKLOG, type WriterClient } from './writer-client.js';
import type { WriterRequest } from './writer-messages.js';

export type { ForecastLayout } from './ids.js';
export type { InputRow } from './input-log.js';
export type * from './rows.js';
export { latestPredictions } from './queries.js';
export type { StoreOptions } from './store-options.js';

/**
 * The SQLite store (better-sqlite3, WAL, the schema of `migrations.ts`), as
 * the main thread sees it; `openStore` opens its parts, `closeStore` closes them.
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
  /** The files and the parts on them, from start until stop. */
  #open: OpenStore | null = null;
  /** The writer, kept after stop: its failure stays readable. */
  #writer: WriterClient | null = null;
  /**
   * The forecast layouts this store's writer has been sent, by the number
   * their later commits name them with (`commit`); a layout equal to one
   * sent (a hot reload builds a new one) takes that one's number, so the
   * writer keeps one copy of each distinct layout however often models reload.
   */
  #layoutKeys = new WeakMap<ForecastLayout, number>();
  #layoutsSent = new Map<string, number>();
  readonly #guard: LogGuard;
  readonly #clock: Clock;
  #stopping: Promise<void> | null = null;
  readonly #deadLetters: DeadLetterGatherer;
  /** Called when writes go through again after a failure, or the writer's backlog has drained. */
  onRecovered: (() => void) | null = null;
  /** Called once if the writer meets a failure no retry fixes (a damaged database): nothing more is written, the daemon must stop. */
  onFatal: ((err: TidecastError) => void) | null = null;
  /** Called for each write refused for its rows and dropped (logged). */
  onDropped: (() => void) | null = null;

  constructor(options: StoreOptions) {
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
    this.#guard = new LogGuard({
      clock: this.#clock,
      log: options.log,
      retry: () => this.#open?.log.flushQuietly() ?? false,
      othersFailing: () => (this.#writer?.failure ?? null) !== null,
      recovered: () => this.onRecovered?.(),
    });
    this.#deadLetters = new DeadLetterGatherer(() => this.#writer, this.#clock);
  }

  /** Open the files, run pending migrations, start the writer. */
  start(): void {
    if (this.#open) return;
    this.#open = openStore(this.#opts, {
      logGroupFailed: (err) => this.reportFailure(err, 'input log (QoS 0 group)'),
      failing: () => this.failing,
      recovered: () => this.onRecovered?.(),
      fatal: (err) => this.onFatal?.(err),
      dropped: () => this.onDropped?.(),
    });
    this.#writer = this.#open.writer;
    this.#layoutKeys = new WeakMap();
    this.#layoutsSent = new Map();
  }

  #opened(): OpenStore {
    if (!this.#open) throw new TidecastError(ErrorCodes.STOPPED, 'the store is not open');
    return this.#open;
  }

  /** Hand an op to the writer; resolves with its result, or null when it was dropped. */
  #send(op: WriterRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    this.#opened();
    // Dead letters gathered before this op go first: the writer sees every op in the order it was made.
    if (this.#deadLetters.pending > 0) this.#deadLetters.flush();
    return this.#writer!.send(op, transfer);
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
      batch = packBatch(steps, forecasts, events, layout);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    let layoutKey = this.#layoutKeys.get(layout);
    let first = false;
    if (layoutKey === undefined) {
      const text = JSON.stringify(layout);
      layoutKey = this.#layoutsSent.get(text);
      if ((first = layoutKey === undefined)) this.#layoutsSent.set(text, (layoutKey = this.#layoutsSent.size + 1));
      this.#layoutKeys.set(layout, layoutKey!);
    }
    return this.#send({ op: 'commit', model, layoutKey: layoutKey!, layout: first ? layout : null, batch }, batchTransfer(batch)).then((inserted) => (inserted ? Array.from(inserted as Uint8Array, (x) => x === 1) : null));
  }

  /**
   * Append an accepted message (or a clock tick) to the input log and return
   * its position. `durable` (QoS 1/2, ticks): written before this returns, so
   * once the caller acknowledges, the message survives a crash (and, with
   * durability `power`, a power cut); throws a transient error when the log
   * cannot be written, and the caller holds the message. Otherwise (QoS 0) the
   * row joins a group commit within 5 ms (see InputLog).
   */
  appendInput(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer, durable = true, redelivered = false): number {
    return this.#opened().log.append(kind, receivedAt, topic, payload, durable, redelivered ? REDELIVERED_NOTE : null);
  }

  /**
   * A message refused before its acknowledgement: `durable` (QoS 1/2), it is
   * logged (kind 2) before this returns, so its dead letter is stored whatever
   * happens next (throws when the log cannot be written); then the dead letter
   * goes to the writer.
   */
  refuse(row: DeadLetterRow, durable: boolean): void {
    const { log } = this.#opened();
    let seq: number | undefined;
    if (durable) {
      const note = JSON.stringify({ reason: row.reason, detail: row.detail, stream: row.stream ?? null, payloadBytes: row.payloadBytes });
      seq = log.append(2, row.receivedAt, row.topic, row.payload, true, note);
    }
    this.addDeadLetter(seq === undefined ? row : { ...row, seq });
  }

  /** QoS 0 inputs not yet written. */
  get pendingInputs(): number {
    return this.#open?.log.pending ?? 0;
  }

  /** Up to `limit` log entries after a position, in order (recovery replays them page by page). */
  inputAfter(seq: number, limit: number): InputRow[] {
    return this.#opened().log.after(seq, limit);
  }

  /** The last checkpoint: the log position every stored state reflects (0: none yet). */
  checkpointSeq(): number {
    return this.#opened().states.checkpointSeq();
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
    if (spilling) this.#open!.states.spilled();
    if (seq !== null) void this.#open?.log.trim(seq);
  }

  /** Streams of these route groups that were in memory at the last checkpoint, with their model states, in pages. */
  residentStreams(groups: readonly string[], page = 5000): IterableIterator<StreamStateRow> {
    return this.#opened().states.resident(groups, page);
  }

  /** A stream's stored state (spilled after idling, or checkpointed), if any. */
  loadStream(group: string, stream: string): StreamStateRow | undefined {
    return this.#opened().states.load(group, stream);
  }

  /**
   * Store a dead letter (retried while the store fails). Dead letters are
   * gathered for up to 50 ms (or 256 of them) and written in one transaction
   * (`dead-letter-gatherer.ts`). Any other op sends them first.
   */
  addDeadLetter(row: DeadLetterRow): void {
    this.#opened();
    if (row.seq !== undefined) this.#flushLog();
    this.#deadLetters.add(row);
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
    const cutoff = this.#clock.now() - this.#opts.retentionDays * 86_400_000;
    const result = await this.#send({ op: 'prune', cutoff, deadLetterMaxBytes: (this.#opts.deadLetterMaxMiB ?? 0) * 1024 * 1024 });
    if (result === null) throw new TidecastError(ErrorCodes.STORE, 'retention pruning was refused by the store');
    return result as Record<string, number>;
  }

  /**
   * Forget streams idle (and out of memory) since before `cutoff`, up to
   * `limit` of them: their state, error sums and id (see retention.ts, forgetIdleStreams);
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
    return !this.failing && this.#open !== null && this.#open.log.writable();
  }

  /** Write the pending QoS 0 group; a failure is reported, the rows stay pending. */
  #flushLog(): void {
    const log = this.#open?.log;
    if (log && log.pending > 0) log.flushQuietly();
  }

  /** The main thread's connection, for read-only queries (tidecast query, the dashboard, tests). */
  get db(): Database.Database {
    return this.#opened().db;
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
    const open = this.#open;
    if (!open) return;
    this.#guard.cancel();
    open.log.flushQuietly();
    this.#deadLetters.flush();
    await closeStore(open, this.#opts.log, () => this.failure, () => (this.#open = null));
  }
}
