/** The rows the store writes and reads, shared by the data path and the readers. */

/**
 * A slot of a slot index as one number: the index's key × 2^32 + the slot
 * (exact below 2^53). With the slot's generation, it names where the main
 * thread holds a stream; the writer thread keeps its stream ids by the two,
 * so a row that carries them needs no lookup by name.
 */
export function streamRef(indexKey: number, slot: number): number {
  return indexKey * REF_SLOTS + slot;
}

/** A `streamRef`'s index key and slot. */
export function streamRefParts(ref: number): [indexKey: number, slot: number] {
  const key = Math.floor(ref / REF_SLOTS);
  return [key, ref - key * REF_SLOTS];
}

const REF_SLOTS = 2 ** 32;

/** A step a model consumed: the actuals, in physical units. */
export interface StepRow {
  readonly stream: string;
  /** The stream's slot (`streamRef`) and its generation, when the row comes from the data path. */
  readonly ref?: number;
  readonly gen?: number;
  readonly route: string;
  readonly ts: number;
  readonly receivedAt: number;
  /** The route group's features: `values` is stored in this order (the same array every time). */
  readonly features: readonly string[];
  readonly values: Readonly<Record<string, number>>;
  /** Features forward-filled from an earlier step (not scored as actuals). */
  readonly filled: readonly string[];
}

/** One forecast: every cell of the model's layout, for one stream and issue step. */
export interface ForecastRow {
  readonly stream: string;
  readonly ref?: number;
  readonly gen?: number;
  readonly issuedAt: number;
  /** One value per layout cell (a classification cell: the probability of its label). */
  readonly values: readonly number[];
  /** Classification models: per cell, null or [label, every label's probability]. */
  readonly labels: ReadonlyArray<readonly [string, Readonly<Record<string, number>>] | null> | null;
  /** Prediction intervals: per cell, per level of the layout, lower and upper (NaN for a classification cell); absent without intervals. */
  bounds?: Float64Array;
}

export interface DeadLetterRow {
  /** The stream, when the topic matched a route and gave one. */
  readonly stream?: string;
  readonly receivedAt: number;
  readonly topic: string;
  readonly reason: string;
  readonly detail: string;
  readonly payload: Buffer;
  readonly payloadBytes: number;
  /** Log position of the message, for rows written from the replayable data path. */
  readonly seq?: number;
}

export interface EventRow {
  readonly at: number;
  readonly stream: string | null;
  readonly model: string | null;
  readonly kind: string;
  readonly detail: string;
  /** Log position of the message that caused it (data-path events); null for others. */
  readonly seq?: number | null;
}

/** One model's state of a stream, as checkpointed. */
export interface ModelStateRow {
  readonly model: string;
  readonly fingerprint: string;
  readonly state: Buffer;
  readonly filled: number;
  /** Forecasts still waiting for their actuals (the score book's ring), when any. */
  readonly pending?: Buffer | null;
}

/** A stream's checkpointed state: its step assembly and each model's state. */
export interface StreamStateRow {
  readonly group: string;
  readonly stream: string;
  readonly resident: boolean;
  readonly lastActive: number;
  /** The step assembly: binary, or JSON (streams with several samples of a feature in one step, and checkpoints of earlier versions). */
  readonly assembler: string | Buffer;
  /** The log position the state reflects: every input up to it, none after (0: checkpoints before schema 9). */
  readonly seq?: number;
  readonly models: readonly ModelStateRow[];
}

/** What a checkpoint remembers of a stream it wrote, once the row is packed. */
export type CheckpointedStream = Pick<StreamStateRow, 'group' | 'stream' | 'resident'>;

/** A prediction as `tidecast query` shows it (a row of the `predictions` view). */
export interface StoredPrediction {
  readonly stream: string;
  readonly model: string;
  readonly issuedAt: number;
  readonly horizon: number;
  readonly target: string;
  readonly targetTime: number;
  readonly value: number;
  readonly label: string | null;
  readonly probabilities: string | null;
  readonly createdAt: number;
}

/** Summed errors of one stream × model × horizon × target over one time bucket, not yet stored. */
export interface AccuracyDelta {
  readonly stream: string;
  readonly model: string;
  readonly horizon: number;
  readonly target: string;
  readonly bucket: number;
  readonly n: number;
  readonly sumAbs: number;
  readonly sumSq: number;
  readonly sumErr: number;
  readonly sumPAbs: number;
  readonly lastTargetTime: number;
}
