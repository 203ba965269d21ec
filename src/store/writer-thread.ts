/**
 * The store's writer thread: opens its own connection to the store and runs
 * the main thread's ops (`writer.ts`) as they arrive, answering each. It also
 * copies the input log's WAL back into its file every second (a PASSIVE
 * checkpoint, on a connection of its own), so that copy and its fsync never
 * run on the event loop that acknowledges messages; the store's own WAL is
 * copied back by SQLite's automatic checkpoint, here too.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { configure } from './database.js';
import { WriterCore, type WriterOp } from './writer.js';

const { file, logFile, durability, maxSizeMiB } = workerData as { file: string; logFile: string; durability?: 'process' | 'power'; maxSizeMiB?: number };
const port = parentPort!;
const db = new Database(file);
configure(db, { durability, maxSizeMiB });
const log = new Database(logFile);
log.pragma('busy_timeout = 1000');
const core = new WriterCore(db, (reply) => port.postMessage(reply), Date.now, Number(process.env.TIDECAST_FAULT_CHECKPOINT_HOLD_MS ?? 0));

const timer = setInterval(() => {
  try {
    log.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or full: the next second tries again; the WAL only grows meanwhile.
  }
}, 1000);

port.on('message', (op: WriterOp) => {
  core.receive(op);
  if (op.op !== 'stop') return;
  clearInterval(timer);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    // The next start copies it back.
  }
  db.close();
  log.close();
  port.close();
});
