import type { DriftConfig } from '../config/config.generated.js';
import type { CardCalibration, CellResiduals } from '../inference/card.js';
import { Slab } from '../slots.js';
import { residualQuantile } from './interval-book.js';

/** How drift is watched (config `drift`, its topic aside). */
export type DriftSettings = Omit<DriftConfig, 'topic'>;

export const NO_DRIFT: DriftSettings = { enabled: false, allowance: 0.75, threshold: 15, coverageLevel: 0.8, coverageBand: 0.25, coverageSteps: 30 };

/** A numeric cell the book watches: its `target@horizon` key and its target's index among the numeric targets. */
export interface DriftCell {
  readonly key: string;
  readonly target: number;
}

/** What holds a stream's drift on: the error's bias (the CUSUM), the held-out interval's coverage, or both. */
export type DriftReason = 'bias' | 'coverage';

/** A (stream, target) whose drift state turned on or off at a step. */
export interface DriftChange {
  readonly target: string;
  readonly on: boolean;
  /** What holds it on (on), or held it (off). */
  readonly reasons: readonly DriftReason[];
  /** The larger CUSUM's side: up, actuals above the forecasts; down, below. */
  readonly direction: 'up' | 'down';
  /** That CUSUM, in held-out MAEs. */
  readonly cusum: number;
  /** The recent rate of actuals outside the card's held-out interval. */
  readonly missRate: number;
}

/** A stream's drift state of one target, as the dashboard shows it. */
export interface DriftStatus {
  readonly target: string;
  readonly on: boolean;
  readonly reasons: readonly DriftReason[];
  readonly up: number;
  readonly down: number;
  readonly missRate: number;
}

const BIAS = 1;
const COVERAGE = 2;
/** Float32s per target and stream: the upper and lower CUSUM, the miss rate, the state's flags. */
const PER = 4;

/**
 * Drift detection of one model, per stream and numeric target: does the
 * stream's online error still look like the card's held-out error?
 *
 * Each step that scores forecasts gives, per target, the mean over the
 * horizons it scored of z = (actual − forecast) / the cell's held-out MAE
 * (clipped to ±4, so that one wild reading weighs as four MAEs), and the
 * fraction of them outside the card's held-out interval at `coverageLevel`.
 * Two tests follow them:
 *
 * - bias, a two-sided CUSUM (Page 1954): g⁺ ← max(0, g⁺ + z − k) and
 *   g⁻ ← max(0, g⁻ − z − k). A lasting bias b > k in held-out MAEs passes
 *   the threshold h in about h / (b − k) steps; noise around zero keeps both
 *   near 0. The sums stop at 2h, so that a long episode ends within about
 *   1.5h / k steps of the error's return. This is what a sensor that reads
 *   high shows: the network pulls its forecasts back toward what it learnt,
 *   and the actuals stay above them.
 * - coverage: an exponentially weighted miss rate of the held-out interval,
 *   from 1 − level; a stream whose errors have grown wider (whichever the
 *   sign) misses it more often.
 *
 * A (stream, target) is in drift while either test is on; each test has its
 * hysteresis (h then h/2; band then band/2). State: 4 float32s per target
 * and stream, checkpointed with the stream's open forecasts.
 */
export class DriftBook {
  readonly #s: DriftSettings;
  #active = false;
  #targets: string[] = [];
  /** Per cell: its target, 1 / held-out MAE, and the held-out interval. */
  #cellTarget = new Int32Array(0);
  #invMae = new Float64Array(0);
  #lo = new Float64Array(0);
  #hi = new Float64Array(0);
  /** Per target, this step's sums (cleared by `close`). */
  #z = new Float64Array(0);
  #miss = new Float64Array(0);
  #n = new Float64Array(0);
  #slab: Slab<Float32Array> = new Slab(1, (n) => new Float32Array(n));
  /** Streams in drift, per target. */
  #on: number[] = [];
  /** Changes since the caller last emptied it. */
  readonly changes: DriftChange[] = [];

  constructor(settings: DriftSettings) {
    this.#s = settings;
  }

  get settings(): DriftSettings {
    return this.#s;
  }

  /** Whether the book watches: enabled, and the card has held-out residuals for every cell. */
  get active(): boolean {
    return this.#active;
  }

  /** Float32s per stream. */
  get width(): number {
    return this.#active ? this.#targets.length * PER : 0;
  }

  /** The numeric targets watched, in order. */
  get targets(): readonly string[] {
    return this.#targets;
  }

  /** Take a card's cells and calibration: every stream starts again (the caller seeds or clears its slots). */
  layout(cells: readonly DriftCell[], targets: readonly string[], calibration: CardCalibration | undefined): void {
    const residuals = calibration?.residuals;
    this.#active = this.#s.enabled && cells.length > 0 && residuals !== undefined && cells.every((c) => residuals[c.key] !== undefined && heldOutMae(residuals[c.key]!) > 0);
    this.#targets = this.#active ? [...targets] : [];
    const C = this.#active ? cells.length : 0;
    this.#cellTarget = new Int32Array(C);
    this.#invMae = new Float64Array(C);
    this.#lo = new Float64Array(C);
    this.#hi = new Float64Array(C);
    const level = this.#s.coverageLevel;
    for (let c = 0; c < C; c++) {
      const r = residuals![cells[c]!.key]!;
      this.#cellTarget[c] = cells[c]!.target;
      this.#invMae[c] = 1 / heldOutMae(r);
      this.#lo[c] = residualQuantile(r.quantiles, (1 - level) / 2);
      this.#hi[c] = residualQuantile(r.quantiles, (1 + level) / 2);
    }
    const T = this.#targets.length;
    this.#z = new Float64Array(T);
    this.#miss = new Float64Array(T);
    this.#n = new Float64Array(T);
    this.#on = new Array<number>(T).fill(0);
    this.#slab = new Slab(Math.max(1, T * PER), (n) => new Float32Array(n));
  }

  /** A slot newly held (or its stream's watch starting over): no evidence yet. */
  seed(slot: number): void {
    if (!this.#active) return;
    const q = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    for (let t = 0; t < this.#targets.length; t++) {
      const at = base + t * PER;
      if (q[at + 3]! !== 0) this.#on[t]!--;
      q[at] = 0;
      q[at + 1] = 0;
      q[at + 2] = 1 - this.#s.coverageLevel;
      q[at + 3] = 0;
    }
  }

  /** Cell c was scored at this step: residual r = actual − forecast. */
  observe(c: number, r: number): void {
    const t = this.#cellTarget[c]!;
    const z = r * this.#invMae[c]!;
    this.#z[t]! += z > 4 ? 4 : z < -4 ? -4 : z;
    if (r < this.#lo[c]! || r > this.#hi[c]!) this.#miss[t]!++;
    this.#n[t]!++;
  }

  /** The step's scoring is over: each target it scored moves its tests; changes go to `changes`. */
  close(slot: number): void {
    const { allowance: k, threshold: h, coverageLevel, coverageBand: band, coverageSteps } = this.#s;
    const nominal = 1 - coverageLevel;
    const q = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    for (let t = 0; t < this.#targets.length; t++) {
      const n = this.#n[t]!;
      if (n === 0) continue;
      const z = this.#z[t]! / n;
      const missed = this.#miss[t]! / n;
      this.#z[t] = 0;
      this.#miss[t] = 0;
      this.#n[t] = 0;
      const at = base + t * PER;
      const up = Math.min(2 * h, Math.max(0, q[at]! + z - k));
      const down = Math.min(2 * h, Math.max(0, q[at + 1]! - z - k));
      const rate = q[at + 2]! + (missed - q[at + 2]!) / coverageSteps;
      const was = q[at + 3]!;
      let flags = was;
      if (!(was & BIAS) && (up > h || down > h)) flags |= BIAS;
      else if (was & BIAS && up <= h / 2 && down <= h / 2) flags &= ~BIAS;
      if (!(was & COVERAGE) && rate > nominal + band) flags |= COVERAGE;
      else if (was & COVERAGE && rate <= nominal + band / 2) flags &= ~COVERAGE;
      q[at] = up;
      q[at + 1] = down;
      q[at + 2] = rate;
      q[at + 3] = flags;
      if ((flags !== 0) === (was !== 0)) continue;
      if (flags !== 0) this.#on[t]!++;
      else this.#on[t]!--;
      const held = flags !== 0 ? flags : was;
      this.changes.push({
        target: this.#targets[t]!,
        on: flags !== 0,
        reasons: reasons(held),
        direction: up >= down ? 'up' : 'down',
        cusum: Math.max(up, down),
        missRate: rate,
      });
    }
  }

  /** A stream's state per target (for the dashboard). */
  status(slot: number): DriftStatus[] {
    const q = this.#slab.chunk(slot);
    const base = this.#slab.offset(slot);
    return this.#targets.map((target, t) => {
      const at = base + t * PER;
      return { target, on: q[at + 3]! !== 0, reasons: reasons(q[at + 3]!), up: q[at]!, down: q[at + 1]!, missRate: q[at + 2]! };
    });
  }

  /** Streams in drift, per target. */
  onCounts(): Array<[string, number]> {
    return this.#targets.map((t, i) => [t, this.#on[i]!]);
  }

  /** A stream's state for a checkpoint (`width` float32s). */
  exportSlot(slot: number): Float32Array {
    const base = this.#slab.offset(slot);
    return this.#slab.chunk(slot).slice(base, base + this.width);
  }

  /**
   * Restore a stream's state (`width` float32s); one that is not a state of
   * these settings (sums outside [0, 2h], a rate outside [0, 1], flags other
   * than the tests') is ignored, and the stream starts over.
   */
  importSlot(slot: number, saved: Float32Array): void {
    const h2 = 2 * this.#s.threshold;
    for (let t = 0; t < this.#targets.length; t++) {
      const [up, down, rate, flags] = [saved[t * PER]!, saved[t * PER + 1]!, saved[t * PER + 2]!, saved[t * PER + 3]!];
      if (!(up >= 0 && up <= h2 && down >= 0 && down <= h2 && rate >= 0 && rate <= 1 && (flags === 0 || flags === 1 || flags === 2 || flags === 3))) return;
    }
    this.seed(slot);
    this.#slab.chunk(slot).set(saved, this.#slab.offset(slot));
    for (let t = 0; t < this.#targets.length; t++) if (saved[t * PER + 3]! !== 0) this.#on[t]!++;
  }

  /** A stream's slot is let go. */
  release(slot: number): void {
    this.seed(slot);
  }
}

/** A cell's held-out MAE: the card's, or (a card that gives only quantiles) the mean |residual| of its quantile function, linear between the points and flat beyond them. */
export function heldOutMae(r: CellResiduals): number {
  if (r.mae !== undefined) return r.mae;
  let sum = 0;
  for (let i = 0; i < 1000; i++) sum += Math.abs(residualQuantile(r.quantiles, (i + 0.5) / 1000));
  return sum / 1000;
}

function reasons(flags: number): DriftReason[] {
  const out: DriftReason[] = [];
  if (flags & BIAS) out.push('bias');
  if (flags & COVERAGE) out.push('coverage');
  return out;
}
