import type Database from 'better-sqlite3';
import { writeTransaction } from './batch-writer.js';
import { unpackAccuracy, unpackStreams, type PackedCheckpoint } from './codec.js';
import type { Ids } from './ids.js';
import type { ModelStateRow, StreamStateRow } from './rows.js';

/**
 * Checkpoints, the writer thread's side: each stream's step assembly,
 * recurrent state and open forecasts, the scored error sums and the log
 * position they reflect, in one transaction. (The input log, in its own file,
 * is trimmed by the main thread once this has committed.)
 */
export class CheckpointWriter {
  readonly #write: (seq: number | null, packs: readonly PackedCheckpoint[]) => void;

  /** `inside`: called inside the transaction, before it commits (fault injection: a kill there). */
  constructor(db: Database.Database, ids: Ids, now: () => number, inside?: () => void) {
    const streamState = db.prepare(
      `INSERT INTO stream_state (grp, stream, resident, last_active, assembler, seq) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (grp, stream) DO UPDATE SET resident = excluded.resident, last_active = excluded.last_active, assembler = excluded.assembler, seq = excluded.seq`,
    );
    const modelState = db.prepare(
      `INSERT INTO model_state (model, stream, fingerprint, state, filled, pending) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (stream, model) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state, filled = excluded.filled, pending = excluded.pending`,
    );
    const accuracy = db.prepare(
      `INSERT INTO accuracy (sid, mid, horizon, target, bucket, n, sum_abs, sum_sq, sum_err, sum_pabs, last_target_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT DO UPDATE SET n = n + excluded.n, sum_abs = sum_abs + excluded.sum_abs, sum_sq = sum_sq + excluded.sum_sq,
         sum_err = sum_err + excluded.sum_err, sum_pabs = sum_pabs + excluded.sum_pabs, last_target_time = max(last_target_time, excluded.last_target_time)`,
    );
    const checkpoint = db.prepare(
      `INSERT INTO checkpoint (id, seq, at, streams) VALUES (1, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, at = excluded.at, streams = excluded.streams`,
    );
    this.#write = writeTransaction(db, ids, (seq: number | null, packs: readonly PackedCheckpoint[]) => {
      // In key order: each B-tree page is then written once per transaction (bench/recovery: chunks in
      // arrival order wrote most pages again and again, three times the time).
      const streams = packs.flatMap((p) => [...unpackStreams(p)]).sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
      for (const st of streams) {
        streamState.run(st.group, st.stream, st.resident ? 1 : 0, st.lastActive, st.assembler, st.seq ?? 0);
        for (const m of st.models) modelState.run(m.model, st.stream, m.fingerprint, m.state, m.filled, m.pending ?? null);
      }
      // A stream's deltas come one after the other: its id is looked up once.
      let name = '';
      let sid = 0;
      for (const p of packs) {
        for (const a of unpackAccuracy(p.accuracy)) {
          if (a.stream !== name) [name, sid] = [a.stream, ids.stream(a.stream, '', a.lastTargetTime)];
          accuracy.run(sid, ids.model(a.model), a.horizon, a.target, a.bucket, a.n, a.sumAbs, a.sumSq, a.sumErr, a.sumPAbs, a.lastTargetTime);
        }
      }
      if (seq !== null) checkpoint.run(seq, now(), streams.length);
      inside?.();
    });
  }

  /** Write streams (chunks of a checkpoint), and with `seq` the checkpoint's record, in one transaction (see Store.writeCheckpoint). */
  write(seq: number | null, packs: readonly PackedCheckpoint[]): void {
    this.#write(seq, packs);
  }
}

/**
 * Checkpoints, the main thread's side: the reads that bring streams back (at
 * start, or when a spilled stream returns), on the main thread's connection.
 */
export class StateReader {
  readonly #db: Database.Database;
  readonly #loadStream: Database.Statement;
  readonly #loadModels: Database.Statement;
  /**
   * Whether stream_state may hold a stream that is not in memory: rows from
   * before this start, or a stream spilled since. While false (a fresh
   * database), a new stream needs no lookup.
   */
  #stored: boolean;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#loadStream = db.prepare('SELECT grp AS "group", stream, resident, last_active AS lastActive, assembler, seq FROM stream_state WHERE grp = ? AND stream = ?');
    this.#loadModels = db.prepare('SELECT model, fingerprint, state, filled, pending FROM model_state WHERE stream = ?');
    this.#stored = db.prepare('SELECT 1 FROM stream_state LIMIT 1').get() !== undefined;
  }

  /** A checkpoint that spilled streams has committed. */
  spilled(): void {
    this.#stored = true;
  }

  /** The highest log position a stored stream state reflects (0: none). */
  maxStreamSeq(): number {
    return (this.#db.prepare('SELECT max(seq) FROM stream_state').pluck().get() as number | null) ?? 0;
  }

  /** The last checkpoint: the log position every stored state reflects (0: none yet). */
  checkpointSeq(): number {
    const row = this.#db.prepare('SELECT seq FROM checkpoint WHERE id = 1').get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /** A stream's stored state (spilled after idling, or checkpointed), if any. */
  load(group: string, stream: string): StreamStateRow | undefined {
    if (!this.#stored) return undefined;
    const r = this.#loadStream.get(group, stream) as (Omit<StreamStateRow, 'models' | 'resident'> & { resident: number }) | undefined;
    if (!r) return undefined;
    return { ...r, resident: r.resident === 1, models: this.#loadModels.all(stream) as ModelStateRow[] };
  }

  /** Streams of these route groups that were in memory at the last checkpoint, with their model states, in pages. */
  *resident(groups: readonly string[], page = 5000): IterableIterator<StreamStateRow> {
    if (groups.length === 0) return;
    // One joined query per page (bench/recovery: a query per stream cost half the restore time).
    const next = this.#db.prepare(
      `SELECT s.grp AS "group", s.stream, s.last_active AS lastActive, s.assembler, s.seq, m.model, m.fingerprint, m.state, m.filled, m.pending
       FROM stream_state s LEFT JOIN model_state m ON m.stream = s.stream
       WHERE s.resident = 1 AND s.grp IN (SELECT value FROM json_each(?)) AND (s.grp, s.stream) > (?, ?)
       ORDER BY s.grp, s.stream LIMIT ?`,
    );
    type Joined = Omit<StreamStateRow, 'models' | 'resident'> & { model: string | null; fingerprint: string; state: Buffer; filled: number; pending: Buffer | null };
    let after: [string, string] = ['', ''];
    for (;;) {
      // A page at a time: better-sqlite3 runs no other statement while a cursor is open.
      const rows = next.all(JSON.stringify(groups), after[0], after[1], page) as Joined[];
      if (rows.length === 0) return;
      // A full page may end inside a stream's models: leave that stream to the next page.
      const last = rows[rows.length - 1]!;
      const complete = rows.length < page ? rows : rows.filter((r) => r.group !== last.group || r.stream !== last.stream);
      const take = complete.length > 0 ? complete : rows; // one stream with more models than a page: take it whole
      let cur: StreamStateRow | null = null;
      for (const r of take) {
        if (!cur || cur.group !== r.group || cur.stream !== r.stream) {
          if (cur) yield cur;
          cur = { group: r.group, stream: r.stream, resident: true, lastActive: r.lastActive, assembler: r.assembler, seq: r.seq, models: [] };
        }
        if (r.model !== null) (cur.models as ModelStateRow[]).push({ model: r.model, fingerprint: r.fingerprint, state: r.state, filled: r.filled, pending: r.pending });
      }
      if (cur) yield cur;
      const end = take[take.length - 1]!;
      after = [end.group, end.stream];
    }
  }
}
