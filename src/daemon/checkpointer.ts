import { Repeating, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { packCheckpoint, type PackedCheckpoint } from '../store/codec.js';
import type { CheckpointedStream, Store, StreamStateRow } from '../store/store.js';
import type { CheckpointTarget } from '../streams/residency.js';
import type { ScoreBook } from './score-book.js';
import type { Service } from './service.js';

/** Most streams a checkpoint captures in one turn of the event loop. */
export const CHECKPOINT_CHUNK = 128;
/**
 * How long a checkpoint captures streams in one turn of the event loop, ms;
 * taking their error sums and packing them for the writer adds about as much.
 */
const CHECKPOINT_SLICE_MS = 1.5;
/** Streams per checkpoint transaction of the writer (chunks are packed as they are captured, and written together). */
const CHECKPOINT_WRITE = 1024;
/**
 * Checkpoint transactions posted to the writer and not yet committed, at
 * most, before capturing goes on. What waits for the writer is memory the
 * process keeps: glibc does not hand it back after the peak. bench/memory,
 * a checkpoint of 100k streams: with every transaction in flight (4,096
 * streams each) RSS grew by 1.2 KB per stream; 2 of 4,096, by 0.9 KB; 1 of
 * 1,024, by 0.1 KB.
 */
const CHECKPOINT_AHEAD = 1;

/** What a checkpoint captures streams from (the streams' residency). */
export interface CheckpointSource {
  checkpointTargets(idleBefore: number): CheckpointTarget[];
  capture(t: CheckpointTarget, seq: number): StreamStateRow | null | undefined;
  unstored(rows: readonly CheckpointedStream[]): void;
  checkpointed(rows: readonly CheckpointedStream[]): void;
}

/** What a checkpoint needs of the store. */
export type CheckpointStore = Pick<Store, 'failing' | 'failure' | 'writePacked' | 'writeCheckpoint'>;

export interface CheckpointerOptions {
  store: CheckpointStore;
  streams: CheckpointSource;
  /** Input-log position of the last input applied. */
  position(): number;
  /** Each model's open forecasts and error sums, written with its streams. */
  scores: ReadonlyMap<string, ScoreBook>;
  /** Publications recovery made that still wait for the broker: no checkpoint may move past their inputs until they are out. */
  unpublished(): number;
  intervalS: number;
  /** Streams idle this long are spilled (0: never). */
  idleTtlS: number;
  /** Most streams captured per turn of the event loop (default CHECKPOINT_CHUNK; the kill test sets 1). */
  chunk?: number;
  /** A checkpoint ended (a message held for it may go on). */
  onDone?(): void;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
}

/**
 * Checkpoints, every `intervalS` and on demand: the log position recovery
 * replays from, with the state of every stream changed since the last one.
 */
export class Checkpointer implements Service {
  readonly name = 'checkpointer';
  readonly #opts: CheckpointerOptions;
  readonly #every: Repeating;
  #running: Promise<boolean> | null = null;
  /** Input-log position of the last committed checkpoint (where a replay starts). */
  seq = 0;

  constructor(options: CheckpointerOptions) {
    this.#opts = options;
    this.#every = new Repeating(options.clock, options.intervalS * 1000, () => void this.checkpoint());
  }

  start(): void {
    this.#every.start();
  }

  stop(): void {
    this.#every.stop();
  }

  /**
   * Write a checkpoint, incrementally, while messages flow: the streams
   * changed since the last one (and the idle ones, spilled) are captured a
   * chunk per turn of the event loop, each as soon as none of its steps waits
   * in an engine, with the log position its state reflects, and the writer
   * thread commits each chunk with the streams' error sums. Once every chunk
   * has committed, the checkpoint's record (the position recovery replays
   * from: where this one started) is written, the log trimmed up to it and
   * the spilled streams leave memory. Returns false when it could not (the
   * store is failing, or refused it): the log keeps everything, the next one
   * retries.
   */
  checkpoint(): Promise<boolean> {
    this.#running ??= this.#checkpoint().finally(() => {
      this.#running = null;
      this.#opts.onDone?.();
    });
    return this.#running;
  }

  async #checkpoint(): Promise<boolean> {
    const { store, streams, log, clock } = this.#opts;
    if (store.failing) {
      log.warn({ err: store.failure?.message }, 'checkpoint postponed: the store cannot write');
      return false;
    }
    // Forecasts that recovery recomputed wait for the broker connection: a checkpoint past their
    // inputs would keep a crash meanwhile from publishing them again.
    if (this.#opts.unpublished() > 0) return false;
    const started = performance.now();
    const from = this.#opts.position();
    const books = [...this.#opts.scores.values()];
    const ttl = this.#opts.idleTtlS;
    const targets = streams.checkpointTargets(ttl > 0 ? clock.now() - ttl * 1000 : -Infinity);
    const chunks: Array<{ rows: CheckpointedStream[]; written: Promise<void> }> = [];
    const chunk = this.#opts.chunk ?? CHECKPOINT_CHUNK;
    // Rounds' chunks, packed, wait here until CHECKPOINT_WRITE streams (or the end) make one transaction.
    let packs: PackedCheckpoint[] = [];
    let packed: CheckpointedStream[] = [];
    const post = (): void => {
      if (packs.length === 0) return;
      chunks.push({ rows: packed, written: store.writePacked(null, packs) });
      packs = [];
      packed = [];
    };
    let queue = targets;
    let head = 0;
    let retry: typeof targets = [];
    let longest = 0;
    let rounds = 0;
    for (;;) {
      if (head >= queue.length) {
        if (retry.length === 0) break;
        queue = retry;
        retry = [];
        head = 0;
      }
      const t0 = performance.now();
      const rows: StreamStateRow[] = [];
      // A chunk per turn: at most `chunk` streams, about CHECKPOINT_SLICE_MS of capturing.
      while (head < queue.length && rows.length < chunk && !(rows.length % 8 === 7 && performance.now() - t0 > CHECKPOINT_SLICE_MS)) {
        const t = queue[head++]!;
        const row = streams.capture(t, this.#opts.position());
        if (row === null) retry.push(t); // a step of it is in an engine: a later turn
        else if (row) rows.push(row);
      }
      if (rows.length > 0) {
        const ids = rows.map((r) => r.stream);
        packs.push(packCheckpoint(rows, books.flatMap((b) => b.take(ids))));
        // Packed, a row's copies of state are no longer needed: keep what the end of the checkpoint
        // reads (bench/memory, 100k streams: holding them all took RSS from 2.6 to 5.6 KB per stream).
        for (const r of rows) packed.push({ group: r.group, stream: r.stream, resident: r.resident });
        if (packed.length >= CHECKPOINT_WRITE) post();
      }
      longest = Math.max(longest, performance.now() - t0);
      // Capture no further ahead of the writer than CHECKPOINT_AHEAD transactions (messages flow meanwhile).
      const behind = chunks[chunks.length - 1 - CHECKPOINT_AHEAD];
      if (behind) await behind.written.catch(() => undefined); // its failure is handled below
      if (head >= queue.length && retry.length === 0) break;
      // Let messages in; a stream whose step runs now is quiet once its batch returns.
      if (++rounds % 64 === 0) await new Promise((r) => setTimeout(r, 1));
      else await new Promise((r) => setImmediate(r));
    }
    post();
    const failed: CheckpointedStream[] = [];
    let error: unknown = null;
    for (const c of chunks) {
      try {
        await c.written;
        for (const b of books) b.stored(c.rows.map((r) => r.stream));
      } catch (err) {
        error = err;
        for (const b of books) b.unstored(c.rows.map((r) => r.stream));
        failed.push(...c.rows);
      }
    }
    if (error === null) {
      try {
        await store.writeCheckpoint(from, []);
      } catch (err) {
        error = err;
      }
    }
    const rows = chunks.flatMap((c) => c.rows);
    if (error !== null) {
      // The chunks that committed hold their streams' states with their positions: still valid for a replay from the last record.
      streams.unstored(failed);
      log.warn({ err: error }, 'checkpoint failed; the input log keeps every message since the last one');
      return false;
    }
    streams.checkpointed(rows);
    this.seq = from;
    const seconds = (performance.now() - started) / 1000;
    this.#opts.metrics.checkpoint(longest / 1000, seconds);
    log.debug({ seq: from, streams: rows.length, chunks: chunks.length, rounds, longestMs: Math.round(longest * 10) / 10, ms: Math.round(seconds * 1000) }, 'checkpoint');
    return true;
  }
}
