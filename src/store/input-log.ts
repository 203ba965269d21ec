import type Database from 'better-sqlite3';

/** A logged input: a message (kind 0) or a wall-clock tick (kind 1). */
export interface InputRow {
  readonly seq: number;
  readonly kind: 0 | 1;
  readonly receivedAt: number;
  readonly topic: string;
  readonly payload: Buffer;
}

export interface InputLogOptions {
  /** Longest a QoS 0 message waits for its group commit (default 5 ms). */
  groupMs?: number;
  /** Most QoS 0 messages in one group commit (default 1000). */
  groupMax?: number;
  /** A group commit failed (disk full…): the rows stay pending and are retried with the next write. */
  onGroupFailure(err: Error): void;
}

/**
 * The input log: every accepted message (and wall-clock tick), in order, with
 * a position (`seq`) that the checkpoint refers to. Positions are assigned
 * here, in memory, so that a message can be applied before its row is written.
 *
 * - A durable input (QoS 1/2, a tick) is written before `append` returns: the
 *   caller acknowledges only then, so once the broker has its PUBACK the
 *   message survives a crash.
 * - A QoS 0 input has no acknowledgement to hold: it joins a group commit that
 *   runs after `groupMs` or `groupMax` inputs, whichever comes first. A crash
 *   loses at most that window (QoS 0 is at-most-once).
 * - `flush()` writes the pending group now; the batch commit calls it first, so
 *   a stored forecast's inputs are always in the log.
 */
export class InputLog {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #writeMany: (rows: readonly InputRow[]) => void;
  readonly #opts: Required<InputLogOptions>;
  #seq: number;
  #pending: InputRow[] = [];
  #timer: NodeJS.Timeout | null = null;

  constructor(db: Database.Database, options: InputLogOptions) {
    this.#db = db;
    this.#opts = { groupMs: 5, groupMax: 1000, ...options };
    this.#insert = db.prepare('INSERT INTO input_log (seq, kind, received_at, topic, payload) VALUES (?, ?, ?, ?, ?)');
    this.#writeMany = db.transaction((rows: readonly InputRow[]) => this.#insertAll(rows));
    // Positions are never reused, even after a trim: continue after the highest ever handed out.
    const logged = db.prepare('SELECT max(seq) FROM input_log').pluck().get() as number | null;
    const sequence = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'input_log'").pluck().get() as number | undefined;
    const checkpoint = db.prepare('SELECT seq FROM checkpoint WHERE id = 1').pluck().get() as number | undefined;
    this.#seq = Math.max(logged ?? 0, sequence ?? 0, checkpoint ?? 0);
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
  append(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer, durable: boolean): number {
    const row: InputRow = { seq: this.#seq + 1, kind, receivedAt, topic, payload };
    if (durable) {
      if (this.#pending.length > 0) this.#writeMany([...this.#pending, row]);
      else this.#insert.run(row.seq, kind, receivedAt, topic, payload);
      this.#pending = [];
      this.#clearTimer();
      this.#seq = row.seq;
      return row.seq;
    }
    this.#seq = row.seq;
    this.#pending.push(row);
    if (this.#pending.length >= this.#opts.groupMax) this.#flushQuietly();
    else this.#timer ??= setTimeout(() => this.#flushQuietly(), this.#opts.groupMs).unref();
    return row.seq;
  }

  /** Write the pending group now, in its own transaction. Throws when the store cannot write (the rows stay pending). */
  flush(): void {
    this.#clearTimer();
    if (this.#pending.length === 0) return;
    this.#writeMany(this.#pending);
    this.#pending = [];
  }

  /**
   * Inside the caller's transaction: write the pending group and return how
   * many rows that was; pass it to `written` once the transaction commits
   * (a rollback leaves them pending for the next try).
   */
  writePending(): number {
    this.#insertAll(this.#pending);
    return this.#pending.length;
  }

  #insertAll(rows: readonly InputRow[]): void {
    for (const r of rows) this.#insert.run(r.seq, r.kind, r.receivedAt, r.topic, r.payload);
  }

  /** The transaction that called `writePending` committed. */
  written(n: number): void {
    if (n === 0) return;
    this.#pending = this.#pending.slice(n);
    if (this.#pending.length === 0) this.#clearTimer();
  }

  /** Up to `limit` log entries after a position, in order (recovery replays them page by page). */
  after(seq: number, limit: number): InputRow[] {
    return this.#db.prepare('SELECT seq, kind, received_at AS receivedAt, topic, payload FROM input_log WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as InputRow[];
  }

  stop(): void {
    this.#clearTimer();
  }

  #flushQuietly(): void {
    try {
      this.flush();
    } catch (err) {
      this.#opts.onGroupFailure(err as Error);
    }
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
