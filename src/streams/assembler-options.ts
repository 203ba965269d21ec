/** How the samples of one feature inside a step are combined. */
export type Aggregation = 'mean' | 'last' | 'sum' | 'min' | 'max';

/** How a step assembler resamples its streams: a route's `resample` settings, with its models' features and step. */
export interface AssemblerOptions {
  /** Features of a step, in any order (the models pick theirs by name). */
  readonly features: readonly string[];
  /** The models' step interval, ms. Buckets are [t, t + step) aligned to the epoch. */
  readonly stepMs: number;
  readonly aggregate: (feature: string) => Aggregation;
  /** How long after a bucket's end (in event time, or wall time with `wallClock`) samples for it are still taken. */
  readonly latenessMs: number;
  /** `complete`: a step fires as soon as every feature of its bucket has a sample; `close`: only when the bucket closes. */
  readonly emit: 'complete' | 'close';
  /** Also close buckets when the wall clock passes their end plus the lateness (live streams). */
  readonly wallClock: boolean;
  /** A missing feature takes its last value for at most this many steps; beyond, the step is skipped. */
  readonly maxFillSteps: number;
  /** More steps than this without an emitted step reset the stream's state. */
  readonly maxGapSteps: number;
  /** Most distinct samples one step of one stream takes (bounds the memory a stream can claim); default 10000. */
  readonly maxSamplesPerStep?: number;
}
