import { ErrorCodes } from '../errors.js';

/** SQLite result codes that describe the moment, not the data: retry later. */
const TRANSIENT = /^SQLITE_(FULL|BUSY|LOCKED|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM)/;

/** True for a store error worth retrying (disk full, locked, I/O). */
export function isTransientStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === ErrorCodes.STORE_UNAVAILABLE) return true;
  return typeof code === 'string' && TRANSIENT.test(code);
}

/** SQLite result codes of a damaged database file. */
const DAMAGED = /^SQLITE_(CORRUPT|NOTADB)/;

/** True for a store error that says the database file is damaged (SQLITE_CORRUPT*, SQLITE_NOTADB). */
export function isDamagedStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && DAMAGED.test(code);
}
