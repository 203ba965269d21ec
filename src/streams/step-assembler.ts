import { DecodeError } from './decoder.js';

/** How the samples of one feature inside a step are combined. */
export type Aggregation = 'mean' | 'last' | 'sum' | 'min' | 'max';

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

/** What the assembler hands on, in event-time order per stream. */
export type AssembledEvent =
  | { kind: 'step'; stream: string; ts: number; values: Record<string, number>; filled: string[] }
  | { kind: 'skip'; stream: string; ts: number; missing: string[] }
  | { kind: 'gap'; stream: string; ts: number; steps: number };

interface FeatureAgg { n: number; sum: number; min: number; max: number; last: number; lastTs: number }

interface Bucket {
  readonly aggs: Map<string, FeatureAgg>;
  readonly keys: Set<string>;
}

interface StreamState {
  /** Start of the next bucket to emit; buckets before it are closed. */
  next: number;
  /** Largest event time seen. */
  watermark: number;
  readonly open: Map<number, Bucket>;
  /** Sample keys of recently closed buckets: a repeat is a duplicate, not a late sample. */
  readonly recent: Array<{ start: number; keys: Set<string> }>;
  readonly lastValue: Map<string, { value: number; bucket: number }>;
  /** Start of the last bucket emitted as a step (null before the first). */
  lastEmitted: number | null;
}

const RECENT_BUCKETS = 8;

/** A stream's state in a checkpoint: compact arrays, numbers round-trip exactly through JSON. */
interface StreamSnapshot {
  n: number;
  w: number;
  e: number | null;
  o: Array<[number, Array<[string, number, number, number, number, number, number]>, string[]]>;
  r: Array<[number, string[]]>;
  l: Array<[string, number, number]>;
}

function aggValue(a: FeatureAgg, how: Aggregation): number {
  switch (how) {
    case 'mean':
      return a.sum / a.n;
    case 'sum':
      return a.sum;
    case 'min':
      return a.min;
    case 'max':
      return a.max;
    case 'last':
      return a.last;
  }
}

/**
 * Resamples each stream's samples (one feature, one event time each) into one
 * vector per model step. Samples go to the bucket [t, t + step) of their event
 * time; a bucket closes when the stream's event time (or, with `wallClock`, the
 * clock) passes its end plus the allowed lateness, and fires earlier in
 * `complete` mode once every feature is present. Steps leave in time order;
 * a sample for a closed bucket is `late` (a DecodeError), a repeated sample
 * (same feature and time) changes nothing. Missing features are forward-filled
 * up to `maxFillSteps`, longer gaps skip steps, and more than `maxGapSteps`
 * steps without a step yield a `gap` event before the next step, on which the
 * caller resets the stream's recurrent state.
 */
export class StepAssembler {
  readonly #o: AssemblerOptions;
  readonly #streams = new Map<string, StreamState>();
  /** Samples ignored as repeats. */
  duplicates = 0;

  constructor(options: AssemblerOptions) {
    if (!(options.stepMs > 0)) throw new RangeError('stepMs must be positive');
    this.#o = options;
  }

  bucketOf(ts: number): number {
    return Math.floor(ts / this.#o.stepMs) * this.#o.stepMs;
  }

  /**
   * Add one sample; returns the events it releases (possibly none).
   * Throws DecodeError('late') for a sample whose bucket has closed.
   */
  add(stream: string, feature: string, ts: number, value: number): AssembledEvent[] {
    const start = this.bucketOf(ts);
    let s = this.#streams.get(stream);
    if (!s) {
      s = { next: start, watermark: ts, open: new Map(), recent: [], lastValue: new Map(), lastEmitted: null };
      this.#streams.set(stream, s);
    }
    const key = `${feature}@${ts}`;
    if (start < s.next) {
      if (s.recent.some((r) => r.start === start && r.keys.has(key))) {
        this.duplicates++;
        return [];
      }
      throw new DecodeError('late', `${feature} at ${new Date(ts).toISOString()} is for a closed step (the stream is at ${new Date(s.next).toISOString()}, lateness ${this.#o.latenessMs} ms)`);
    }
    let bucket = s.open.get(start);
    if (!bucket) {
      bucket = { aggs: new Map(), keys: new Set() };
      s.open.set(start, bucket);
    }
    if (bucket.keys.has(key)) {
      this.duplicates++;
      return [];
    }
    const cap = this.#o.maxSamplesPerStep ?? 10_000;
    if (bucket.keys.size >= cap) {
      throw new DecodeError('too_many_samples', `the step at ${new Date(start).toISOString()} already holds ${cap} samples (limits.maxSamplesPerStep)`);
    }
    bucket.keys.add(key);
    const a = bucket.aggs.get(feature);
    if (!a) bucket.aggs.set(feature, { n: 1, sum: value, min: value, max: value, last: value, lastTs: ts });
    else {
      a.n++;
      a.sum += value;
      a.min = Math.min(a.min, value);
      a.max = Math.max(a.max, value);
      if (ts >= a.lastTs) {
        a.last = value;
        a.lastTs = ts;
      }
    }
    if (ts > s.watermark) s.watermark = ts;
    return this.#drain(stream, s, s.watermark);
  }

  /** Whether the clock closes steps (`wallClock`). */
  get wallClock(): boolean {
    return this.#o.wallClock;
  }

  /** Forget a stream (evicted after idling; export it first). */
  release(stream: string): void {
    this.#streams.delete(stream);
  }

  /** A stream's assembly state as JSON (for checkpoints); undefined when unknown. */
  exportStream(stream: string): string | undefined {
    const s = this.#streams.get(stream);
    if (!s) return undefined;
    const keys = (k: Set<string>): string[] => [...k];
    const snap: StreamSnapshot = {
      n: s.next,
      w: s.watermark,
      e: s.lastEmitted,
      o: [...s.open].map(([start, b]) => [start, [...b.aggs].map(([f, a]) => [f, a.n, a.sum, a.min, a.max, a.last, a.lastTs]), keys(b.keys)]),
      r: s.recent.map((r) => [r.start, keys(r.keys)]),
      l: [...s.lastValue].map(([f, v]) => [f, v.value, v.bucket]),
    };
    return JSON.stringify(snap);
  }

  /** Restore a stream from `exportStream`'s JSON. */
  importStream(stream: string, json: string): void {
    const snap = JSON.parse(json) as StreamSnapshot;
    this.#streams.set(stream, {
      next: snap.n,
      watermark: snap.w,
      lastEmitted: snap.e,
      open: new Map(
        snap.o.map(([start, aggs, keys]) => [
          start,
          { aggs: new Map(aggs.map(([f, n, sum, min, max, last, lastTs]) => [f, { n, sum, min, max, last, lastTs }])), keys: new Set(keys) },
        ]),
      ),
      recent: snap.r.map(([start, keys]) => ({ start, keys: new Set(keys) })),
      lastValue: new Map(snap.l.map(([f, value, bucket]) => [f, { value, bucket }])),
    });
  }

  /** Whether `sweep(nowMs)` would close a step of some stream (so the tick is worth logging). */
  due(nowMs: number): boolean {
    if (!this.#o.wallClock) return false;
    const span = this.#o.stepMs + this.#o.latenessMs;
    for (const s of this.#streams.values()) if (s.next + span <= Math.max(s.watermark, nowMs)) return true;
    return false;
  }

  /** Close buckets the wall clock has passed (only with `wallClock`); call periodically. */
  sweep(nowMs: number): AssembledEvent[] {
    if (!this.#o.wallClock) return [];
    const out: AssembledEvent[] = [];
    for (const [stream, s] of this.#streams) out.push(...this.#drain(stream, s, Math.max(s.watermark, nowMs)));
    return out;
  }

  #complete(b: Bucket | undefined): boolean {
    return b !== undefined && this.#o.features.every((f) => b.aggs.has(f));
  }

  /** Emit, in order, every bucket that is closed by `limit` (or complete, in complete mode). */
  #drain(stream: string, s: StreamState, limit: number): AssembledEvent[] {
    const { stepMs, latenessMs } = this.#o;
    const out: AssembledEvent[] = [];
    for (;;) {
      const b = s.next;
      const bucket = s.open.get(b);
      const closed = b + stepMs + latenessMs <= limit;
      if (!closed && !(this.#o.emit === 'complete' && this.#complete(bucket))) break;
      if (!bucket) {
        // A closed step without samples: forward-fill it while every feature's last
        // value is recent enough; otherwise jump to the next step that has samples
        // (or as far as `limit` closes). The gap check on the next emitted step
        // decides whether the stream starts over.
        const fill = this.#fillFrom(s, b, new Map());
        if (fill) {
          this.#emit(stream, s, b, fill.values, fill.filled, out);
          s.next = b + stepMs;
        } else {
          const nextOpen = Math.min(...[...s.open.keys()].filter((k) => k > b));
          const firstOpenByLimit = this.bucketOf(limit - latenessMs - stepMs) + stepMs;
          s.next = Math.max(b + stepMs, Math.min(nextOpen, firstOpenByLimit));
        }
        continue;
      }
      const aggs = bucket.aggs;
      const present = new Map<string, number>();
      for (const [f, a] of aggs) present.set(f, aggValue(a, this.#o.aggregate(f)));
      const fill = this.#fillFrom(s, b, present);
      if (fill) this.#emit(stream, s, b, fill.values, fill.filled, out);
      else out.push({ kind: 'skip', stream, ts: b, missing: this.#o.features.filter((f) => !present.has(f)) });
      for (const [f, v] of present) s.lastValue.set(f, { value: v, bucket: b });
      s.recent.push({ start: b, keys: bucket.keys });
      if (s.recent.length > RECENT_BUCKETS) s.recent.shift();
      s.open.delete(b);
      s.next = b + stepMs;
    }
    return out;
  }

  /** The step's values with missing features forward-filled, or null when one cannot be filled. */
  #fillFrom(s: StreamState, b: number, present: Map<string, number>): { values: Record<string, number>; filled: string[] } | null {
    const values: Record<string, number> = {};
    const filled: string[] = [];
    for (const f of this.#o.features) {
      const v = present.get(f);
      if (v !== undefined) {
        values[f] = v;
        continue;
      }
      const last = s.lastValue.get(f);
      if (!last || (b - last.bucket) / this.#o.stepMs > this.#o.maxFillSteps) return null;
      values[f] = last.value;
      filled.push(f);
    }
    return { values, filled };
  }

  #emit(stream: string, s: StreamState, b: number, values: Record<string, number>, filled: string[], out: AssembledEvent[]): void {
    if (s.lastEmitted !== null) {
      const missed = (b - s.lastEmitted) / this.#o.stepMs - 1;
      if (missed > this.#o.maxGapSteps) out.push({ kind: 'gap', stream, ts: b, steps: missed });
    }
    s.lastEmitted = b;
    out.push({ kind: 'step', stream, ts: b, values, filled });
  }
}
