import { DecodeError } from './decoder.js';
import { Slab, SlotIndex } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { AssemblerOptions } from './assembler-options.js';
import * as assemblyLayout from './assembly-layout.js';
import { AssemblyLayout, type Bucket } from './assembly-layout.js';
import { AssemblyCodec } from './assembly-codec.js';
import { RecentBuckets } from './recent-buckets.js';
import { NOTHING, StepEmitter, type AssembledEvent } from './step-emitter.js';

export type { Aggregation, AssemblerOptions } from './assembler-options.js';
export type { AssembledEvent, AssembledStep } from './step-emitter.js';

/**
 * The layout's constants as this module's own: V8 (Node 20) reads an imported
 * binding through its module cell at every use in optimized code, where a
 * module's own `const` is folded in (`addAt` took 10% longer per sample with
 * the imports: 10,000 streams × 3 features, 60 steps).
 */
const { AGG, N, SUM, MIN, MAX, LAST, LAST_TS, NEXT, WATERMARK, HEAD } = assemblyLayout;

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
 *
 * Streams are slots of one Float64Array slab (see `slots.ts`): a stream costs
 * its record and one map entry, and its slot also indexes the caller's own
 * per-stream columns (`slotOf`). The assembler takes samples into buckets;
 * `StepEmitter` turns closed buckets into steps, `RecentBuckets` remembers
 * the last closed ones' samples and `AssemblyCodec` checkpoints a stream.
 */
export class StepAssembler {
  readonly #o: AssemblerOptions;
  readonly #slots = new SlotIndex();
  readonly #f: Slab<Float64Array>;
  /**
   * Open buckets by slot, in start order (undefined: none, the usual state
   * between steps). An array by slot, not a Map: a stream opens and closes a
   * bucket with nearly every step, and a Map's table would be rebuilt as often.
   */
  readonly #open: Array<Bucket[] | undefined> = [];
  /** The sample keys of each stream's last closed buckets. */
  readonly #ring: RecentBuckets;
  readonly #emitter: StepEmitter;
  readonly #codec: AssemblyCodec;
  readonly #features: readonly string[];
  readonly #index = new Map<string, number>();
  /** Aggregate arrays of closed buckets, reused by new ones. */
  readonly #pool: Float64Array[] = [];
  /** Samples ignored as repeats. */
  duplicates = 0;

  constructor(options: AssemblerOptions) {
    if (!(options.stepMs > 0)) throw new TidecastError(ErrorCodes.INTERNAL, 'stepMs must be positive');
    this.#o = options;
    this.#features = [...options.features];
    this.#features.forEach((f, i) => this.#index.set(f, i));
    const how = this.#features.map((f) => options.aggregate(f));
    const layout = new AssemblyLayout(this.#features.length);
    this.#f = new Slab(layout.width, (n) => new Float64Array(n));
    this.#ring = new RecentBuckets(this.#f, layout, this.#features);
    const tables = { options, features: this.#features, index: this.#index, how, layout, records: this.#f, open: this.#open, pool: this.#pool, recent: this.#ring };
    this.#emitter = new StepEmitter(tables);
    this.#codec = new AssemblyCodec({ ...tables, fresh: (stream) => this.#fresh(stream) });
  }

  bucketOf(ts: number): number {
    return Math.floor(ts / this.#o.stepMs) * this.#o.stepMs;
  }

  /** Streams known. */
  get size(): number {
    return this.#slots.size;
  }

  /** The streams' slot index: other per-stream tables may share it (`SlotView`). */
  get slots(): SlotIndex {
    return this.#slots;
  }

  /** A known stream's slot (stable until `release`), for columns the caller keeps per stream. */
  slotOf(stream: string): number | undefined {
    return this.#slots.get(stream);
  }

  /** The stream a slot belongs to, as the assembler holds its name (see SlotIndex.nameOf). */
  nameOf(slot: number): string | undefined {
    return this.#slots.nameOf(slot);
  }

  /** Every known stream and its slot. */
  streams(): IterableIterator<[string, number]> {
    return this.#slots.entries();
  }

  /** Know a stream (without samples yet, unless known already); returns its slot. */
  join(stream: string): number {
    const known = this.#slots.get(stream);
    if (known !== undefined) return known;
    const slot = this.#slots.take(stream);
    this.#f.fill(slot, NaN);
    this.#f.chunk(slot)[this.#f.offset(slot) + HEAD] = 0;
    return slot;
  }

  /**
   * Add one sample; returns the events it releases (possibly none).
   * Throws DecodeError('late') for a sample whose bucket has closed.
   */
  add(stream: string, feature: string, ts: number, value: number): AssembledEvent[] {
    return this.addAt(this.join(stream), stream, feature, ts, value);
  }

  /** `add` for a stream whose slot the caller holds (`join`): one lookup per message, not one per feature. */
  addAt(slot: number, stream: string, feature: string, ts: number, value: number): AssembledEvent[] {
    const fi = this.#index.get(feature);
    if (fi === undefined) throw new DecodeError('unknown_feature', `"${feature}" is not a feature of the route's models (${this.#features.join(', ')})`);
    const start = this.bucketOf(ts);
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    if (Number.isNaN(f[o + NEXT]!)) {
      // The stream's first sample: its steps start at this one's bucket.
      f[o + NEXT] = start;
      f[o + WATERMARK] = ts;
    }
    if (start < f[o + NEXT]!) {
      if (this.#ring.has(slot, start, fi, ts)) {
        this.duplicates++;
        return NOTHING;
      }
      throw new DecodeError('late', `${feature} at ${new Date(ts).toISOString()} is for a closed step (the stream is at ${new Date(f[o + NEXT]!).toISOString()}, lateness ${this.#o.latenessMs} ms)`);
    }
    let open = this.#open[slot];
    let bucket: Bucket | undefined;
    let at = 0;
    if (open) {
      for (; at < open.length; at++) {
        const b = open[at]!;
        if (b.start === start) bucket = b;
        if (b.start >= start) break;
      }
    }
    const a0 = bucket?.agg;
    const o0 = fi * AGG;
    const n = a0 ? a0[o0 + N]! : 0;
    if (bucket && (n === 1 ? a0![o0 + LAST_TS] === ts : n > 1 && bucket.multi!.has(`${fi}@${ts}`))) {
      this.duplicates++;
      return NOTHING;
    }
    const cap = this.#o.maxSamplesPerStep ?? 10_000;
    if (bucket && bucket.count >= cap) {
      throw new DecodeError('too_many_samples', `the step at ${new Date(start).toISOString()} already holds ${cap} samples (limits.maxSamplesPerStep)`);
    }
    if (!bucket) {
      bucket = { start, agg: this.#pool.pop()?.fill(0) ?? new Float64Array(this.#features.length * AGG), count: 0, multi: null };
      if (open) open.splice(at, 0, bucket);
      else this.#open[slot] = open = [bucket];
    }
    const a = bucket.agg;
    bucket.count++;
    if (n === 0) {
      a[o0 + N] = 1;
      a[o0 + SUM] = value;
      a[o0 + MIN] = value;
      a[o0 + MAX] = value;
      a[o0 + LAST] = value;
      a[o0 + LAST_TS] = ts;
    } else {
      const multi = (bucket.multi ??= new Set());
      if (n === 1) multi.add(`${fi}@${a[o0 + LAST_TS]}`);
      multi.add(`${fi}@${ts}`);
      a[o0 + N] = n + 1;
      a[o0 + SUM] = a[o0 + SUM]! + value;
      if (value < a[o0 + MIN]!) a[o0 + MIN] = value;
      if (value > a[o0 + MAX]!) a[o0 + MAX] = value;
      if (ts >= a[o0 + LAST_TS]!) {
        a[o0 + LAST] = value;
        a[o0 + LAST_TS] = ts;
      }
    }
    if (ts > f[o + WATERMARK]!) f[o + WATERMARK] = ts;
    return this.#emitter.drain(stream, slot, f[o + WATERMARK]!);
  }

  /** Whether the clock closes steps (`wallClock`). */
  get wallClock(): boolean {
    return this.#o.wallClock;
  }

  /** Forget a stream (evicted after idling; export it first). */
  release(stream: string): void {
    const slot = this.#slots.release(stream);
    if (slot === undefined) return;
    for (const b of this.#open[slot] ?? []) this.#pool.push(b.agg);
    this.#open[slot] = undefined;
    this.#ring.forget(slot);
  }

  /**
   * A stream's assembly state for a checkpoint; undefined when unknown. Binary
   * (a copy of its arrays, a few µs) unless a step holds several samples of
   * one feature, whose keys only the JSON form carries.
   */
  exportStream(stream: string): string | Buffer | undefined {
    const slot = this.#slots.get(stream);
    if (slot === undefined) return undefined;
    return this.#codec.export(slot);
  }

  /**
   * Restore a stream from `exportStream` (binary, or JSON, also the JSON of
   * earlier versions). Throws when a binary state was saved for other features.
   */
  importStream(stream: string, saved: string | Buffer): void {
    this.#codec.import(stream, saved);
  }

  /** Whether `sweep(nowMs)` would close a step of some stream (so the tick is worth logging). */
  due(nowMs: number): boolean {
    if (!this.#o.wallClock) return false;
    const span = this.#o.stepMs + this.#o.latenessMs;
    for (const [, slot] of this.#slots.entries()) {
      const f = this.#f.chunk(slot);
      const o = this.#f.offset(slot);
      if (f[o + NEXT]! + span <= Math.max(f[o + WATERMARK]!, nowMs)) return true;
    }
    return false;
  }

  /** Close buckets the wall clock has passed (only with `wallClock`); call periodically. `skip`: streams to leave alone. */
  sweep(nowMs: number, skip?: (stream: string) => boolean): AssembledEvent[] {
    if (!this.#o.wallClock) return [];
    const out: AssembledEvent[] = [];
    for (const [stream, slot] of this.#slots.entries()) {
      if (skip?.(stream)) continue;
      const watermark = this.#f.chunk(slot)[this.#f.offset(slot) + WATERMARK]!;
      for (const e of this.#emitter.drain(stream, slot, Math.max(watermark, nowMs))) out.push(e);
    }
    return out;
  }

  /** A stream's slot, cleared (a restore replaces whatever it held). */
  #fresh(stream: string): number {
    this.release(stream);
    return this.join(stream);
  }
}
