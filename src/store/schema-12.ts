import type Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';
import { packBoundInts } from './codec.js';
import { INTERVAL_VIEWS, INTERVAL_VIEW_NAMES } from './schema-11.js';

/** A hex digit's value, 0 for none (past the end of a two-byte bound). */
const nibble = (h: string, i: number): string => `(instr('0123456789ABCDEF', substr(${h}, ${i}, 1)) - 1)`;

/**
 * SQL for the signed integer in slot `slot` (an SQL expression, from 0) of a
 * `boundsBlob` (`blob`): its width is the first byte, the integers follow,
 * little-endian. Standard SQL functions only (hex, substr, instr), so the
 * views read the same in the sqlite3 shell and Grafana's SQLite source as here.
 */
export function boundSql(blob: string, slot: string): string {
  const unsigned = [0, 1, 2, 3].map((i) => `(16 * ${nibble('h', 2 * i + 1)} + ${nibble('h', 2 * i + 2)}) * ${256 ** i}`).join(' + ');
  return `(SELECT u - (u >= (1 << (8 * w - 1))) * (1 << (8 * w)) FROM (SELECT ${unsigned} AS u, w FROM (SELECT hex(substr(${blob}, 2 + (${slot}) * w, w)) AS h, w FROM (SELECT CAST(hex(substr(${blob}, 1, 1)) AS INTEGER) AS w))))`;
}

/** forecast_cells' `bounds` from schema 11: the JSON array of the stored integers, each over the cell's scale. */
const JSON_BOUNDS = `(SELECT json_group_array(CAST(b.value AS REAL) / json_extract(c.value, '$[4]')) FROM json_each(f.bounds, '$[' || c.key || ']') b)`;

/**
 * From schema 12 on: a cell's `bounds` (lower and upper per level, in the
 * target's units) decoded from the BLOB: cell c's bound k is slot
 * c × 2 × levels + k.
 */
const BLOB_BOUNDS = `(SELECT json_group_array(${boundSql('f.bounds', "c.key * 2 * json_array_length(c.value, '$[3]') + 2 * lv.key + e.value")} * 1.0 / json_extract(c.value, '$[4]')) FROM json_each(c.value, '$[3]') lv, json_each('[0,1]') e)`;

/** The views from schema 12 on: schema 11's, with the bounds read from the BLOB. */
export const PACKED_VIEWS = (() => {
  if (!INTERVAL_VIEWS.includes(JSON_BOUNDS)) throw new TidecastError(ErrorCodes.INTERNAL, 'schema 11 views changed: update schema-12.ts');
  return INTERVAL_VIEWS.replace(JSON_BOUNDS, BLOB_BOUNDS);
})();

/**
 * Schema 12, packed bounds: `forecasts.bounds` becomes a BLOB (`boundsBlob`:
 * a width byte, then 2- or 4-byte integers, bound × scale, per cell and level)
 * where schema 11 kept JSON text; each stored forecast's bounds are moved over.
 */
export function packBounds(db: Database.Database): void {
  for (const view of INTERVAL_VIEW_NAMES) db.exec(`DROP VIEW IF EXISTS ${view}`);
  db.exec('ALTER TABLE forecasts ADD COLUMN packed BLOB');
  // In pages by key (a connection cannot write while it iterates).
  const page = db.prepare(
    'SELECT f.issued_at, f.sid, f.mid, f.bounds, l.cells FROM forecasts f JOIN forecast_layouts l ON l.lid = f.lid WHERE f.bounds IS NOT NULL AND (f.issued_at, f.sid, f.mid) > (?, ?, ?) ORDER BY f.issued_at, f.sid, f.mid LIMIT 10000',
  );
  const set = db.prepare('UPDATE forecasts SET packed = ? WHERE issued_at = ? AND sid = ? AND mid = ?');
  type Row = { issued_at: number; sid: number; mid: number; bounds: string; cells: string };
  for (let rows = page.all(-Infinity, 0, 0) as Row[]; rows.length > 0; ) {
    for (const r of rows) pack(r);
    const last = rows[rows.length - 1]!;
    rows = page.all(last.issued_at, last.sid, last.mid) as Row[];
  }
  function pack(r: Row): void {
    const cells = JSON.parse(r.cells) as unknown[][];
    const per = 2 * Math.max(0, ...cells.map((c) => (Array.isArray(c[3]) ? c[3].length : 0)));
    const stored = JSON.parse(r.bounds) as Array<number[] | null>;
    const ints = stored.flatMap((cell) => cell ?? new Array<number>(per).fill(0));
    set.run(ints.length === cells.length * per ? packBoundInts(Float64Array.from(ints), ints.length) : null, r.issued_at, r.sid, r.mid);
  }
  db.exec('ALTER TABLE forecasts DROP COLUMN bounds');
  db.exec('ALTER TABLE forecasts RENAME COLUMN packed TO bounds');
  db.exec(PACKED_VIEWS);
}
