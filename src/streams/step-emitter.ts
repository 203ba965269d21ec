import type { Slab } from '../slots.js';
import type { Aggregation, AssemblerOptions } from './assembler-options.js';
import * as assemblyLayout from './assembly-layout.js';
import type { AssemblyLayout, Bucket } from './assembly-layout.js';
import type { RecentBuckets } from './recent-buckets.js';

/** The layout's constants as this module's own, for the optimized code (see `step-assembler.ts`). */
const { AGG, N, SUM, MIN, MAX, LAST, LAST_TS, NEXT, EMITTED } = assemblyLayout;

/** What the assembler hands on, in event-time order per stream. */
export type AssembledEvent =
  /** `slot`: the stream's slot in the assembler's index (`slots`). */
  | { kind: 'step'; stream: string; slot: number; ts: number; values: Record<string, number>; filled: string[] }
  | { kind: 'skip'; stream: string; ts: number; missing: string[] }
  | { kind: 'gap'; stream: string; ts: number; steps: number };

/** A step, as the assembler hands it on. */
export type AssembledStep = Extract<AssembledEvent, { kind: 'step' }>;

/** The shared result of a sample that releases nothing (callers only read it). */
export const NOTHING: AssembledEvent[] = [];

/** The assembler's tables a stream's steps are emitted from. */
export interface EmitterTables {
  readonly options: AssemblerOptions;
  readonly features: readonly string[];
  /** Each feature's aggregation, by index in `features`. */
  readonly how: readonly Aggregation[];
  readonly layout: AssemblyLayout;
  /** The streams' records (see `assembly-layout.ts`). */
  readonly records: Slab<Float64Array>;
  /** Open buckets by slot, in start order (undefined: none). */
  readonly open: Array<Bucket[] | undefined>;
  /** Aggregate arrays of closed buckets, reused by new ones. */
  readonly pool: Float64Array[];
  readonly recent: RecentBuckets;
}

/**
 * Emits a stream's steps from its buckets: each bucket, in time order, once
 * the stream's watermark (or the clock) has passed its end plus the lateness,
 * or in `complete` mode once every feature is present. Missing features are
 * forward-filled up to `maxFillSteps`, otherwise the step is skipped; empty
 * buckets are filled or jumped over, and more than `maxGapSteps` steps since
 * the last emitted one yield a `gap` before the next step. A closed bucket's
 * sample keys go to the ring of recent buckets, its aggregates back to the pool.
 */
export class StepEmitter {
  readonly #o: AssemblerOptions;
  readonly #f: Slab<Float64Array>;
  readonly #open: Array<Bucket[] | undefined>;
  readonly #pool: Float64Array[];
  readonly #ring: RecentBuckets;
  readonly #features: readonly string[];
  readonly #how: readonly Aggregation[];
  /** Offsets in a stream's record. */
  readonly #lastValue: number;
  readonly #lastBucket: number;

  constructor(tables: EmitterTables) {
    this.#o = tables.options;
    this.#f = tables.records;
    this.#open = tables.open;
    this.#pool = tables.pool;
    this.#ring = tables.recent;
    this.#features = tables.features;
    this.#how = tables.how;
    this.#lastValue = tables.layout.lastValue;
    this.#lastBucket = tables.layout.lastBucket;
  }

  /** The start of the bucket [t, t + step) that holds an event time. */
  bucketOf(ts: number): number {
    return Math.floor(ts / this.#o.stepMs) * this.#o.stepMs;
  }

  /** Emit, in order, every bucket that is closed by `limit` (or complete, in complete mode). */
  drain(stream: string, slot: number, limit: number): AssembledEvent[] {
    const { stepMs, latenessMs } = this.#o;
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    let out = NOTHING;
    for (;;) {
      const b = f[o + NEXT]!;
      const open = this.#open[slot];
      const bucket = open !== undefined && open[0]!.start === b ? open[0] : undefined;
      const closed = b + stepMs + latenessMs <= limit;
      if (!closed && !(this.#o.emit === 'complete' && this.#complete(bucket))) break;
      if (out === NOTHING) out = [];
      if (!bucket) {
        // A closed step without samples: forward-fill it while every feature's last
        // value is recent enough; otherwise jump to the next step that has samples
        // (or as far as `limit` closes). The gap check on the next emitted step
        // decides whether the stream starts over.
        const fill = this.#fillFrom(f, o, b, null);
        if (fill) {
          this.#emit(stream, slot, f, o, b, fill.values, fill.filled, out);
          f[o + NEXT] = b + stepMs;
        } else {
          const nextOpen = open?.find((x) => x.start > b)?.start ?? Infinity;
          const firstOpenByLimit = this.bucketOf(limit - latenessMs - stepMs) + stepMs;
          f[o + NEXT] = Math.max(b + stepMs, Math.min(nextOpen, firstOpenByLimit));
        }
        continue;
      }
      const fill = this.#fillFrom(f, o, b, bucket.agg);
      if (fill) this.#emit(stream, slot, f, o, b, fill.values, fill.filled, out);
      else out.push({ kind: 'skip', stream, ts: b, missing: this.#features.filter((_, fi) => bucket.agg[fi * AGG + N] === 0) });
      const a = bucket.agg;
      for (let fi = 0; fi < this.#features.length; fi++) {
        if (a[fi * AGG + N] === 0) continue;
        f[o + this.#lastValue + fi] = this.#value(a, fi);
        f[o + this.#lastBucket + fi] = b;
      }
      if (bucket.multi === null && this.#ring.keyless(slot)) this.#ring.rememberSingles(slot, f, o, b, a);
      else {
        this.#ring.remember(slot, b, (fi) => {
          const n = a[fi * AGG + N]!;
          if (n === 0) return [];
          if (n === 1) return [a[fi * AGG + LAST_TS]!];
          const prefix = `${fi}@`;
          return [...bucket.multi!].filter((k) => k.startsWith(prefix)).map((k) => Number(k.slice(prefix.length)));
        });
      }
      open!.shift();
      if (open!.length === 0) this.#open[slot] = undefined;
      this.#pool.push(a);
      f[o + NEXT] = b + stepMs;
    }
    return out;
  }

  #complete(b: Bucket | undefined): boolean {
    if (!b) return false;
    for (let fi = 0; fi < this.#features.length; fi++) if (b.agg[fi * AGG + N] === 0) return false;
    return true;
  }

  #value(a: Float64Array, fi: number): number {
    const o = fi * AGG;
    switch (this.#how[fi]!) {
      case 'mean':
        return a[o + SUM]! / a[o + N]!;
      case 'sum':
        return a[o + SUM]!;
      case 'min':
        return a[o + MIN]!;
      case 'max':
        return a[o + MAX]!;
      case 'last':
        return a[o + LAST]!;
    }
  }

  /** The step's values with missing features forward-filled, or null when one cannot be filled. */
  #fillFrom(f: Float64Array, o: number, b: number, agg: Float64Array | null): { values: Record<string, number>; filled: string[] } | null {
    const values: Record<string, number> = {};
    let filled: string[] | null = null;
    for (let fi = 0; fi < this.#features.length; fi++) {
      const name = this.#features[fi]!;
      if (agg && agg[fi * AGG + N]! > 0) {
        values[name] = this.#value(agg, fi);
        continue;
      }
      const bucket = f[o + this.#lastBucket + fi]!;
      if (Number.isNaN(bucket) || (b - bucket) / this.#o.stepMs > this.#o.maxFillSteps) return null;
      values[name] = f[o + this.#lastValue + fi]!;
      (filled ??= []).push(name);
    }
    return { values, filled: filled ?? [] };
  }

  #emit(stream: string, slot: number, f: Float64Array, o: number, b: number, values: Record<string, number>, filled: string[], out: AssembledEvent[]): void {
    const last = f[o + EMITTED]!;
    if (!Number.isNaN(last)) {
      const missed = (b - last) / this.#o.stepMs - 1;
      if (missed > this.#o.maxGapSteps) out.push({ kind: 'gap', stream, ts: b, steps: missed });
    }
    f[o + EMITTED] = b;
    out.push({ kind: 'step', stream, slot, ts: b, values, filled });
  }
}
