/**
 * The store's writer thread: opens its own connection to the store and runs
 * the main thread's ops (`writer.ts`) as they arrive, answering each. The
 * WAL is copied back by `wal-checkpointer.ts`, on another thread, so that
 * copy and its fsync never delay the next commit.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CACHE_MIB, configure } from './database.js';
import { announceThread } from '../metrics/thread-cpu.js';
import type { WriterOp } from './writer-messages.js';
import { WriterCore } from './writer.js';

const { file, durability, maxSizeMiB } = workerData as { file: string; durability?: 'process' | 'power'; maxSizeMiB?: number };
const port = parentPort!;
announceThread('writer');
const db = new Database(file);
configure(db, { durability, maxSizeMiB }, CACHE_MIB.writer);
db.pragma('wal_autocheckpoint = 0');
const core = new WriterCore(db, (reply) => port.postMessage(reply), {
  checkpointHoldMs: Number(process.env.TIDECAST_FAULT_CHECKPOINT_HOLD_MS ?? 0),
  corruptAtCommit: Number(process.env.TIDECAST_FAULT_WRITER_CORRUPT_AT ?? 0),
});

// Fault injection (tests): the thread dies on the first op of this kind.
const dieOn = process.env.TIDECAST_FAULT_WRITER_EXIT_ON;

port.on('message', (op: WriterOp) => {
  if (op.op === dieOn) process.exit(70);
  core.receive(op);
  if (op.op !== 'stop') return;
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    // The next start copies it back.
  }
  db.close();
  port.close();
});
