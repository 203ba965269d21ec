import type Database from 'better-sqlite3';
import { Slab } from '../slots.js';
import { streamRefParts } from './rows.js';

/** How a model's forecast vector reads: one cell per horizon × target, in output order. */
export interface ForecastLayout {
  readonly stepMs: number;
  /**
   * [horizon, target, 1 for a classification target else 0], and for a
   * numeric cell with intervals their levels and the scale of its stored
   * bounds (`forecasts.bounds` holds bound × scale as integers).
   */
  readonly cells: ReadonlyArray<readonly [number, string, 0 | 1] | readonly [number, string, 0, readonly number[], number]>;
}

/**
 * Integer ids for the names the hot tables would otherwise repeat in every
 * row: streams, models, feature sets and forecast layouts. Ids are handed out
 * in memory; a new name's row is written by the next batch transaction
 * (`writeNew`, then `saved` once it commits), so a rolled-back batch writes it
 * again on its retry.
 *
 * Stream ids are kept by where the main thread holds the stream (`streamAt`:
 * its slot index, slot and the slot's generation), 8 bytes a stream, not by
 * name: a map of every name would cost this thread about 70 bytes a stream
 * (the entry and its own copy of the name). A name is looked up in
 * `stream_ids` the first time a slot generation brings it, or for rows that
 * carry no slot.
 */
export class Ids {
  /** By slot index key: per slot, the stream's id and the generation of the main thread's slot it was found for. */
  readonly #slots = new Map<number, Slab<Int32Array>>();
  /** Streams handed an id whose row is not committed yet (a lookup in stream_ids would not find them). */
  readonly #pendingStreams = new Map<string, number>();
  /** Whether stream_ids may hold a name (false while it was empty at start and nothing was handed out since). */
  #streamsStored: boolean;
  readonly #models = new Map<string, number>();
  readonly #featureSets = new Map<readonly string[], number>();
  readonly #featureKeys = new Map<string, number>();
  readonly #layouts = new Map<string, number>();
  readonly #layoutOf = new WeakMap<ForecastLayout, string>();
  /** Rows to write: statement, arguments, and the stream name of a stream's row. */
  #unsaved: Array<[Database.Statement, unknown[], string | null]> = [];
  #nextSid: number;
  readonly #findStream: Database.Statement;
  readonly #stmts: Record<'stream' | 'model' | 'featureSet' | 'layout', Database.Statement>;

  constructor(db: Database.Database) {
    this.#findStream = db.prepare('SELECT sid FROM stream_ids WHERE name = ?').pluck();
    this.#nextSid = ((db.prepare('SELECT max(sid) FROM stream_ids').pluck().get() as number | null) ?? 0) + 1;
    this.#streamsStored = this.#nextSid > 1;
    for (const r of db.prepare('SELECT mid, name FROM model_ids').all() as Array<{ mid: number; name: string }>) this.#models.set(r.name, r.mid);
    for (const r of db.prepare('SELECT fsid, names FROM feature_sets').all() as Array<{ fsid: number; names: string }>) this.#featureKeys.set(r.names, r.fsid);
    for (const r of db.prepare('SELECT lid, mid, step_ms, cells FROM forecast_layouts').all() as Array<{ lid: number; mid: number; step_ms: number; cells: string }>) {
      this.#layouts.set(`${r.mid}|${r.step_ms}|${r.cells}`, r.lid);
    }
    this.#stmts = {
      stream: db.prepare('INSERT OR IGNORE INTO stream_ids (sid, name, route, first_seen) VALUES (?, ?, ?, ?)'),
      model: db.prepare('INSERT OR IGNORE INTO model_ids (mid, name) VALUES (?, ?)'),
      featureSet: db.prepare('INSERT OR IGNORE INTO feature_sets (fsid, names) VALUES (?, ?)'),
      layout: db.prepare('INSERT OR IGNORE INTO forecast_layouts (lid, mid, step_ms, cells) VALUES (?, ?, ?, ?)'),
    };
  }

  /**
   * A stream's id by name (looked up in stream_ids); a new stream is
   * registered with its route and first arrival.
   */
  stream(name: string, route: string, at: number): number {
    let sid = this.#pendingStreams.get(name);
    if (sid !== undefined) return sid;
    sid = this.#streamsStored ? (this.#findStream.get(name) as number | undefined) : undefined;
    if (sid === undefined) {
      sid = this.#nextSid++;
      this.#unsaved.push([this.#stmts.stream, [sid, name, route, at], name]);
      this.#pendingStreams.set(name, sid);
      this.#streamsStored = true;
    }
    return sid;
  }

  /**
   * A stream's id by where the main thread holds it (`ref`: `streamRef`,
   * `gen`: the slot's generation), found by its name (`nameOf(row)`) the
   * first time that slot generation comes (NaN `ref`: the row carries no
   * slot, by name).
   */
  streamAt(ref: number, gen: number, nameOf: (row: number) => string, row: number, route: string, at: number): number {
    if (Number.isNaN(ref)) return this.stream(nameOf(row), route, at);
    const [key, slot] = streamRefParts(ref);
    let ids = this.#slots.get(key);
    if (!ids) this.#slots.set(key, (ids = new Slab(2, (n) => new Int32Array(n))));
    const c = ids.chunk(slot);
    const o = ids.offset(slot);
    if (c[o + 1] === gen) return c[o]!;
    const sid = this.stream(nameOf(row), route, at);
    c[o] = sid;
    c[o + 1] = gen;
    return sid;
  }

  model(name: string): number {
    let mid = this.#models.get(name);
    if (mid === undefined) {
      mid = Math.max(0, ...this.#models.values()) + 1;
      this.#models.set(name, mid);
      this.#unsaved.push([this.#stmts.model, [mid, name], null]);
    }
    return mid;
  }

  /** A feature set's id; the array's identity is cached (a route group passes the same one every time). */
  featureSet(names: readonly string[]): number {
    let fsid = this.#featureSets.get(names);
    if (fsid !== undefined) return fsid;
    const key = JSON.stringify(names);
    fsid = this.#featureKeys.get(key);
    if (fsid === undefined) {
      fsid = Math.max(0, ...this.#featureKeys.values()) + 1;
      this.#featureKeys.set(key, fsid);
      this.#unsaved.push([this.#stmts.featureSet, [fsid, key], null]);
    }
    this.#featureSets.set(names, fsid);
    return fsid;
  }

  /** A model's forecast layout id (a hot reload may bring another layout: a new id, old rows keep theirs). */
  layout(model: string, layout: ForecastLayout): number {
    const mid = this.model(model);
    let cells = this.#layoutOf.get(layout);
    if (cells === undefined) {
      cells = JSON.stringify(layout.cells);
      this.#layoutOf.set(layout, cells);
    }
    const key = `${mid}|${layout.stepMs}|${cells}`;
    let lid = this.#layouts.get(key);
    if (lid === undefined) {
      lid = Math.max(0, ...this.#layouts.values()) + 1;
      this.#layouts.set(key, lid);
      this.#unsaved.push([this.#stmts.layout, [lid, mid, layout.stepMs, cells], null]);
    }
    return lid;
  }

  /** Inside a transaction: write the rows of ids handed out since the last commit; returns how many. */
  writeNew(): number {
    for (const [stmt, args] of this.#unsaved) stmt.run(...args);
    return this.#unsaved.length;
  }

  /** The transaction that called `writeNew` committed. */
  saved(n: number): void {
    if (n === 0) return;
    for (let i = 0; i < n; i++) {
      const name = this.#unsaved[i]![2];
      if (name !== null) this.#pendingStreams.delete(name);
    }
    this.#unsaved = this.#unsaved.slice(n);
  }
}
