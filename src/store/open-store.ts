import type Database from 'better-sqlite3';
import { systemClock } from '../clock.js';
import type { Logger } from '../log.js';
import { closeInputLog, moveLegacyLog, openDatabase, openInputLog } from './database.js';
import { InputLog } from './input-log.js';
import { StateReader } from './state-store.js';
import type { StoreOptions } from './store-options.js';
import { WriterClient, type WriterClientOptions } from './writer-client.js';

/** The store's files and the parts that work on them, as `Store.start` opened them. */
export interface OpenStore {
  readonly db: Database.Database;
  /** The input log's connection: its own file (`<path>-inputs`), or `db` itself for ':memory:'. */
  readonly logDb: Database.Database;
  readonly states: StateReader;
  readonly log: InputLog;
  readonly writer: WriterClient;
}

/** What the opened parts tell the store: the writer's hooks, and a failed QoS 0 group of the input log. */
export type OpenStoreHooks = Pick<WriterClientOptions, 'failing' | 'recovered' | 'fatal' | 'dropped'> & {
  logGroupFailed(err: Error): void;
};

/**
 * Open the input log's file, then the store's (running pending migrations),
 * then the reader, the input log and the writer on them, in that order.
 */
export function openStore(opts: StoreOptions, hooks: OpenStoreHooks): OpenStore {
  const file = opts.path;
  const ownLog = file === ':memory:' ? null : openInputLog(opts);
  const db = openDatabase(opts, (old, version) => {
    // Schema 8 moved the input log into its own file: carry over what an older version left.
    if (ownLog && version < 8) moveLegacyLog(old, ownLog);
  });
  const logDb = ownLog ?? db;
  const states = new StateReader(db);
  // Positions are never reused: a stream checkpointed after the record may reflect inputs beyond the log (a QoS 0 group lost in a crash).
  const lastSeq = Math.max(states.checkpointSeq(), states.maxStreamSeq());
  const { logGroupFailed, ...writerHooks } = hooks;
  const clock = opts.clock ?? systemClock;
  const log = new InputLog(logDb, { lastSeq, onGroupFailure: logGroupFailed, clock });
  const writer = new WriterClient({ db, file, durability: opts.durability, maxSizeMiB: opts.maxSizeMiB, clock, log: opts.log, ...writerHooks });
  return { db, logDb, states, log, writer };
}

/**
 * The reverse of `openStore`, once the store has handed over what it held:
 * stop the writer (logging the writes it could not commit), then the input
 * log, and close both files; `closed` runs once the store's file is closed,
 * even when closing the input log's failed.
 */
export async function closeStore(open: OpenStore, log: Logger, failure: () => Error | null, closed: () => void): Promise<void> {
  const left = await open.writer.stop();
  if (left > 0 || open.log.pending > 0) {
    log.error({ queued: left, pendingInputs: open.log.pending, err: failure()?.message }, 'store stopping with writes it could not commit; the input log replays durable inputs at the next start');
  }
  await open.log.stop();
  try {
    if (open.logDb !== open.db) closeInputLog(open.logDb);
  } finally {
    open.db.close();
    closed();
  }
}
