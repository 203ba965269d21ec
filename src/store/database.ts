import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { isDamagedStoreError } from './failure-kinds.js';
import { INPUT_LOG_SCHEMA } from './input-log.js';
import { MIGRATIONS } from './migrations.js';

export interface DatabaseOptions {
  path: string;
  log: Logger;
  durability?: 'process' | 'power';
  maxSizeMiB?: number;
  /** `quick` (default): `PRAGMA quick_check` on each file when it opens; `off`: none. */
  integrityCheck?: 'quick' | 'off';
}

/** Where the README and RELIABILITY.md say how to recover a damaged database. */
const RECOVER = 'recover it first (docs/RELIABILITY.md, "A damaged database": sqlite3 FILE .recover)';

/**
 * `PRAGMA quick_check` on a file as it opens (about 2 ms per MB on this
 * machine: 0.4 s for 185 MB): a damaged page is found before the daemon
 * reports ready and acknowledges anything, not when a write meets it.
 * Throws the store's error (exit 74) naming the first problems.
 */
export function checkIntegrity(db: Database.Database, file: string, what: string): void {
  const rows = db.pragma('quick_check(20)') as Array<{ quick_check: string }>;
  const problems = rows.map((r) => r.quick_check).filter((x) => x !== 'ok');
  if (problems.length === 0) return;
  throw new TidecastError(ErrorCodes.STORE, `the ${what} ${file} is damaged (PRAGMA quick_check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; and ${problems.length - 3} more` : ''}); ${RECOVER}`);
}

/** An open failure's message, with how to recover when SQLite says the file is damaged. */
function openFailure(what: string, file: string, err: unknown): TidecastError {
  if (err instanceof TidecastError) return err;
  return new TidecastError(ErrorCodes.STORE, `cannot open the ${what} ${file}: ${(err as Error).message}${isDamagedStoreError(err) ? `; the file is damaged: ${RECOVER}` : ''}`, { cause: err });
}

/** The input log's own database file, beside the store's. */
export function inputLogPath(file: string): string {
  return `${file}-inputs`;
}

/**
 * Page cache of each connection, MiB: the writer's holds the hot tables' index
 * pages; the input log only appends and trims; the main thread reads now and
 * then. Each cache fills up to its size and stays in the process's RSS.
 */
export const CACHE_MIB = { writer: 8, log: 2, reader: 4 } as const;

/**
 * The settings every connection of tidecast's sets: WAL, synchronous NORMAL
 * (FULL with durability `power`), a short busy timeout, the size cap, and its
 * page cache (`CACHE_MIB`).
 */
export function configure(db: Database.Database, opts: Pick<DatabaseOptions, 'durability' | 'maxSizeMiB'>, cacheMiB: number): void {
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
  // Short: a locked database is retried by the writer's queue, not by blocking a thread for long.
  db.pragma('busy_timeout = 1000');
  db.pragma(`cache_size = -${cacheMiB * 1024}`);
  db.pragma('foreign_keys = ON');
  if (opts.maxSizeMiB) {
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`max_page_count = ${Math.max(1, Math.floor((opts.maxSizeMiB * 1024 * 1024) / pageSize))}`);
  }
}

/**
 * Open (or create) the store's database on the main thread and run pending
 * migrations up to the latest `user_version`. `beforeMigrate` runs first
 * with the version found (the store moves an old input log out with it).
 */
export function openDatabase(opts: DatabaseOptions, beforeMigrate?: (db: Database.Database, version: number) => void): Database.Database {
  const file = opts.path;
  let db: Database.Database | undefined;
  try {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    db = new Database(file);
    configure(db, opts, CACHE_MIB.reader);
    if (file !== ':memory:' && opts.integrityCheck !== 'off') checkIntegrity(db, file, 'database');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new TidecastError(ErrorCodes.STORE, `the database is at schema version ${version}, newer than this tidecast (${MIGRATIONS.length}); upgrade tidecast`);
    }
    beforeMigrate?.(db, version);
    migrate(db, version, opts.log);
    return db;
  } catch (err) {
    db?.close();
    throw openFailure('store', file, err);
  }
}

function migrate(db: Database.Database, version: number, log: Logger): void {
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

/** Page size of a new input log file: an input row is some 100-200 bytes. */
const INPUT_LOG_PAGE_SIZE = 1024;

/** Open (or create) the input log's own file beside the store's (`inputLogPath`). */
export function openInputLog(opts: Pick<DatabaseOptions, 'path' | 'durability' | 'maxSizeMiB' | 'integrityCheck'>): Database.Database {
  const file = inputLogPath(opts.path);
  let logDb: Database.Database | undefined;
  try {
    logDb = new Database(file);
    // A durable append commits one page to the WAL: small pages for small rows (a new file only;
    // WAL mode fixes the page size of an existing one). bench: 3.2x less WAL, a third less time per append.
    if ((logDb.pragma('page_count', { simple: true }) as number) === 0) logDb.pragma(`page_size = ${INPUT_LOG_PAGE_SIZE}`);
    configure(logDb, opts, CACHE_MIB.log);
    if (opts.integrityCheck !== 'off') checkIntegrity(logDb, file, 'input log');
    // The checkpointer thread copies its WAL back: never on the main thread.
    logDb.pragma('wal_autocheckpoint = 0');
    return logDb;
  } catch (err) {
    logDb?.close();
    throw openFailure('input log', file, err);
  }
}

/** Copy the input log's WAL back into its file and close it. */
export function closeInputLog(logDb: Database.Database): void {
  try {
    logDb.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    logDb.close();
  }
}

/** Copy an input log of schema 7 or older into the log's own file (idempotent: a crash before the migration copies again). */
export function moveLegacyLog(db: Database.Database, logDb: Database.Database): void {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'input_log'").get();
  if (!exists) return;
  const rows = db.prepare('SELECT seq, kind, received_at, topic, payload FROM input_log ORDER BY seq').iterate() as IterableIterator<{ seq: number; kind: number; received_at: number; topic: string; payload: Buffer }>;
  logDb.exec(INPUT_LOG_SCHEMA);
  const insert = logDb.prepare('INSERT OR IGNORE INTO input_log (seq, kind, received_at, topic, payload) VALUES (?, ?, ?, ?, ?)');
  logDb.transaction(() => {
    for (const r of rows) insert.run(r.seq, r.kind, r.received_at, r.topic, r.payload);
  })();
}
