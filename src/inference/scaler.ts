import type { ModelCard } from './card.js';

/**
 * Input standardisation from a model card (outputs are read by OutputHead).
 * Without a scaler in the card, values pass through unchanged.
 */
export class CardScaler {
  #fMean!: Float64Array;
  #fStd!: Float64Array;

  constructor(card: ModelCard) {
    this.use(card);
  }

  /** Take another card's scaling (a hot-reloaded model). */
  use(card: ModelCard): void {
    const f = card.features.length;
    this.#fMean = Float64Array.from(card.scaler?.features.mean ?? new Array<number>(f).fill(0));
    this.#fStd = Float64Array.from(card.scaler?.features.std ?? new Array<number>(f).fill(1));
  }

  /** A step's physical values, read by feature name in card order, to the model's input vector (scaled in float64). */
  scaleNamed(values: Readonly<Record<string, number>>, features: readonly string[]): Float32Array {
    const into = new Float32Array(features.length);
    for (let i = 0; i < features.length; i++) into[i] = this.#scale(i, values[features[i]!]!);
    return into;
  }

  /** Raw feature values (card order) to the model's input vector. */
  scaleFeatures(raw: ArrayLike<number>, into = new Float32Array(raw.length)): Float32Array {
    for (let i = 0; i < raw.length; i++) into[i] = this.#scale(i, raw[i]!);
    return into;
  }

  /** Feature i's physical value, standardised (in float64, before the float32 store). */
  #scale(i: number, value: number): number {
    return (value - this.#fMean[i]!) / this.#fStd[i]!;
  }
}
