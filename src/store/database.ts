import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { MIGRATIONS } from './migrations.js';

export interface DatabaseOptions {
  path: string;
  log: Logger;
  durability?: 'process' | 'power';
  maxSizeMiB?: number;
}

/** An open database and how to close it (WAL copied back, checkpointer stopped). */
export interface DatabaseHandle {
  readonly db: Database.Database;
  close(): void;
}

/**
 * Open (or create) the database: WAL, synchronous NORMAL (FULL with durability
 * `power`), migrations up to the latest `user_version`, the size cap, and a
 * worker thread that copies the WAL back every second on its own connection
 * (`wal-checkpointer.ts`; the main connection has `wal_autocheckpoint` off, so
 * that copy never stalls the event loop that acknowledges messages).
 */
export function openDatabase(opts: DatabaseOptions): DatabaseHandle {
  const file = opts.path;
  let db: Database.Database | undefined;
  let worker: Worker | null = null;
  try {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
    // Short: a locked database is retried by the write queue, not by blocking the event loop.
    db.pragma('busy_timeout = 1000');
    db.pragma('cache_size = -32768');
    db.pragma('foreign_keys = ON');
    migrate(db, opts.log);
    if (file !== ':memory:') {
      db.pragma('wal_autocheckpoint = 0');
      worker = new Worker(new URL('./wal-checkpointer.js', import.meta.url), { workerData: { file, intervalMs: 1000 } });
      worker.on('message', (m: { error?: string }) => opts.log.warn({ err: m.error }, 'WAL checkpoint failed; retrying'));
      worker.on('error', (err) => opts.log.error({ err }, 'WAL checkpointer stopped'));
      worker.unref();
    }
    if (opts.maxSizeMiB) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor((opts.maxSizeMiB * 1024 * 1024) / pageSize))}`);
    }
  } catch (err) {
    db?.close();
    throw new TidecastError(ErrorCodes.STORE, `cannot open the store ${file}: ${(err as Error).message}`, { cause: err });
  }
  const opened = db;
  return {
    db: opened,
    close: () => {
      worker?.postMessage('stop');
      worker = null;
      try {
        opened.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        opened.close();
      }
    },
  };
}

function migrate(db: Database.Database, log: Logger): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(`the database is at schema version ${version}, newer than this tidecast (${MIGRATIONS.length}); upgrade tidecast`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    const m = MIGRATIONS[v]!;
    db.transaction(() => {
      if (typeof m === 'string') db.exec(m);
      else m(db);
      db.pragma(`user_version = ${v + 1}`);
    })();
    log.info({ version: v + 1 }, 'store schema migrated');
  }
}
