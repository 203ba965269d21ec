import { numericTargets, type ModelCard } from '../inference/card.js';
import { bucketMsFor } from '../store/schema-7.js';
import type { AccuracyDelta } from '../store/rows.js';
import { ErrorSums } from './error-sums.js';
import type { AlertBook } from './alert-book.js';
import { IntervalBook, type IntervalSettings } from './interval-book.js';
import { DriftBook, NO_DRIFT, type DriftSettings } from './drift-book.js';
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

/**
 * Online scoring of one model in memory. Each stream keeps, in one slot of a
 * Float64Array slab, the forecasts it issued whose horizons are still open (a
 * ring indexed by issue step). The errors are summed by `ErrorSums` until a
 * checkpoint takes them. When a step arrives, the forecasts that target
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
  /**
   * Per slot, the ring's predicted cells, in float32: a forecast is a float32
   * network output scaled back to physical units, so its precision is a
   * float32's (about 7 significant digits) whatever holds it, and rounding it
   * to one again changes an error by at most that (tests/accuracy: online MAE
   * within 6e-5 of the card's). A double spent 72 more of a weather-lstm
   * stream's bytes.
   */
  #predicted = new Slab(1, (n) => new Float32Array(n));
  /** The errors summed, by stream, until a checkpoint stores them. */
  readonly #errors: ErrorSums;
  /** Each stream's prediction intervals, moved by the residuals scored here. */
  readonly intervals: IntervalBook;
  /** Each stream's drift tests, moved by the same residuals. */
  readonly drift: DriftBook;
  #intervalKey = '';
  /** Per numeric cell, its index in the forecast vector. */
  #at: number[] = [];

  /** The model's threshold alerts (`attachAlerts`), null without any. */
  alerts: AlertBook | null = null;
  #card: ModelCard;

  constructor(card: ModelCard, track?: ScoreTracker, intervals: IntervalSettings = { levels: [], learningRate: 0 }, drift: DriftSettings = NO_DRIFT) {
    this.model = card.name;
    this.#track = track;
    this.#errors = new ErrorSums(card.name);
    this.intervals = new IntervalBook(intervals);
    this.drift = new DriftBook(drift);
    this.#card = card;
    this.use(card);
  }

  /** Watch the model's alerts from now on: what they name that the card lacks goes to `problems`. */
  attachAlerts(alerts: AlertBook, problems: string[]): void {
    alerts.use(this.#card, this.levels, problems);
    if (alerts.rules.length > 0) this.alerts = alerts;
  }

  /** The interval levels forecasts carry, null without intervals. */
  get levels(): readonly number[] | null {
    return this.intervals.active ? this.intervals.levels : null;
  }

  /**
   * Take a (hot-reloaded) card's layout; when it changes, open forecasts are
   * dropped and sums kept as closed deltas. Alerts keep their states while
   * they stay the same.
   */
  use(card: ModelCard): void {
    this.#card = card;
    this.#use(card);
    this.alerts?.use(card, this.levels);
  }

  #use(card: ModelCard): void {
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
    const intervalKey = JSON.stringify([key, card.calibration?.residuals ?? null]);
    if (key === this.#key) {
      // The same cells, calibrated anew: the streams' intervals start again from the new seeds, their drift tests from nothing.
      if (intervalKey !== this.#intervalKey) {
        this.#intervalKey = intervalKey;
        this.#intervals(cells, card);
        for (const [, slot] of this.#slots.entries()) {
          this.intervals.seed(slot);
          this.drift.seed(slot);
        }
      }
      return;
    }
    this.#intervalKey = intervalKey;
    if (this.#key !== '') {
      this.#errors.closeAll(this.#slots);
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
    this.#errors.layout(cells);
    this.#predicted = new Slab(Math.max(1, this.#ring * cells.length), (n) => new Float32Array(n));
    this.#intervals(cells, card);
  }

  #intervals(cells: readonly Cell[], card: ModelCard): void {
    const keyed = cells.map((c) => ({ key: `${c.target}@${c.horizon}`, target: c.t }));
    this.intervals.layout(keyed, card.calibration);
    this.drift.layout(keyed, this.#targets, card.calibration);
    this.#at = cells.map((c) => c.at);
    const scales: Array<number | null> = new Array<number | null>(card.horizons.length * card.targets.length).fill(null);
    if (this.intervals.active) cells.forEach((c, i) => (scales[c.at] = this.intervals.scale(i)));
    this.#scales = scales;
  }

  #scales: ReadonlyArray<number | null> = [];

  /**
   * Per cell of the forecast vector, the scale of its interval bounds
   * (`IntervalBook.scale`), null for a cell without intervals. A new array
   * whenever the card's layout or calibration changes.
   */
  get intervalScales(): ReadonlyArray<number | null> {
    return this.#scales;
  }

  /**
   * A forecast's prediction intervals (`intervals.active`), by the forecast
   * vector's cells and then levels, lower and upper, into `out` from `o`; a
   * classification cell's stay as they are. Call after `step` gave the
   * stream's slot its latest residuals.
   */
  bounds(stream: string, forecast: ArrayLike<number>, out: Float64Array, o: number, at?: number, index?: SlotIndex): void {
    const slot = this.#slots.holdFrom(stream, at, index, this.#init);
    if (slot !== undefined) this.intervals.bounds(slot, forecast, this.#at, out, o);
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
    return this.#errors.summing;
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
    const drift = this.drift.active;
    let scored = false;
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
        const err = predicted - actual;
        this.#errors.add(stream, slot, bucket, c, err, persistence - actual, ts);
        this.#trackers[c]?.add(err, persistence - actual);
        this.intervals.observe(slot, c, -err);
        if (drift) this.drift.observe(c, -err);
        scored = true;
        out?.push({ model: this.model, horizon: h, target: cell.target, predicted, actual, persistence });
      }
    }
    if (scored && drift) this.drift.close(slot);
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
    return this.#errors.deltas(this.#slots);
  }

  /**
   * The sums for a checkpoint (of these streams, or all): their deltas, and
   * the sums start over. They stay in flight (still counted by `deltasOf`)
   * until `stored` (committed) or `unstored` (the checkpoint failed: they are
   * added back).
   */
  take(streams?: Iterable<string>): AccuracyDelta[] {
    return this.#errors.take(this.#slots, streams);
  }

  /** One stream's sums not yet stored (in flight, closed buckets and the current one): what the dashboard adds to the stored ones. */
  deltasOf(stream: string): AccuracyDelta[] {
    return this.#errors.deltasOf(stream, this.#slots.get(stream));
  }

  /** The sums `take` returned (for these streams, or all) were committed. */
  stored(streams?: Iterable<string>): void {
    this.#errors.stored(streams);
  }

  /** The checkpoint with the sums `take` returned (for these streams, or all) failed: they wait for the next one. */
  unstored(streams?: Iterable<string>): void {
    this.#errors.unstored(streams);
  }

  /**
   * A stream's open forecasts for a checkpoint (undefined: none kept): the
   * ring's issue times and persistence values as float64s, then its predicted
   * cells as float32s, then its interval state (`IntervalBook`) and drift
   * tests (`DriftBook`) as float32s; with alerts, their states (`AlertBook.exportStream`) and that part's
   * length (uint16).
   */
  exportStream(stream: string): Buffer | undefined {
    const main = this.#exportMain(stream);
    const alerts = main && this.alerts?.exportStream(stream);
    if (!main || !alerts) return main;
    const tail = Buffer.allocUnsafe(2);
    tail.writeUInt16LE(alerts.byteLength, 0);
    return Buffer.concat([main, alerts, tail]);
  }

  #exportMain(stream: string): Buffer | undefined {
    const slot = this.#slots.get(stream);
    if (slot === undefined || this.#ring === 0) return undefined;
    const doubles = this.#ring * this.#entry;
    const floats = this.#ring * this.#cells.length;
    const q = this.intervals.width;
    const dw = this.drift.width;
    const out = Buffer.allocUnsafe(doubles * 8 + (floats + q + dw) * 4);
    const base = this.#slab.offset(slot);
    const pBase = this.#predicted.offset(slot);
    new Float64Array(out.buffer, out.byteOffset, doubles).set(this.#slab.chunk(slot).subarray(base, base + doubles));
    new Float32Array(out.buffer, out.byteOffset + doubles * 8, floats).set(this.#predicted.chunk(slot).subarray(pBase, pBase + floats));
    if (q > 0) new Float32Array(out.buffer, out.byteOffset + doubles * 8 + floats * 4, q).set(this.intervals.exportSlot(slot));
    if (dw > 0) new Float32Array(out.buffer, out.byteOffset + doubles * 8 + (floats + q) * 4, dw).set(this.drift.exportSlot(slot));
    return out;
  }

  /**
   * Restore a stream's open forecasts; ignored when they were saved under
   * another layout. Checkpoints written before the predicted cells moved to
   * float32 hold each ring entry as float64s [issuedAt, persistence ×
   * targets, predicted × cells]: they are read too, as are those written
   * before intervals (or under other levels) or drift tests: the stream's
   * intervals then start from the card's seeds, its tests from nothing.
   */
  importStream(stream: string, saved: Buffer | null | undefined): void {
    if (!saved || this.#ring === 0) return;
    if (!this.#mainSizes().includes(saved.byteLength) && saved.byteLength >= 2) {
      // With the alerts' states after it.
      const n = saved.readUInt16LE(saved.byteLength - 2);
      const main = saved.byteLength - 2 - n;
      if (main >= 0 && this.#mainSizes().includes(main)) {
        this.#importMain(stream, saved.subarray(0, main));
        this.alerts?.importStream(stream, saved.subarray(main, main + n));
        return;
      }
    }
    this.#importMain(stream, saved);
  }

  /** Sizes of the open forecasts' part of a checkpoint: current, without drift tests, without intervals, and the early float64 one. */
  #mainSizes(): number[] {
    const doubles = this.#ring * this.#entry;
    const floats = this.#ring * this.#cells.length;
    const q = this.intervals.width;
    return [doubles * 8 + (floats + q + this.drift.width) * 4, doubles * 8 + (floats + q) * 4, doubles * 8 + floats * 4, this.#ring * (this.#entry + this.#cells.length) * 8];
  }

  #importMain(stream: string, saved: Buffer): void {
    const E = this.#entry;
    const C = this.#cells.length;
    const doubles = this.#ring * E;
    const floats = this.#ring * C;
    const Q = this.intervals.width;
    const D = this.drift.width;
    const size = saved.byteLength;
    // What the saved state holds: intervals (q floats), drift tests (dq floats); the sizes tried newest first
    // (where two coincide, the newer format wins: the float64 one is from early versions).
    let q = 0;
    let dq = 0;
    let legacy = false;
    if (size === doubles * 8 + (floats + Q + D) * 4) [q, dq] = [Q, D];
    else if (size === doubles * 8 + (floats + Q) * 4) q = Q;
    else if (size === this.#ring * (E + C) * 8) legacy = true;
    else if (size !== doubles * 8 + floats * 4) return;
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
    if (q > 0) this.intervals.importSlot(slot, new Float32Array(bytes.buffer, doubles * 8 + floats * 4, q));
    if (dq > 0) this.drift.importSlot(slot, new Float32Array(bytes.buffer, doubles * 8 + (floats + q) * 4, dq));
  }

  /** Forget a stream (evicted: its deltas move to the closed list first). */
  release(stream: string): void {
    const slot = this.#slots.get(stream);
    this.alerts?.release(stream);
    if (slot === undefined) return;
    this.#errors.release(stream, slot);
    this.drift.release(slot);
    this.#slots.release(stream);
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
    this.#errors.clearSlot(slot);
    this.intervals.seed(slot);
    this.drift.seed(slot);
  }
}
