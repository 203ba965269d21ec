import { numericTargets, type ModelCard } from '../inference/card.js';
import { bucketMsFor } from '../store/schema-7.js';
import type { AccuracyDelta } from '../store/rows.js';
import { Slab, SlotView, type SlotIndex } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';

/** An earlier forecast scored against the step that just arrived. */
export interface ScoredRow {
  readonly model: string;
  readonly horizon: number;
  readonly target: string;
  readonly predicted: number;
  readonly actual: number;
  readonly persistence: number;
}

/** The numeric cells of a forecast that are scored: where each sits in the forecast vector. */
interface Cell {
  readonly horizon: number;
  readonly target: string;
  /** Index of the target among the numeric targets (its persistence value). */
  readonly t: number;
  /** Index in the forecast vector (all cells, classification ones included). */
  readonly at: number;
}

/** Where each scored error also goes (the metrics' rolling window of a model × horizon × target). */
export type ScoreTracker = (horizon: number, target: string) => { add(err: number, persistenceErr: number): void };

/** Per delta cell: n, sum |e|, sum e², sum e, sum |persistence error|, last target time. */
const SUMS = 6;
/** A closed delta kept in memory: horizon, target index, bucket, then the SUMS. */
const RECORD = 3 + SUMS;

/**
 * Online scoring of one model in memory. Each stream keeps, in one slot of a
 * Float64Array slab, the forecasts it issued whose horizons are still open (a
 * ring indexed by issue step). The errors summed since the last checkpoint
 * for the current time bucket sit in a second slab, in a record a stream
 * holds only from its first scored error until a checkpoint takes the sums
 * (or the bucket closes): a stream that was not scored since the last
 * checkpoint costs no sums. When a step arrives, the forecasts that target
 * it are scored against its values (forward-filled actuals are not scored;
 * persistence is the target's value at the issue step), as the store's SQL did
 * before schema 7. A stream's open forecasts are checkpointed with its model
 * state, and the summed errors are written to the `accuracy` table by the same
 * checkpoint, so a replay after a crash scores each step exactly once.
 */
export class ScoreBook {
  readonly model: string;
  #cells: Cell[] = [];
  /** Per cell, its tracker (when the book has one). */
  #trackers: Array<{ add(err: number, persistenceErr: number): void }> = [];
  /** Per horizon of #horizons, the indexes of its cells. */
  #byHorizon: number[][] = [];
  readonly #track: ScoreTracker | undefined;
  #targets: string[] = [];
  #horizons: number[] = [];
  #stepMs = 0;
  #bucketMs = 0;
  /** Ring slots: max horizon; each [issuedAt, persistence × targets] here, its predicted cells in `#predicted`. */
  #ring = 0;
  #entry = 0;
  #key = '';
  #slots = new SlotView();
  readonly #init = (slot: number): void => this.#initSlot(slot);
  #slab = new Slab(1, (n) => new Float64Array(n));
  /** Per slot, its sums record in `#sums` (-1: none, the sums are zero). */
  #sumsOf = new Slab(1, (n) => new Int32Array(n), -1);
  /** Sums records: the current bucket, then SUMS per cell. */
  #sums = new Slab(1, (n) => new Float64Array(n));
  /** Sums records free for reuse, and one past the highest handed out. */
  #freeSums: number[] = [];
  #nextSums = 0;
  /**
   * Per slot, the ring's predicted cells, in float32: a forecast is a float32
   * network output scaled back to physical units, so its precision is a
   * float32's (about 7 significant digits) whatever holds it, and rounding it
   * to one again changes an error by at most that (tests/accuracy: online MAE
   * within 6e-5 of the card's). A double spent 72 more of a weather-lstm
   * stream's bytes.
   */
  #predicted = new Slab(1, (n) => new Float32Array(n));
  /** Deltas of buckets that closed since the last checkpoint, by stream. */
  #closed = new Map<string, number[]>();
  /** Target names the closed records refer to by index (only ever added to: a reload keeps old records readable). */
  readonly #targetNames: string[] = [];
  readonly #targetIndex = new Map<string, number>();
  /** Sums taken by a checkpoint not yet committed. */
  #inflight = new Map<string, AccuracyDelta[]>();

  constructor(card: ModelCard, track?: ScoreTracker) {
    this.model = card.name;
    this.#track = track;
    this.use(card);
  }

  /** Take a (hot-reloaded) card's layout; when it changes, open forecasts are dropped and sums kept as closed deltas. */
  use(card: ModelCard): void {
    const numeric = numericTargets(card);
    const cells: Cell[] = [];
    let at = 0;
    for (const horizon of card.horizons) {
      for (const target of card.targets) {
        const t = numeric.indexOf(target);
        if (t >= 0 && horizon > 0) cells.push({ horizon, target: target.name, t, at });
        at++;
      }
    }
    const key = JSON.stringify([card.stepSeconds, card.horizons, cells]);
    if (key === this.#key) return;
    if (this.#key !== '') {
      for (const [stream, record] of this.#withCurrentSums()) this.#keep(stream, this.#deltasOf(stream, record));
      this.#slots.clear();
    }
    this.#key = key;
    this.#cells = cells;
    this.#trackers = this.#track ? cells.map((c) => this.#track!(c.horizon, c.target)) : [];
    this.#targets = numeric.map((t) => t.name);
    this.#horizons = [...new Set(cells.map((c) => c.horizon))];
    this.#byHorizon = this.#horizons.map((h) => cells.flatMap((c, i) => (c.horizon === h ? [i] : [])));
    this.#stepMs = card.stepSeconds * 1000;
    this.#bucketMs = bucketMsFor(this.#stepMs);
    this.#ring = cells.length > 0 ? Math.max(...this.#horizons) : 0;
    this.#entry = 1 + this.#targets.length;
    this.#slab = new Slab(Math.max(1, this.#ring * this.#entry), (n) => new Float64Array(n));
    this.#sumsOf = new Slab(1, (n) => new Int32Array(n), -1);
    this.#sums = new Slab(1 + cells.length * SUMS, (n) => new Float64Array(n));
    this.#freeSums = [];
    this.#nextSums = 0;
    this.#predicted = new Slab(Math.max(1, this.#ring * cells.length), (n) => new Float32Array(n));
  }

  /** Streams with a slot. */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * Key the open forecasts by another table's slot index (the step
   * assembler's of the one route group that uses the model): one map entry
   * per stream for both. Only while the book holds no stream.
   */
  shareSlots(index: SlotIndex): void {
    if (this.#slots.size > 0) throw new TidecastError(ErrorCodes.INTERNAL, `score book of ${this.model} holds streams: it cannot share a slot index now`);
    this.#slots = new SlotView(index);
  }

  /** Streams holding error sums (scored since their sums were last taken). */
  get summing(): number {
    return this.#nextSums - this.#freeSums.length;
  }

  /**
   * Score the open forecasts that target this step (adding to `out`), then
   * remember the forecast issued at it (null: the step gave none). `at`,
   * `index`: the stream's slot in an index, taken without a lookup when it is
   * the one the book shares.
   */
  step(stream: string, ts: number, values: Readonly<Record<string, number>>, filled: readonly string[], forecast: ArrayLike<number> | null, out?: ScoredRow[], at?: number, index?: SlotIndex): void {
    if (this.#cells.length === 0) return;
    const slot = this.#slots.holdFrom(stream, at, index, this.#init);
    // A shared index that no longer knows the stream (it left memory): nothing to score it against.
    if (slot === undefined) return;
    const d = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    const step = this.#stepMs;
    const p = this.#predicted.chunk(slot);
    const pBase = this.#predicted.offset(slot);
    const bucket = Math.floor(ts / this.#bucketMs) * this.#bucketMs;
    for (let k = 0; k < this.#horizons.length; k++) {
      const h = this.#horizons[k]!;
      const issued = ts - h * step;
      const r = this.#ringIndex(issued);
      const e = base + r * this.#entry;
      if (d[e] !== issued) continue;
      const pe = pBase + r * this.#cells.length;
      for (const c of this.#byHorizon[k]!) {
        const cell = this.#cells[c]!;
        const actual = values[cell.target];
        const persistence = d[e + 1 + cell.t]!;
        if (actual === undefined || Number.isNaN(persistence) || filled.includes(cell.target)) continue;
        const predicted = p[pe + c]!;
        const record = this.#sumsFor(stream, slot, bucket);
        const u = this.#sums.chunk(record);
        const s = this.#sums.offset(record) + 1 + c * SUMS;
        const err = predicted - actual;
        u[s] = u[s]! + 1;
        u[s + 1] = u[s + 1]! + Math.abs(err);
        u[s + 2] = u[s + 2]! + err * err;
        u[s + 3] = u[s + 3]! + err;
        u[s + 4] = u[s + 4]! + Math.abs(persistence - actual);
        u[s + 5] = Math.max(u[s + 5]!, ts);
        this.#trackers[c]?.add(err, persistence - actual);
        out?.push({ model: this.model, horizon: h, target: cell.target, predicted, actual, persistence });
      }
    }
    if (!forecast) return;
    const r = this.#ringIndex(ts);
    const e = base + r * this.#entry;
    d[e] = ts;
    for (let t = 0; t < this.#targets.length; t++) d[e + 1 + t] = values[this.#targets[t]!] ?? NaN;
    const pe = pBase + r * this.#cells.length;
    for (let c = 0; c < this.#cells.length; c++) p[pe + c] = forecast[this.#cells[c]!.at]!;
  }

  /** The summed errors not yet stored: closed buckets and every stream's current one (those taken for a checkpoint in flight excepted). */
  deltas(): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    for (const [stream, records] of this.#closed) out.push(...this.#read(stream, records));
    for (const [stream, record] of this.#withCurrentSums()) out.push(...this.#deltasOf(stream, record));
    return out;
  }

  /**
   * The sums for a checkpoint (of these streams, or all): their deltas, and
   * the sums start over. They stay in flight (still counted by `deltasOf`)
   * until `stored` (committed) or `unstored` (the checkpoint failed: they are
   * added back).
   */
  take(streams?: Iterable<string>): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    for (const stream of streams ?? this.#withSums()) {
      const taken = this.#read(stream, this.#closed.get(stream));
      this.#closed.delete(stream);
      const slot = this.#slots.get(stream);
      const record = slot === undefined ? -1 : this.#sumsRecord(slot);
      if (record >= 0) {
        taken.push(...this.#deltasOf(stream, record));
        this.#freeSumsOf(slot!);
      }
      if (taken.length === 0) continue;
      const list = this.#inflight.get(stream);
      if (list) list.push(...taken);
      else this.#inflight.set(stream, taken);
      out.push(...taken);
    }
    return out;
  }

  /** One stream's sums not yet stored (in flight, closed buckets and the current one): what the dashboard adds to the stored ones. */
  deltasOf(stream: string): AccuracyDelta[] {
    const out = [...(this.#inflight.get(stream) ?? []), ...this.#read(stream, this.#closed.get(stream))];
    const slot = this.#slots.get(stream);
    const record = slot === undefined ? -1 : this.#sumsRecord(slot);
    if (record >= 0) out.push(...this.#deltasOf(stream, record));
    return out;
  }

  /** The sums `take` returned (for these streams, or all) were committed. */
  stored(streams?: Iterable<string>): void {
    if (!streams) this.#inflight = new Map();
    else for (const s of streams) this.#inflight.delete(s);
  }

  /** The checkpoint with the sums `take` returned (for these streams, or all) failed: they wait for the next one. */
  unstored(streams?: Iterable<string>): void {
    for (const s of streams ?? [...this.#inflight.keys()]) {
      const list = this.#inflight.get(s);
      if (!list) continue;
      this.#inflight.delete(s);
      this.#keep(s, list);
    }
  }

  /**
   * A stream's open forecasts for a checkpoint (undefined: none kept): the
   * ring's issue times and persistence values as float64s, then its predicted
   * cells as float32s.
   */
  exportStream(stream: string): Buffer | undefined {
    const slot = this.#slots.get(stream);
    if (slot === undefined || this.#ring === 0) return undefined;
    const doubles = this.#ring * this.#entry;
    const floats = this.#ring * this.#cells.length;
    const out = Buffer.allocUnsafe(doubles * 8 + floats * 4);
    const base = this.#slab.offset(slot);
    const pBase = this.#predicted.offset(slot);
    new Float64Array(out.buffer, out.byteOffset, doubles).set(this.#slab.chunk(slot).subarray(base, base + doubles));
    new Float32Array(out.buffer, out.byteOffset + doubles * 8, floats).set(this.#predicted.chunk(slot).subarray(pBase, pBase + floats));
    return out;
  }

  /**
   * Restore a stream's open forecasts; ignored when they were saved under
   * another layout. Checkpoints written before the predicted cells moved to
   * float32 hold each ring entry as float64s [issuedAt, persistence ×
   * targets, predicted × cells]: they are read too.
   */
  importStream(stream: string, saved: Buffer | null | undefined): void {
    if (!saved || this.#ring === 0) return;
    const E = this.#entry;
    const C = this.#cells.length;
    const doubles = this.#ring * E;
    const floats = this.#ring * C;
    const legacy = saved.byteLength === this.#ring * (E + C) * 8;
    if (!legacy && saved.byteLength !== doubles * 8 + floats * 4) return;
    // A copy: the blob's byte offset need not be a multiple of 8.
    const bytes = new Uint8Array(saved);
    const slot = this.#slots.hold(stream, this.#init);
    if (slot === undefined) return;
    const d = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    const p = this.#predicted.chunk(slot);
    const pBase = this.#predicted.offset(slot);
    if (legacy) {
      const old = new Float64Array(bytes.buffer, 0, this.#ring * (E + C));
      for (let r = 0; r < this.#ring; r++) {
        for (let k = 0; k < E; k++) d[base + r * E + k] = old[r * (E + C) + k]!;
        for (let c = 0; c < C; c++) p[pBase + r * C + c] = old[r * (E + C) + E + c]!;
      }
      return;
    }
    d.set(new Float64Array(bytes.buffer, 0, doubles), base);
    p.set(new Float32Array(bytes.buffer, doubles * 8, floats), pBase);
  }

  /** Forget a stream (evicted: its deltas move to the closed list first). */
  release(stream: string): void {
    const slot = this.#slots.get(stream);
    if (slot === undefined) return;
    const record = this.#sumsRecord(slot);
    if (record >= 0) {
      this.#keep(stream, this.#deltasOf(stream, record));
      this.#freeSumsOf(slot);
    }
    this.#slots.release(stream);
  }

  /**
   * Keep deltas until a checkpoint takes them, as records of RECORD numbers
   * in one array per stream: a delta object with its boxed numbers would
   * live until the next checkpoint, and the young-generation GC copies
   * every such survivor (a daily model closes a bucket every seventh step).
   */
  #keep(stream: string, deltas: readonly AccuracyDelta[]): void {
    if (deltas.length === 0) return;
    let list = this.#closed.get(stream);
    if (!list) this.#closed.set(stream, (list = []));
    for (const d of deltas) {
      let t = this.#targetIndex.get(d.target);
      if (t === undefined) {
        t = this.#targetNames.push(d.target) - 1;
        this.#targetIndex.set(d.target, t);
      }
      list.push(d.horizon, t, d.bucket, d.n, d.sumAbs, d.sumSq, d.sumErr, d.sumPAbs, d.lastTargetTime);
    }
  }

  /** The deltas of a stream's closed records. */
  #read(stream: string, records: readonly number[] | undefined): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    if (!records) return out;
    for (let i = 0; i < records.length; i += RECORD) {
      const r = (k: number): number => records[i + k]!;
      out.push({ stream, model: this.model, horizon: r(0), target: this.#targetNames[r(1)]!, bucket: r(2), n: r(3), sumAbs: r(4), sumSq: r(5), sumErr: r(6), sumPAbs: r(7), lastTargetTime: r(8) });
    }
    return out;
  }

  #ringIndex(issued: number): number {
    const k = Math.floor(issued / this.#stepMs) % this.#ring;
    return k < 0 ? k + this.#ring : k;
  }

  /** A slot newly held: no forecast open, no sums. */
  #initSlot(slot: number): void {
    const d = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    // Issue times start as NaN: no forecast is open.
    for (let r = 0; r < this.#ring; r++) d[base + r * this.#entry] = NaN;
    this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)] = -1;
  }

  /** A slot's sums record (-1: none, its current bucket has no sums). */
  #sumsRecord(slot: number): number {
    return this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)]!;
  }

  /**
   * The slot's sums record for `bucket`: a zeroed one from the free list when
   * it has none; a bucket that closed keeps its sums as closed deltas and the
   * record starts over.
   */
  #sumsFor(stream: string, slot: number, bucket: number): number {
    const sumsOf = this.#sumsOf.chunk(slot);
    const so = this.#sumsOf.offset(slot);
    let record = sumsOf[so]!;
    if (record >= 0 && this.#sums.chunk(record)[this.#sums.offset(record)] === bucket) return record;
    if (record >= 0) this.#keep(stream, this.#deltasOf(stream, record));
    else record = sumsOf[so] = this.#freeSums.pop() ?? this.#nextSums++;
    this.#sums.fill(record, 0);
    this.#sums.chunk(record)[this.#sums.offset(record)] = bucket;
    return record;
  }

  /** The slot's sums were taken or kept elsewhere: its record goes back to the free list. */
  #freeSumsOf(slot: number): void {
    const record = this.#sumsRecord(slot);
    if (record < 0) return;
    this.#freeSums.push(record);
    this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)] = -1;
  }

  /** Streams (with their sums records) whose current bucket has sums. */
  *#withCurrentSums(): Generator<[string, number]> {
    for (const [stream, slot] of this.#slots.entries()) {
      const record = this.#sumsRecord(slot);
      if (record >= 0) yield [stream, record];
    }
  }

  /** Streams with closed deltas or sums in their current bucket: what a full checkpoint takes. */
  #withSums(): Set<string> {
    const out = new Set(this.#closed.keys());
    for (const [stream] of this.#withCurrentSums()) out.add(stream);
    return out;
  }

  /** A sums record's deltas. */
  #deltasOf(stream: string, record: number): AccuracyDelta[] {
    const d = this.#sums.chunk(record);
    const sums = this.#sums.offset(record);
    const out: AccuracyDelta[] = [];
    this.#cells.forEach((cell, c) => {
      const s = sums + 1 + c * SUMS;
      if (d[s] === 0) return;
      out.push({ stream, model: this.model, horizon: cell.horizon, target: cell.target, bucket: d[sums]!, n: d[s]!, sumAbs: d[s + 1]!, sumSq: d[s + 2]!, sumErr: d[s + 3]!, sumPAbs: d[s + 4]!, lastTargetTime: d[s + 5]! });
    });
    return out;
  }
}
