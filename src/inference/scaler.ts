import { calendarValue, type CalendarInput } from './calendar.js';
import type { ModelCard } from './card.js';
import type { InputReader } from './step-request.js';

/**
 * A model's input from a model card: each feature standardised, then the
 * card's calendar inputs of the step's event time (unscaled). Without a
 * scaler in the card, values pass through unchanged. (Outputs are read by
 * OutputHead.)
 */
export class CardScaler {
  #fMean!: Float64Array;
  #fStd!: Float64Array;
  #calendar: readonly CalendarInput[] = [];
  /** The reader `readerFor` made last, and for which features and event time. */
  #reader: { features: readonly string[]; timeOf: unknown; calendar: readonly CalendarInput[]; reader: InputReader<never> } | null = null;

  constructor(card: ModelCard) {
    this.use(card);
  }

  /** Take another card's scaling (a hot-reloaded model). */
  use(card: ModelCard): void {
    const f = card.features.length;
    this.#fMean = Float64Array.from(card.scaler?.features.mean ?? new Array<number>(f).fill(0));
    this.#fStd = Float64Array.from(card.scaler?.features.std ?? new Array<number>(f).fill(1));
    this.#calendar = card.calendar ?? [];
  }

  /**
   * An engine input reader (`InferenceEngine.submitRead`): a step's physical
   * values, read by feature name in card order, scaled in float64 into the
   * batch tensor, then the calendar inputs of the step's event time
   * (`timeOf` its context). One per features array and card, kept.
   */
  readerFor<C>(features: readonly string[], timeOf: (context: C | undefined) => number): InputReader<C> {
    const cached = this.#reader;
    if (cached?.features === features && cached.timeOf === timeOf && cached.calendar === this.#calendar) return cached.reader as InputReader<C>;
    const calendar = this.#calendar;
    const F = features.length;
    const reader: InputReader<C> = {
      read: (values, into, at, context) => {
        const named = values as Readonly<Record<string, number>>;
        for (let i = 0; i < F; i++) into[at + i] = this.#scale(i, named[features[i]!]!);
        if (calendar.length === 0) return;
        const ts = timeOf(context);
        for (let k = 0; k < calendar.length; k++) into[at + F + k] = calendarValue(calendar[k]!, ts);
      },
    };
    this.#reader = { features, timeOf, calendar, reader: reader as InputReader<never> };
    return reader;
  }

  /** Raw feature values (card order) of a step at event time `ts` to the model's input vector (features, then calendar inputs). */
  scaleInputs(raw: ArrayLike<number>, ts: number, into = new Float32Array(raw.length + this.#calendar.length)): Float32Array {
    for (let i = 0; i < raw.length; i++) into[i] = this.#scale(i, raw[i]!);
    for (let k = 0; k < this.#calendar.length; k++) into[raw.length + k] = calendarValue(this.#calendar[k]!, ts);
    return into;
  }

  /** Feature i's physical value, standardised (in float64, before the float32 store). */
  #scale(i: number, value: number): number {
    return (value - this.#fMean[i]!) / this.#fStd[i]!;
  }
}
