/**
 * Worker thread: copies the WAL back into the database file (a PASSIVE
 * checkpoint) on its own connection, every `intervalMs`. The main connection
 * runs with wal_autocheckpoint off, so this copy (and its fsync) never stalls
 * the event loop that acknowledges messages (bench/e2e: the automatic
 * checkpoint put tens of milliseconds into the p99 latency).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, intervalMs } = workerData as { file: string; intervalMs: number };
const db = new Database(file);
db.pragma('busy_timeout = 1000');
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort?.postMessage({ error: (err as Error).message });
  }
}, intervalMs);
parentPort?.on('message', (m: unknown) => {
  if (m === 'stop') {
    clearInterval(timer);
    db.close();
    parentPort?.close();
  }
});
