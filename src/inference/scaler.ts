import type { ModelCard } from './card.js';
import type { InputReader } from './step-request.js';

/**
 * Input standardisation from a model card (outputs are read by OutputHead).
 * Without a scaler in the card, values pass through unchanged.
 */
export class CardScaler {
  #fMean!: Float64Array;
  #fStd!: Float64Array;
  /** The reader `readerFor` made last, and for which features. */
  #reader: { features: readonly string[]; reader: InputReader } | null = null;

  constructor(card: ModelCard) {
    this.use(card);
  }

  /** Take another card's scaling (a hot-reloaded model). */
  use(card: ModelCard): void {
    const f = card.features.length;
    this.#fMean = Float64Array.from(card.scaler?.features.mean ?? new Array<number>(f).fill(0));
    this.#fStd = Float64Array.from(card.scaler?.features.std ?? new Array<number>(f).fill(1));
  }

  /**
   * An engine input reader (`InferenceEngine.submitRead`): a step's physical
   * values, read by feature name in card order, scaled in float64 into the
   * batch tensor. One per features array, kept.
   */
  readerFor(features: readonly string[]): InputReader {
    if (this.#reader?.features === features) return this.#reader.reader;
    const reader: InputReader = {
      read: (values, into, at) => {
        const named = values as Readonly<Record<string, number>>;
        for (let i = 0; i < features.length; i++) into[at + i] = this.#scale(i, named[features[i]!]!);
      },
    };
    this.#reader = { features, reader };
    return reader;
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
