import { numericTargets, targetWidth, type ModelCard } from './card.js';
import { storedValue } from '../store/codec.js';

/** One target at one horizon, read from a model output. */
export interface HeadReading {
  readonly horizon: number;
  readonly target: string;
  /** A numeric target: the value in physical units. A classification target: the probability of `label`. */
  readonly value: number;
  /** Classification targets only: the most probable label… */
  readonly label?: string;
  /** …and every label's probability, in card order. */
  readonly probabilities?: Readonly<Record<string, number>>;
}

/** Why an output could not be read (a classification head whose "probabilities" are not). */
export class OutputReadError extends Error {}

interface Slot {
  readonly horizon: number;
  readonly target: string;
  readonly offset: number;
  /** Numeric: de-standardisation. */
  readonly mean: number;
  readonly std: number;
  /** Classification: labels and how the scores are given. */
  readonly labels?: readonly string[];
  readonly logits: boolean;
}

/** Probabilities within this of summing to 1 are taken as they are (float32 softmax drift). */
const SUM_TOLERANCE = 1e-3;

/**
 * Reads a model's horizon-major output vector the way its card describes it:
 * numeric targets are de-standardised with `scaler.targets`; classification
 * targets (`labels`) become the most probable label, its probability and the
 * whole distribution, with softmax applied when the scores are logits. Ties go
 * to the label listed first.
 */
export class OutputHead {
  #slots: Slot[] = [];
  #width = 0;

  constructor(card: ModelCard) {
    this.use(card);
  }

  /** Take another card's layout (a hot-reloaded model). */
  use(card: ModelCard): void {
    const numeric = numericTargets(card);
    const slots: Slot[] = [];
    let offset = 0;
    for (const horizon of card.horizons) {
      for (const t of card.targets) {
        const k = numeric.indexOf(t);
        const mean = k >= 0 ? (card.scaler?.targets?.mean[k] ?? 0) : 0;
        const std = k >= 0 ? (card.scaler?.targets?.std[k] ?? 1) : 1;
        slots.push({ horizon, target: t.name, offset, mean, std, labels: t.labels, logits: (t.scores ?? 'logits') === 'logits' });
        offset += targetWidth(t);
      }
    }
    this.#slots = slots;
    this.#width = offset;
  }

  /** Output values per step this head reads. */
  get width(): number {
    return this.#width;
  }

  /** The cells of the output, horizon-major: what `read` returns, in that order. */
  get cells(): ReadonlyArray<{ readonly horizon: number; readonly target: string; readonly labels?: readonly string[] }> {
    return this.#slots;
  }

  /** Whether any target is a classification head. */
  get classifies(): boolean {
    return this.#slots.some((s) => s.labels !== undefined);
  }

  /**
   * The data path's read: one number per cell in `cells` order (a numeric
   * target's value in physical units, a classification target's label
   * probability) and, for a classifier, per cell null or [label, every
   * label's probability]. No object per cell for a numeric head.
   */
  readValues(output: ArrayLike<number>): { values: number[]; labels: Array<readonly [string, Readonly<Record<string, number>>] | null> | null } {
    const slots = this.#slots;
    const values = new Array<number>(slots.length);
    let labels: Array<readonly [string, Readonly<Record<string, number>>] | null> | null = null;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k]!;
      if (!s.labels) {
        values[k] = output[s.offset]! * s.std + s.mean;
        continue;
      }
      labels ??= new Array(slots.length).fill(null);
      const r = this.#classify(s, output);
      values[k] = r.value;
      labels[k] = [r.label!, r.probabilities!];
    }
    return { values, labels };
  }

  #classify(s: Slot, output: ArrayLike<number>): HeadReading {
    const labels = s.labels!;
    const p = s.logits ? softmax(output, s.offset, labels.length) : checkedProbabilities(output, s.offset, labels.length, s.target);
    let best = 0;
    for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
    // With the digits a stored or published forecast value has, so that the label's probability is the same number in value and in the map.
    const probabilities: Record<string, number> = {};
    labels.forEach((label, i) => (probabilities[label] = storedValue(p[i]!)));
    return { horizon: s.horizon, target: s.target, value: probabilities[labels[best]!]!, label: labels[best]!, probabilities };
  }

  /** Every target at every horizon, horizon-major. Throws OutputReadError for probabilities that are not. */
  read(output: ArrayLike<number>): HeadReading[] {
    const out: HeadReading[] = [];
    for (const s of this.#slots) {
      if (!s.labels) {
        out.push({ horizon: s.horizon, target: s.target, value: output[s.offset]! * s.std + s.mean });
        continue;
      }
      out.push(this.#classify(s, output));
    }
    return out;
  }
}

/** Softmax in float64, shifted by the maximum so large logits do not overflow. */
export function softmax(v: ArrayLike<number>, offset = 0, n = v.length - offset): Float64Array {
  const p = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, v[offset + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp(v[offset + i]! - max);
  for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
  return p;
}

/** Scores a card calls probabilities: each in [0, 1] and summing to 1 (within float drift, then renormalised). */
function checkedProbabilities(v: ArrayLike<number>, offset: number, n: number, target: string): Float64Array {
  const p = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = v[offset + i]!;
    if (!(x >= -SUM_TOLERANCE && x <= 1 + SUM_TOLERANCE)) {
      throw new OutputReadError(`target ${target}: the card says the class scores are probabilities, but one is ${x}; if the graph has no softmax, set "scores": "logits"`);
    }
    sum += p[i] = Math.min(1, Math.max(0, x));
  }
  if (Math.abs(sum - 1) > SUM_TOLERANCE) {
    throw new OutputReadError(`target ${target}: the card says the class scores are probabilities, but they sum to ${sum}; if the graph has no softmax, set "scores": "logits"`);
  }
  for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
  return p;
}
