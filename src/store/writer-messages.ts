import type { PackedBatch, PackedCheckpoint } from './codec.js';
import type { ForecastLayout } from './ids.js';
import type { DeadLetterRow, EventRow } from './rows.js';

/** What the main thread asks of the writer. */
export type WriterRequest =
  /**
   * A model's batch. Its forecast layout travels once: the first commit with
   * it carries it under a number (`layoutKey`), the later ones only that
   * number (`layout` null), so the writer neither clones it again nor
   * serializes it to look up its id.
   */
  | { readonly op: 'commit'; readonly model: string; readonly layoutKey: number; readonly layout: ForecastLayout | null; readonly batch: PackedBatch }
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

/** An error as it crosses to the main thread: its message, and its code when it has one. */
export const serializeError = (err: unknown): SerializedError => {
  const code = (err as { code?: unknown }).code;
  return { message: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) };
};

/** What an op writes, in words, for the main thread's logs. */
export function describeOp(op: WriterOp): string {
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
