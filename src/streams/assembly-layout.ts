/**
 * Where a step assembler keeps what in its typed arrays: shared by the
 * assembler (`step-assembler.ts`), its ring of recent buckets
 * (`recent-buckets.ts`) and its checkpoint codec (`assembly-codec.ts`).
 */

/** Per feature of an open bucket: samples, sum, min, max, last value and its event time. */
export const AGG = 6;
export const N = 0;
export const SUM = 1;
export const MIN = 2;
export const MAX = 3;
export const LAST = 4;
export const LAST_TS = 5;

/** An open bucket: its start, each feature's aggregate, and the sample keys when a feature has more than one sample. */
export interface Bucket {
  readonly start: number;
  /** Features × AGG. A feature with one sample is its own key (feature, LAST_TS). */
  readonly agg: Float64Array;
  /** Distinct samples taken. */
  count: number;
  /** Keys `${feature index}@${ts}` of the features with two or more samples (rare: created on demand). */
  multi: Set<string> | null;
}

/** How many closed buckets a stream remembers the sample keys of: a repeat is a duplicate, not a late sample. */
export const RECENT_BUCKETS = 8;

/**
 * A stream's record, one slot of the assembler's slab, holds back to back:
 * the next bucket to emit (NaN: no sample yet), the watermark, the last
 * emitted bucket (NaN: none), the head of the ring of recent buckets, each
 * feature's last value and its bucket (NaN: none), and the starts of that
 * ring of the last RECENT_BUCKETS closed buckets (NaN: none; the rest of the
 * ring is `RecentBuckets`'). Open buckets and the rare sample-key sets live
 * in arrays by slot, only for the streams that have them.
 */
export const NEXT = 0;
export const WATERMARK = 1;
export const EMITTED = 2;
export const HEAD = 3;
export const FIXED = 4;

/** Offsets in a stream's record for a number of features (see the record above). */
export class AssemblyLayout {
  /** Each feature's last value. */
  readonly lastValue: number;
  /** The bucket of each feature's last value. */
  readonly lastBucket: number;
  /** The starts of the ring of recent buckets. */
  readonly recent: number;
  /** The record's length. */
  readonly width: number;

  constructor(features: number) {
    this.lastValue = FIXED;
    this.lastBucket = FIXED + features;
    this.recent = FIXED + 2 * features;
    this.width = this.recent + RECENT_BUCKETS;
  }
}
