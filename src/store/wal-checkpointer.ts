/**
 * Worker thread: copies the WALs back into their database files (a PASSIVE
 * checkpoint) on connections of its own, every `intervalMs`: the store's,
 * written by the writer thread, and the input log's, written by the main
 * thread. Both write connections run with wal_autocheckpoint off, so this
 * copy (and its fsync) never stalls the event loop that acknowledges messages
 * or the writer's next commit (bench/e2e: the automatic checkpoint put tens
 * of milliseconds into the p99 latency).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { announceThread } from '../metrics/thread-cpu.js';

const { files, intervalMs } = workerData as { files: string[]; intervalMs: number };
announceThread('wal');
const dbs = files.map((f) => {
  const db = new Database(f);
  db.pragma('busy_timeout = 1000');
  return db;
});
const timer = setInterval(() => {
  for (const db of dbs) {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch (err) {
      parentPort?.postMessage({ error: (err as Error).message });
    }
  }
}, intervalMs);
parentPort?.on('message', (m: unknown) => {
  if (m === 'stop') {
    clearInterval(timer);
    for (const db of dbs) db.close();
    parentPort?.close();
  }
});
