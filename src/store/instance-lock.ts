import Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';

/**
 * One daemon per database: an exclusive lock on `<store.path>.lock`, held
 * while the daemon runs. The lock file is a small SQLite database in
 * exclusive locking mode with a write transaction open, so the lock is the
 * kernel's (POSIX `fcntl` byte-range locks, as SQLite's own): it holds
 * across processes and across connections of one process, and goes away
 * with the process however it ends (a SIGKILL leaves no stale lock behind
 * to clean up). A second daemon on the same store fails `acquire` at once.
 */
export class InstanceLock {
  readonly path: string;
  #db: Database.Database | null;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
  }

  /** Take the lock beside `storePath`, or throw TIDECAST_ERR_LOCKED; null for an in-memory store. */
  static acquire(storePath: string): InstanceLock | null {
    if (storePath === ':memory:') return null;
    const path = `${storePath}.lock`;
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: 0 });
    } catch (err) {
      throw new TidecastError(ErrorCodes.STORE, `cannot open the lock file ${path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      db.pragma('journal_mode = DELETE');
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
        throw new TidecastError(
          ErrorCodes.LOCKED,
          `another tidecast is running on ${storePath} (it holds ${path}); stop it, or give this one its own store.path and mqtt.clientId (\`fuser ${path}\` shows the process)`,
        );
      }
      throw new TidecastError(ErrorCodes.STORE, `cannot lock ${path}: ${(err as Error).message}`, { cause: err });
    }
    return new InstanceLock(path, db);
  }

  /** Let the next daemon in (closing the connection drops the lock; the file stays). */
  release(): void {
    const db = this.#db;
    this.#db = null;
    if (!db) return;
    try {
      db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  }
}
