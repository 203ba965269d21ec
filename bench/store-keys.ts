import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

/** One key layout at one history depth: what a row costs to insert, and what it writes to the WAL. */
export interface KeyLayoutPoint {
  layout: 'stream-major (sid, ts)' | 'time-major (ts, sid)';
  /** Steps per stream stored by the end of the run (the run inserts them all, a step of every stream after another). */
  steps_per_stream: number;
  us_per_row: number;
  wal_bytes_per_row: number;
}

const COLUMNS = 'sid INTEGER NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL, fsid INTEGER NOT NULL, inputs TEXT NOT NULL, filled INTEGER NOT NULL';

/**
 * `step_inputs`'s rows under schema 7's key (stream, then time) and under the
 * time-major key of schema 10, on the writer's settings (WAL, synchronous
 * NORMAL, an 8 MiB cache, 256 rows per transaction, the WAL copied back every
 * 40 transactions): `streams` streams, one step of each after another (the
 * streams of a step in shuffled order, as devices report), up to `steps`
 * steps per stream. Stream-major keys put every stream's next row on a page
 * of its own once the stream has a page of history; time-major ones put a
 * step's rows together at the end of the tree.
 */
export function keyLayoutBench(streams = 10_000, depths: readonly number[] = [20, 100]): KeyLayoutPoint[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-keys-'));
  // The order streams report in within a step: a fixed shuffle (the same in every run and layout).
  const order = [...Array(streams).keys()];
  for (let i = streams - 1, seed = 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const out: KeyLayoutPoint[] = [];
  try {
    for (const steps of depths) {
      for (const [layout, key] of [['stream-major (sid, ts)', '(sid, ts)'], ['time-major (ts, sid)', '(ts, sid)']] as const) {
        const file = path.join(dir, `${steps}-${key.replace(/\W/g, '')}.db`);
        const db = new Database(file);
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        db.pragma('cache_size = -8192');
        db.pragma('wal_autocheckpoint = 0');
        db.exec(`CREATE TABLE t (${COLUMNS}, PRIMARY KEY ${key}) WITHOUT ROWID`);
        const insert = db.prepare('INSERT INTO t (sid, ts, received_at, fsid, inputs, filled) VALUES (?, ?, ?, 1, ?, 0) ON CONFLICT DO NOTHING');
        const rows = streams * steps;
        const tx = db.transaction((from: number) => {
          for (let k = from; k < Math.min(rows, from + 256); k++) {
            const ts = 1_420_070_400_000 + Math.floor(k / streams) * 86_400_000;
            insert.run(order[k % streams]! + 1, ts, ts + 5, '[1.25,12.5,3.75,2.5]');
          }
        });
        let wal = 0;
        const t0 = process.hrtime.bigint();
        for (let k = 0, n = 0; k < rows; k += 256, n++) {
          tx(k);
          if (n % 40 === 39) {
            wal += statSync(`${file}-wal`).size;
            db.pragma('wal_checkpoint(TRUNCATE)');
          }
        }
        wal += statSync(`${file}-wal`).size;
        const us = Number(process.hrtime.bigint() - t0) / 1e3 / rows;
        db.close();
        out.push({ layout, steps_per_stream: steps, us_per_row: Math.round(us * 100) / 100, wal_bytes_per_row: Math.round(wal / rows) });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

export function keyLayoutTable(points: readonly KeyLayoutPoint[]): string {
  return [
    'step rows under two primary keys: 10,000 streams, a step of each after another in shuffled order, 256 rows per transaction (the writer\'s settings)',
    '',
    '| key | steps per stream | µs per row | WAL bytes per row |',
    '|---|---:|---:|---:|',
    ...points.map((p) => `| ${p.layout} | ${p.steps_per_stream} | ${p.us_per_row} | ${p.wal_bytes_per_row} |`),
  ].join('\n');
}
