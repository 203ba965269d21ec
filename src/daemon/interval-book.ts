import type { CardCalibration } from '../inference/card.js';
import { Slab } from '../slots.js';

/** How prediction intervals are computed (config `intervals`). */
export interface IntervalSettings {
  /** Central coverage levels, e.g. [0.8, 0.95]; empty: no intervals. */
  readonly levels: readonly number[];
  /** Step of the quantile tracking, as a fraction of the half-width of the card's interval at the level. */
  readonly learningRate: number;
}

/** A numeric cell the book keeps intervals for: its `target@horizon` key. */
export interface IntervalCell {
  readonly key: string;
}

/** The residual quantile at probability p, linear between the card's points and flat beyond its ends. */
export function residualQuantile(points: ReadonlyArray<readonly [number, number]>, p: number): number {
  if (p <= points[0]![0]) return points[0]![1];
  for (let i = 1; i < points.length; i++) {
    const [p1, v1] = points[i]!;
    if (p <= p1) {
      const [p0, v0] = points[i - 1]!;
      return v0 + ((v1 - v0) * (p - p0)) / (p1 - p0);
    }
  }
  return points[points.length - 1]![1];
}

/**
 * The scale of a cell's bounds, whose narrowest interval has half-width `hw`:
 * the power of ten that makes one unit at most 1% of it (100 for 1 ≤ hw < 10),
 * between 1 and 1e9.
 */
export function boundScale(hw: number): number {
  const d = Number.isFinite(hw) && hw > 0 ? 2 - Math.floor(Math.log10(hw)) : 9;
  return 10 ** Math.min(9, Math.max(0, d));
}

/**
 * Online prediction intervals of one model, per stream. For each numeric cell
 * (horizon × target) and level L, a stream keeps the residual (actual −
 * forecast) quantiles at (1 − L)/2 and (1 + L)/2: a forecast's interval is
 * the forecast plus those two. They start at the card's held-out residual
 * quantiles (`calibration`), so a new stream has intervals from its first
 * forecast, and follow the stream's own residuals by quantile tracking (the
 * online conformal update of Angelopoulos, Candès and Tibshirani 2023; the
 * bound moves, where adaptive conformal inference moves the level, Gibbs and
 * Candès 2021): each scored forecast moves the upper bound by
 * η·(1{r > upper} − (1 − L)/2) and the lower one by the mirror image, η being
 * `learningRate` × the half-width of the card's interval at that level (a
 * step in the interval's own scale: the same knob suits every level and
 * unit). Whatever the residuals do, the fraction of misses then tends to
 * 1 − L (the bound rises with each miss more than it falls with each hit),
 * which keeps coverage under drift.
 *
 * A bound is given rounded to its cell's resolution, 1/`scale(c)`: the
 * decimal step at most 1% of the card's narrowest half-width (0.01 for a
 * half-width of 1 to 10). A bound is an estimate whose own error is far
 * larger; the store keeps it as the integer bound × scale, which costs a
 * fraction of a float's text.
 *
 * State: 2 × levels float32s per cell and stream, in a slab by the score
 * book's slots; checkpointed with the stream's open forecasts.
 */
export class IntervalBook {
  readonly #levels: readonly number[];
  readonly #rate: number;
  /** Per cell, per level: the seeds [lower, upper]. */
  #seeds: Float32Array = new Float32Array(0);
  /** Per cell and level: η. */
  #eta: Float64Array = new Float64Array(0);
  /** Per cell: the bounds' scale (`boundScale`). */
  #scale: Float64Array = new Float64Array(0);
  #cells = 0;
  #slab: Slab<Float32Array> = new Slab(1, (n) => new Float32Array(n));
  #active = false;

  constructor(settings: IntervalSettings) {
    this.#levels = [...settings.levels].sort((a, b) => a - b);
    this.#rate = settings.learningRate;
  }

  /** The levels, ascending. */
  get levels(): readonly number[] {
    return this.#levels;
  }

  /** Whether the book gives intervals: levels are configured and the card is calibrated for every cell. */
  get active(): boolean {
    return this.#active;
  }

  /** Float32s per stream. */
  get width(): number {
    return this.#cells * this.#levels.length * 2;
  }

  /** Take a card's cells (in the score book's order) and calibration; streams start again from the seeds (the caller clears its slots). */
  layout(cells: readonly IntervalCell[], calibration: CardCalibration | undefined): void {
    const L = this.#levels.length;
    const residuals = calibration?.residuals;
    this.#active = L > 0 && cells.length > 0 && residuals !== undefined && cells.every((c) => residuals[c.key] !== undefined);
    this.#cells = this.#active ? cells.length : 0;
    this.#seeds = new Float32Array(this.#cells * L * 2);
    this.#eta = new Float64Array(this.#cells * L);
    this.#scale = new Float64Array(this.#cells);
    if (!this.#active) return;
    cells.forEach((c, i) => {
      const r = residuals![c.key]!;
      this.#levels.forEach((level, l) => {
        const lo = residualQuantile(r.quantiles, (1 - level) / 2);
        const hi = residualQuantile(r.quantiles, (1 + level) / 2);
        this.#seeds[(i * L + l) * 2] = lo;
        this.#seeds[(i * L + l) * 2 + 1] = hi;
        this.#eta[i * L + l] = (this.#rate * (hi - lo)) / 2;
      });
      this.#scale[i] = boundScale((this.#seeds[i * L * 2 + 1]! - this.#seeds[i * L * 2]!) / 2);
    });
    this.#slab = new Slab(Math.max(1, this.width), (n) => new Float32Array(n));
  }

  /** Cell c's bounds come rounded to 1/scale (a power of ten). */
  scale(c: number): number {
    return this.#scale[c]!;
  }

  /** A slot newly held: the seeds. */
  seed(slot: number): void {
    if (!this.#active) return;
    this.#slab.chunk(slot).set(this.#seeds, this.#slab.offset(slot));
  }

  /** Cell `c`'s forecast of this stream was scored: residual r = actual − forecast. */
  observe(slot: number, c: number, r: number): void {
    if (!this.#active) return;
    const L = this.#levels.length;
    const q = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot) + c * L * 2;
    for (let l = 0; l < L; l++) {
      const eta = this.#eta[c * L + l]!;
      const tail = (1 - this.#levels[l]!) / 2;
      const at = base + l * 2;
      const lo = q[at]! - eta * ((r < q[at]! ? 1 : 0) - tail);
      const hi = q[at + 1]! + eta * ((r > q[at + 1]! ? 1 : 0) - tail);
      // Never inverted, and each level's interval holds the narrower level's.
      const mid = (lo + hi) / 2;
      q[at] = Math.min(lo, mid, l > 0 ? q[at - 2]! : Infinity);
      q[at + 1] = Math.max(hi, mid, l > 0 ? q[at - 1]! : -Infinity);
    }
  }

  /**
   * The intervals of a forecast, laid out by the forecast vector's cells:
   * for the numeric cell c at `at[c]`, per level, lower then upper, at
   * `out[o + at[c]·2·levels …]`, rounded to the cell's `scale`;
   * other cells are left as they are.
   */
  bounds(slot: number, forecast: ArrayLike<number>, at: readonly number[], out: Float64Array, o: number): void {
    const q = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    const n = this.#levels.length * 2;
    for (let c = 0; c < this.#cells; c++) {
      const y = forecast[at[c]!]!;
      const into = o + at[c]! * n;
      const s = this.#scale[c]!;
      for (let k = 0; k < n; k++) out[into + k] = Math.round((y + q[base + c * n + k]!) * s) / s;
    }
  }

  /** A stream's state for a checkpoint. */
  exportSlot(slot: number): Float32Array {
    const base = this.#slab.offset(slot);
    return this.#slab.chunk(slot).slice(base, base + this.width);
  }

  /** Restore a stream's state (`width` float32s). */
  importSlot(slot: number, saved: Float32Array): void {
    this.#slab.chunk(slot).set(saved, this.#slab.offset(slot));
  }
}
