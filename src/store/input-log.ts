import type Database from 'better-sqlite3';

/**
 * A logged input: a message (kind 0), a wall-clock tick (kind 1), or a
 * message refused before it was acknowledged (kind 2; `note` holds its dead
 * letter, written to the store from here whatever happens to the writer).
 */
export interface InputRow {
  readonly seq: number;
  readonly kind: 0 | 1 | 2;
  readonly receivedAt: number;
  readonly topic: string;
  readonly payload: Buffer;
  readonly note?: string | null;
}

/** The input log's table, in its own database file (`<store>-inputs`), or in the store's own database for ':memory:'. */
export const INPUT_LOG_SCHEMA = `
  CREATE TABLE IF NOT EXISTS input_log (
    seq INTEGER PRIMARY KEY,        -- log position; never reused (see InputLog)
    kind INTEGER NOT NULL,          -- 0 message, 1 wall-clock tick, 2 refused message
    received_at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    note TEXT                       -- kind 2: the dead letter's reason, detail, stream and size (JSON)
  )`;

export interface InputLogOptions {
  /** The last position handed out before this start (the highest of the log and the last checkpoint). */
  lastSeq: number;
  /** Longest a QoS 0 message waits for its group commit (default 5 ms). */
  groupMs?: number;
  /** Most QoS 0 messages in one group commit (default 1000). */
  groupMax?: number;
  /** A group commit failed (disk full…): the rows stay pending and are retried with the next write. */
  onGroupFailure(err: Error): void;
}

/** Rows deleted per trim statement: the event loop gets a turn between them. */
const TRIM_CHUNK = 2000;

/**
 * The input log: every accepted message (and wall-clock tick), in order, with
 * a position (`seq`) that the checkpoint refers to. It lives in its own
 * database file and is written only by the main thread, so that an append
 * never waits for the writer thread's transactions. Positions are assigned
 * here, in memory, so that a message can be applied before its row is written.
 *
 * - A durable input (QoS 1/2, a tick) is written before `append` returns: the
 *   caller acknowledges only then, so once the broker has its PUBACK the
 *   message survives a crash.
 * - A QoS 0 input has no acknowledgement to hold: it joins a group commit that
 *   runs after `groupMs` or `groupMax` inputs, whichever comes first. A crash
 *   loses at most that window (QoS 0 is at-most-once).
 * - `flush()` writes the pending group now; the store calls it before it hands
 *   the writer anything that carries a position, so a stored row's input is
 *   always in the log (and a position is never handed out twice).
 * - `trim(seq)` deletes what a committed checkpoint covers, a chunk per turn
 *   of the event loop.
 */
export class InputLog {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #trimRange: Database.Statement;
  readonly #writeMany: (rows: readonly InputRow[]) => void;
  readonly #opts: Required<InputLogOptions>;
  #seq: number;
  #pending: InputRow[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** Every position up to here is deleted. */
  #trimmed: number;
  #trimming: Promise<void> | null = null;

  constructor(db: Database.Database, options: InputLogOptions) {
    this.#db = db;
    this.#opts = { groupMs: 5, groupMax: 1000, ...options };
    db.exec(INPUT_LOG_SCHEMA);
    this.#insert = db.prepare('INSERT INTO input_log (seq, kind, received_at, topic, payload, note) VALUES (?, ?, ?, ?, ?, ?)');
    this.#trimRange = db.prepare('DELETE FROM input_log WHERE seq > ? AND seq <= ?');
    this.#writeMany = db.transaction((rows: readonly InputRow[]) => {
      for (const r of rows) this.#insert.run(r.seq, r.kind, r.receivedAt, r.topic, r.payload, r.note ?? null);
    });
    const logged = db.prepare('SELECT max(seq) FROM input_log').pluck().get() as number | null;
    const first = db.prepare('SELECT min(seq) FROM input_log').pluck().get() as number | null;
    // Positions are never reused, even after a trim: continue after the highest ever handed out.
    this.#seq = Math.max(logged ?? 0, options.lastSeq);
    this.#trimmed = first === null ? this.#seq : first - 1;
  }

  /** The last position handed out. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** QoS 0 inputs waiting for their group commit. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Log an input and return its position. `durable`: written (with any pending
   * group, in one transaction) before this returns; throws when the store
   * cannot write, and the position is not used. Otherwise queued for the group commit.
   */
  append(kind: 0 | 1 | 2, receivedAt: number, topic: string, payload: Buffer, durable: boolean, note: string | null = null): number {
    const row: InputRow = { seq: this.#seq + 1, kind, receivedAt, topic, payload, note };
    if (durable) {
      if (this.#pending.length > 0) this.#writeMany([...this.#pending, row]);
      else this.#insert.run(row.seq, kind, receivedAt, topic, payload, note);
      this.#pending = [];
      this.#clearTimer();
      this.#seq = row.seq;
      return row.seq;
    }
    this.#seq = row.seq;
    this.#pending.push(row);
    if (this.#pending.length >= this.#opts.groupMax) this.flushQuietly();
    else this.#timer ??= setTimeout(() => this.flushQuietly(), this.#opts.groupMs).unref();
    return row.seq;
  }

  /** Write the pending group now, in its own transaction. Throws when the store cannot write (the rows stay pending). */
  flush(): void {
    this.#clearTimer();
    if (this.#pending.length === 0) return;
    this.#writeMany(this.#pending);
    this.#pending = [];
  }

  /** `flush`, a failure reported to onGroupFailure instead of thrown; true when nothing is pending. */
  flushQuietly(): boolean {
    try {
      this.flush();
      return true;
    } catch (err) {
      this.#opts.onGroupFailure(err as Error);
      return false;
    }
  }

  /** Up to `limit` log entries after a position, in order (recovery replays them page by page). */
  after(seq: number, limit: number): InputRow[] {
    return this.#db.prepare('SELECT seq, kind, received_at AS receivedAt, topic, payload, note FROM input_log WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as InputRow[];
  }

  /** Delete every entry up to `seq` (a committed checkpoint covers them), a chunk per turn of the event loop. */
  trim(seq: number): Promise<void> {
    const run = async (): Promise<void> => {
      while (this.#trimmed < seq) {
        const to = Math.min(seq, this.#trimmed + TRIM_CHUNK);
        try {
          this.#trimRange.run(this.#trimmed, to);
        } catch {
          return; // the disk is full or the log closed: the next checkpoint trims it
        }
        this.#trimmed = to;
        if (this.#trimmed < seq) await new Promise((r) => setImmediate(r));
      }
    };
    const previous = this.#trimming ?? Promise.resolve();
    const next = previous.then(run);
    this.#trimming = next.finally(() => {
      if (this.#trimming === next) this.#trimming = null;
    });
    return next;
  }

  /** Stop the group timer and wait for a trim under way. */
  async stop(): Promise<void> {
    this.#clearTimer();
    await this.#trimming;
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
