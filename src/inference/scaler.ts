import type { ModelCard } from './card.js';

/**
 * Standardisation from a model card: features in, forecasts out.
 * Without a scaler in the card, values pass through unchanged.
 */
export class CardScaler {
  #fMean!: Float64Array;
  #fStd!: Float64Array;
  #tMean!: Float64Array;
  #tStd!: Float64Array;
  #targets!: number;

  constructor(card: ModelCard) {
    this.use(card);
  }

  /** Take another card's scaling (a hot-reloaded model). */
  use(card: ModelCard): void {
    const f = card.features.length;
    const t = card.targets.length;
    this.#targets = t;
    this.#fMean = Float64Array.from(card.scaler?.features.mean ?? new Array<number>(f).fill(0));
    this.#fStd = Float64Array.from(card.scaler?.features.std ?? new Array<number>(f).fill(1));
    this.#tMean = Float64Array.from(card.scaler?.targets.mean ?? new Array<number>(t).fill(0));
    this.#tStd = Float64Array.from(card.scaler?.targets.std ?? new Array<number>(t).fill(1));
  }

  /** Raw feature values (card order) to the model's input vector. */
  scaleFeatures(raw: ArrayLike<number>, into = new Float32Array(raw.length)): Float32Array {
    for (let i = 0; i < raw.length; i++) into[i] = (raw[i]! - this.#fMean[i]!) / this.#fStd[i]!;
    return into;
  }

  /** A horizon-major model output to physical units: out[h·targets + k] is target k at horizon h. */
  unscaleOutput(output: ArrayLike<number>): Float64Array {
    const res = new Float64Array(output.length);
    for (let j = 0; j < output.length; j++) {
      const k = j % this.#targets;
      res[j] = output[j]! * this.#tStd[k]! + this.#tMean[k]!;
    }
    return res;
  }
}
