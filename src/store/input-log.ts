import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../clock.js';

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

/** The input log's tables, in its own database file (`<store>-inputs`), or in the store's own database for ':memory:'. */
export const INPUT_LOG_SCHEMA = `
  CREATE TABLE IF NOT EXISTS input_log (
    seq INTEGER PRIMARY KEY,        -- log position; never reused (see InputLog)
    kind INTEGER NOT NULL,          -- 0 message, 1 wall-clock tick, 2 refused message
    received_at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    note TEXT                       -- kind 2: the dead letter's reason, detail, stream and size (JSON); kind 0: 'redelivered' (the broker's DUP flag) or none
  );
  -- A group commit of QoS 0 inputs: one row for all of them (positions first_seq..last_seq, in order).
  CREATE TABLE IF NOT EXISTS input_groups (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    inputs BLOB NOT NULL            -- per input: kind u8, received_at f64, topic, payload and note lengths u32 (note: 2^32-1 for none), then their bytes
  )`;

/** A message's note when the broker redelivered it (its DUP flag): a replay judges it as the live daemon did. */
export const REDELIVERED_NOTE = 'redelivered';

export interface InputLogOptions {
  /** The last position handed out before this start (the highest of the log and the last checkpoint). */
  lastSeq: number;
  /** Longest a QoS 0 message waits for its group commit (default 5 ms). */
  groupMs?: number;
  /** Most QoS 0 messages in one group commit (default 1000). */
  groupMax?: number;
  /** A group commit failed (disk full…): the rows stay pending and are retried with the next write. */
  onGroupFailure(err: Error): void;
  /** The group commit's timer (default: the system clock). */
  clock?: Pick<Clock, 'setTimeout' | 'clearTimeout'>;
}

/** Rows deleted per trim statement: the event loop gets a turn between them. */
const TRIM_CHUNK = 2000;

/** Bytes before an input's topic in a packed group: kind, received_at, three lengths. */
const ENTRY_HEAD = 1 + 8 + 4 + 4 + 4;
const NO_NOTE = 0xffff_ffff;

/**
 * The input log: every accepted message (and wall-clock tick), in order, with
 * a position (`seq`) that the checkpoint refers to. It lives in its own
 * database file and is written only by the main thread, so that an append
 * never waits for the writer thread's transactions. Positions are assigned
 * here, in memory, so that a message can be applied before its row is written.
 *
 * - A durable input (QoS 1/2, a tick) is written before `append` returns (a
 *   row of `input_log`): the caller acknowledges only then, so once the broker
 *   has its PUBACK the message survives a crash.
 * - A QoS 0 input has no acknowledgement to hold: it is packed into a buffer
 *   that is written as one row of `input_groups` after `groupMs` or `groupMax`
 *   inputs, whichever comes first (one insert per group, not per input, and
 *   one delete per group when trimmed). A crash loses at most that window
 *   (QoS 0 is at-most-once).
 * - `flush()` writes the pending group now; the store calls it before it hands
 *   the writer anything that carries a position, so a stored row's input is
 *   always in the log (and a position is never handed out twice).
 * - `trim(seq)` deletes what a committed checkpoint covers, a chunk per turn
 *   of the event loop.
 */
export class InputLog {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #insertGroup: Database.Statement;
  readonly #trimRange: Database.Statement;
  readonly #trimGroups: Database.Statement;
  /** The pending group (if any), then a durable row, in one transaction. */
  readonly #writeWith: (row: InputRow | null) => void;
  readonly #opts: Required<InputLogOptions>;
  #seq: number;
  /** The pending group: `#count` inputs from position `#first`, packed into `#buf` up to `#used`. */
  #buf = Buffer.allocUnsafe(64 * 1024);
  #used = 0;
  #count = 0;
  #first = 0;
  #timer: unknown = null;
  /** Every position up to here is deleted. */
  #trimmed: number;
  #trimming: Promise<void> | null = null;

  constructor(db: Database.Database, options: InputLogOptions) {
    this.#db = db;
    this.#opts = { groupMs: 5, groupMax: 1000, clock: systemClock, ...options };
    db.exec(INPUT_LOG_SCHEMA);
    this.#insert = db.prepare('INSERT INTO input_log (seq, kind, received_at, topic, payload, note) VALUES (?, ?, ?, ?, ?, ?)');
    this.#insertGroup = db.prepare('INSERT INTO input_groups (first_seq, last_seq, inputs) VALUES (?, ?, ?)');
    this.#trimRange = db.prepare('DELETE FROM input_log WHERE seq > ? AND seq <= ?');
    this.#trimGroups = db.prepare('DELETE FROM input_groups WHERE last_seq <= ?');
    this.#writeWith = db.transaction((row: InputRow | null) => {
      if (this.#count > 0) this.#insertGroup.run(this.#first, this.#first + this.#count - 1, this.#buf.subarray(0, this.#used));
      if (row) this.#insert.run(row.seq, row.kind, row.receivedAt, row.topic, row.payload, row.note ?? null);
    });
    const bound = (sql: string): number | null => db.prepare(sql).pluck().get() as number | null;
    const logged = Math.max(bound('SELECT max(seq) FROM input_log') ?? 0, bound('SELECT max(last_seq) FROM input_groups') ?? 0);
    const firsts = [bound('SELECT min(seq) FROM input_log'), bound('SELECT min(first_seq) FROM input_groups')].filter((x): x is number => x !== null);
    // Positions are never reused, even after a trim: continue after the highest ever handed out.
    this.#seq = Math.max(logged, options.lastSeq);
    this.#trimmed = firsts.length === 0 ? this.#seq : Math.min(...firsts) - 1;
  }

  /** The last position handed out. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** QoS 0 inputs waiting for their group commit. */
  get pending(): number {
    return this.#count;
  }

  /**
   * Log an input and return its position. `durable`: written (with any pending
   * group, in one transaction) before this returns; throws when the store
   * cannot write, and the position is not used. Otherwise queued for the group commit.
   */
  append(kind: 0 | 1 | 2, receivedAt: number, topic: string, payload: Buffer, durable: boolean, note: string | null = null): number {
    const seq = this.#seq + 1;
    if (durable) {
      // Alone, the row is one autocommit insert (a third of the statements of a transaction); with a pending group, one transaction for both.
      if (this.#count === 0) this.#insert.run(seq, kind, receivedAt, topic, payload, note);
      else this.#writeWith({ seq, kind, receivedAt, topic, payload, note });
      this.#clearGroup();
      this.#seq = seq;
      return seq;
    }
    this.#pack(kind, receivedAt, topic, payload, note);
    if (this.#count === 0) this.#first = seq;
    this.#count++;
    this.#seq = seq;
    if (this.#count >= this.#opts.groupMax) this.flushQuietly();
    else this.#timer ??= this.#opts.clock.setTimeout(this.#onGroupDue, this.#opts.groupMs);
    return seq;
  }

  /** Write the pending group now, in its own transaction. Throws when the store cannot write (the group stays pending). */
  flush(): void {
    this.#clearTimer();
    if (this.#count === 0) return;
    this.#writeWith(null);
    this.#clearGroup();
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
    const singles = this.#db.prepare('SELECT seq, kind, received_at AS receivedAt, topic, payload, note FROM input_log WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as InputRow[];
    // Entries are complete up to the last one each table gave, when it gave all it was asked for.
    let bound = singles.length === limit ? singles[singles.length - 1]!.seq : Infinity;
    const grouped: InputRow[] = [];
    for (const g of this.#db.prepare('SELECT first_seq AS first, last_seq AS last, inputs FROM input_groups WHERE last_seq > ? ORDER BY first_seq').iterate(seq) as IterableIterator<{ first: number; last: number; inputs: Buffer }>) {
      if (g.first > bound || grouped.length >= limit) {
        bound = Math.min(bound, g.first - 1);
        break;
      }
      for (const row of unpackGroup(g.first, g.inputs)) if (row.seq > seq) grouped.push(row);
    }
    const rows = singles.length === 0 ? grouped : grouped.length === 0 ? singles : [...singles, ...grouped].sort((a, b) => a.seq - b.seq);
    let n = 0;
    while (n < rows.length && n < limit && rows[n]!.seq <= bound) n++;
    return n === rows.length ? rows : rows.slice(0, n);
  }

  /** Delete every entry up to `seq` (a committed checkpoint covers them), a chunk per turn of the event loop. */
  trim(seq: number): Promise<void> {
    const run = async (): Promise<void> => {
      try {
        // Groups go whole, once their last input is covered (a replay skips what a checkpoint covers).
        this.#trimGroups.run(seq);
      } catch {
        return; // the disk is full or the log closed: the next checkpoint trims it
      }
      while (this.#trimmed < seq) {
        const to = Math.min(seq, this.#trimmed + TRIM_CHUNK);
        try {
          this.#trimRange.run(this.#trimmed, to);
        } catch {
          return;
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

  /** Whether a write can take the log's lock now (readiness). */
  writable(): boolean {
    try {
      this.#db.exec('BEGIN IMMEDIATE; ROLLBACK');
      return true;
    } catch {
      return false;
    }
  }

  /** Stop the group timer and wait for a trim under way. */
  async stop(): Promise<void> {
    this.#clearTimer();
    await this.#trimming;
  }

  /** Append an input to the pending group's buffer (grown by doubling, kept for the next group). */
  #pack(kind: number, receivedAt: number, topic: string, payload: Buffer, note: string | null): void {
    const topicBytes = Buffer.byteLength(topic);
    const noteBytes = note === null ? 0 : Buffer.byteLength(note);
    const need = this.#used + ENTRY_HEAD + topicBytes + payload.length + noteBytes;
    if (need > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.#buf.length * 2));
      this.#buf.copy(grown, 0, 0, this.#used);
      this.#buf = grown;
    }
    const b = this.#buf;
    let at = this.#used;
    b[at] = kind;
    b.writeDoubleLE(receivedAt, at + 1);
    b.writeUInt32LE(topicBytes, at + 9);
    b.writeUInt32LE(payload.length, at + 13);
    b.writeUInt32LE(note === null ? NO_NOTE : noteBytes, at + 17);
    at += ENTRY_HEAD;
    at += b.write(topic, at, 'utf8');
    at += payload.copy(b, at);
    if (note !== null) at += b.write(note, at, 'utf8');
    this.#used = at;
  }

  #clearGroup(): void {
    this.#count = 0;
    this.#used = 0;
    this.#clearTimer();
    // A buffer grown for a burst goes back to its usual size.
    if (this.#buf.length > 1024 * 1024) this.#buf = Buffer.allocUnsafe(64 * 1024);
  }

  readonly #onGroupDue = (): void => {
    this.#timer = null;
    this.flushQuietly();
  };

  #clearTimer(): void {
    if (this.#timer !== null) this.#opts.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}

/** The inputs of a group row, positions from `first` on. */
export function unpackGroup(first: number, b: Buffer): InputRow[] {
  const rows: InputRow[] = [];
  for (let at = 0, seq = first; at < b.length; seq++) {
    const kind = b[at]! as 0 | 1 | 2;
    const receivedAt = b.readDoubleLE(at + 1);
    const topicBytes = b.readUInt32LE(at + 9);
    const payloadBytes = b.readUInt32LE(at + 13);
    const noteBytes = b.readUInt32LE(at + 17);
    at += ENTRY_HEAD;
    const topic = b.toString('utf8', at, (at += topicBytes));
    // A copy: the row outlives the group's buffer.
    const payload = Buffer.from(b.subarray(at, (at += payloadBytes)));
    let note: string | null = null;
    if (noteBytes !== NO_NOTE) note = b.toString('utf8', at, (at += noteBytes));
    rows.push({ seq, kind, receivedAt, topic, payload, note });
  }
  return rows;
}
