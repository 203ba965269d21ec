import { DecodeError } from './decoder.js';
import { Slab, SlotIndex } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';

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
  /** `slot`: the stream's slot in the assembler's index (`slots`). */
  | { kind: 'step'; stream: string; slot: number; ts: number; values: Record<string, number>; filled: string[] }
  | { kind: 'skip'; stream: string; ts: number; missing: string[] }
  | { kind: 'gap'; stream: string; ts: number; steps: number };

/** A step, as the assembler hands it on. */
export type AssembledStep = Extract<AssembledEvent, { kind: 'step' }>;

/** Per feature of an open bucket: samples, sum, min, max, last value and its event time. */
const AGG = 6;
const N = 0;
const SUM = 1;
const MIN = 2;
const MAX = 3;
const LAST = 4;
const LAST_TS = 5;

/** An open bucket: its start, each feature's aggregate, and the sample keys when a feature has more than one sample. */
interface Bucket {
  readonly start: number;
  /** Features × AGG. A feature with one sample is its own key (feature, LAST_TS). */
  readonly agg: Float64Array;
  /** Distinct samples taken. */
  count: number;
  /** Keys `${feature index}@${ts}` of the features with two or more samples (rare: created on demand). */
  multi: Set<string> | null;
}

/** How many closed buckets a stream remembers the sample keys of: a repeat is a duplicate, not a late sample. */
const RECENT_BUCKETS = 8;

/**
 * A stream's record, one slot of the assembler's slab, holds back to back:
 * the next bucket to emit (NaN: no sample yet), the watermark, the last
 * emitted bucket (NaN: none), the head of the ring below, each feature's last
 * value and its bucket (NaN: none), and the starts of a ring of the last
 * RECENT_BUCKETS closed buckets (NaN: none). Per ring position and feature, a
 * second slab (Int32Array) holds the event time of the bucket's only sample
 * of that feature as an offset from the bucket's start (NONE: no sample;
 * SEVERAL: its keys are in `#recentMulti`, which also takes a lone sample
 * whose offset is not a whole number of ms below 2^31: exact either way).
 * Open buckets and the rare sample-key sets live in maps by slot, only for
 * the streams that have them.
 */
const NEXT = 0;
const WATERMARK = 1;
const EMITTED = 2;
const HEAD = 3;
const FIXED = 4;

/** A ring offset: the feature had no sample in that bucket. */
const NONE = -1;
/** A ring offset: the feature's samples' keys are in `#recentMulti`. */
const SEVERAL = -2;

/**
 * Version of the binary checkpoint layout. 2: the ring's offsets follow the
 * record as numbers. 1 (read too): the ring was in the record, per position
 * its start then per feature the sample's event time (NaN: none).
 */
const BINARY_VERSION = 2;
/** The binary layout's head: version, feature-set hash, open buckets, ring head; then NEXT, WATERMARK, EMITTED and the record from FIXED on. */
const BINARY_HEAD = 4;
const BINARY_FIXED = 3;

/** FNV-1a, 32 bits: exact in a float64. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The shared result of a sample that releases nothing (callers only read it). */
const NOTHING: AssembledEvent[] = [];

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
 * per-stream columns (`slotOf`).
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
  /** Per slot whose ring remembers a bucket with several samples of a feature: those keys, by ring position. */
  readonly #recentMulti: Array<Array<Set<string> | null> | undefined> = [];
  readonly #features: readonly string[];
  /** Tells a binary checkpoint made for these features (names and order) from one made for others. */
  readonly #featureHash: number;
  readonly #index = new Map<string, number>();
  readonly #how: readonly Aggregation[];
  /** Offsets in a stream's record. */
  readonly #lastValue: number;
  readonly #lastBucket: number;
  readonly #recent: number;
  /** Per slot, RECENT_BUCKETS × features ring offsets (see the record above). */
  readonly #t: Slab<Int32Array>;
  /** Aggregate arrays of closed buckets, reused by new ones. */
  readonly #pool: Float64Array[] = [];
  /** Samples ignored as repeats. */
  duplicates = 0;

  constructor(options: AssemblerOptions) {
    if (!(options.stepMs > 0)) throw new TidecastError(ErrorCodes.INTERNAL, 'stepMs must be positive');
    this.#o = options;
    this.#features = [...options.features];
    this.#features.forEach((f, i) => this.#index.set(f, i));
    this.#featureHash = hash(this.#features.join('\u0000'));
    this.#how = this.#features.map((f) => options.aggregate(f));
    const F = this.#features.length;
    this.#lastValue = FIXED;
    this.#lastBucket = FIXED + F;
    this.#recent = FIXED + 2 * F;
    this.#f = new Slab(this.#recent + RECENT_BUCKETS, (n) => new Float64Array(n));
    this.#t = new Slab(Math.max(1, RECENT_BUCKETS * F), (n) => new Int32Array(n));
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
      if (this.#recentHas(slot, start, fi, ts)) {
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
    return this.#drain(stream, slot, f[o + WATERMARK]!);
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
    this.#recentMulti[slot] = undefined;
  }

  /**
   * A stream's assembly state for a checkpoint; undefined when unknown. Binary
   * (a copy of its arrays, a few µs) unless a step holds several samples of
   * one feature, whose keys only the JSON form carries.
   */
  exportStream(stream: string): string | Buffer | undefined {
    const slot = this.#slots.get(stream);
    if (slot === undefined) return undefined;
    const open = this.#open[slot] ?? [];
    if (this.#recentMulti[slot] === undefined && open.every((b) => b.multi === null)) return this.#exportBinary(slot, open);
    return this.#exportJson(slot, open);
  }

  /** [BINARY_VERSION, feature-set hash, open buckets, ring head], the record (less its ring head), then per open bucket [start, count, aggregates]. */
  #exportBinary(slot: number, open: readonly Bucket[]): Buffer {
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    const record = this.#f.width - 1;
    const size = record + this.#t.width;
    const per = 2 + this.#features.length * AGG;
    const out = new Float64Array(BINARY_HEAD + size + open.length * per);
    out.set([BINARY_VERSION, this.#featureHash, open.length, f[o + HEAD]!]);
    out.set(f.subarray(o, o + BINARY_FIXED), BINARY_HEAD);
    out.set(f.subarray(o + FIXED, o + this.#f.width), BINARY_HEAD + BINARY_FIXED);
    const t = this.#t.offset(slot);
    out.set(this.#t.chunk(slot).subarray(t, t + this.#t.width), BINARY_HEAD + record);
    open.forEach((b, k) => {
      const at = BINARY_HEAD + size + k * per;
      out[at] = b.start;
      out[at + 1] = b.count;
      out.set(b.agg, at + 2);
    });
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  #importBinary(stream: string, saved: Buffer): void {
    const v = new Float64Array(saved.buffer.slice(saved.byteOffset, saved.byteOffset + saved.byteLength));
    if ((v[0] !== BINARY_VERSION && v[0] !== 1) || v[1] !== this.#featureHash) {
      throw new TidecastError(ErrorCodes.INTERNAL, `the saved step assembly of ${stream} was made for other features (${this.#features.join(', ')} now)`);
    }
    const F = this.#features.length;
    const slot = this.#fresh(stream);
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    // NEXT, WATERMARK, EMITTED, then each feature's last value and bucket: the same in both versions.
    const kept = BINARY_FIXED + 2 * F;
    f.set(v.subarray(BINARY_HEAD, BINARY_HEAD + kept), o);
    f.copyWithin(o + FIXED, o + BINARY_FIXED, o + kept);
    f[o + HEAD] = v[3]!;
    let size: number;
    if (v[0] === 1) {
      // Version 1: per ring position its start, then each feature's event time (NaN: none).
      const ring = BINARY_HEAD + kept;
      for (let r = 0; r < RECENT_BUCKETS; r++) {
        const at = ring + r * (1 + F);
        const start = v[at]!;
        f[o + this.#recent + r] = start;
        if (!Number.isNaN(start)) this.#writeRing(slot, r, start, (fi) => (Number.isNaN(v[at + 1 + fi]!) ? [] : [v[at + 1 + fi]!]));
      }
      size = kept + RECENT_BUCKETS * (1 + F);
    } else {
      f.set(v.subarray(BINARY_HEAD + kept, BINARY_HEAD + kept + RECENT_BUCKETS), o + this.#recent);
      const t = this.#t.offset(slot);
      this.#t.chunk(slot).set(v.subarray(BINARY_HEAD + kept + RECENT_BUCKETS, BINARY_HEAD + kept + RECENT_BUCKETS + this.#t.width), t);
      size = this.#f.width - 1 + this.#t.width;
    }
    const per = 2 + this.#features.length * AGG;
    const open: Bucket[] = [];
    for (let k = 0; k < v[2]!; k++) {
      const at = BINARY_HEAD + size + k * per;
      open.push({ start: v[at]!, count: v[at + 1]!, agg: v.slice(at + 2, at + per), multi: null });
    }
    if (open.length > 0) this.#open[slot] = open;
  }

  #exportJson(slot: number, open: readonly Bucket[]): string {
    const F = this.#features;
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    const keysOf = (b: Bucket): string[] => {
      const out: string[] = [];
      F.forEach((name, fi) => {
        const n = b.agg[fi * AGG + N]!;
        if (n === 1) out.push(`${name}@${b.agg[fi * AGG + LAST_TS]}`);
        else if (n > 1) for (const k of b.multi!) if (k.startsWith(`${fi}@`)) out.push(`${name}@${k.slice(k.indexOf('@') + 1)}`);
      });
      return out;
    };
    const recent: Array<[number, string[]]> = [];
    const multi = this.#recentMulti[slot];
    const t = this.#t.chunk(slot);
    for (let k = 0; k < RECENT_BUCKETS; k++) {
      // Oldest first, as they were closed.
      const r = (f[o + HEAD]! + k) % RECENT_BUCKETS;
      const start = f[o + this.#recent + r]!;
      if (Number.isNaN(start)) continue;
      const keys: string[] = [];
      const base = this.#t.offset(slot) + r * F.length;
      F.forEach((name, fi) => {
        const off = t[base + fi]!;
        if (off === SEVERAL) {
          for (const key of multi?.[r] ?? []) if (key.startsWith(`${fi}@`)) keys.push(`${name}@${key.slice(key.indexOf('@') + 1)}`);
        } else if (off !== NONE) keys.push(`${name}@${start + off}`);
      });
      recent.push([start, keys]);
    }
    const snap: StreamSnapshot = {
      n: f[o + NEXT]!,
      w: f[o + WATERMARK]!,
      e: Number.isNaN(f[o + EMITTED]!) ? null : f[o + EMITTED]!,
      o: open.map((b) => [
        b.start,
        F.flatMap((name, fi): Array<[string, number, number, number, number, number, number]> => {
          const a = b.agg.subarray(fi * AGG, fi * AGG + AGG);
          return a[N]! > 0 ? [[name, a[N]!, a[SUM]!, a[MIN]!, a[MAX]!, a[LAST]!, a[LAST_TS]!]] : [];
        }),
        keysOf(b),
      ]),
      r: recent,
      l: F.flatMap((name, fi): Array<[string, number, number]> => (Number.isNaN(f[o + this.#lastBucket + fi]!) ? [] : [[name, f[o + this.#lastValue + fi]!, f[o + this.#lastBucket + fi]!]])),
    };
    return JSON.stringify(snap);
  }

  /**
   * Restore a stream from `exportStream` (binary, or JSON, also the JSON of
   * earlier versions). Throws when a binary state was saved for other features.
   */
  importStream(stream: string, saved: string | Buffer): void {
    if (typeof saved !== 'string') return this.#importBinary(stream, saved);
    const snap = JSON.parse(saved) as StreamSnapshot;
    const slot = this.#fresh(stream);
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    f[o + NEXT] = snap.n;
    f[o + WATERMARK] = snap.w;
    f[o + EMITTED] = snap.e ?? NaN;
    const split = (key: string): [number, number] | null => {
      const at = key.lastIndexOf('@');
      const fi = this.#index.get(key.slice(0, at));
      return fi === undefined ? null : [fi, Number(key.slice(at + 1))];
    };
    const open: Bucket[] = [];
    for (const [start, aggs, keys] of snap.o) {
      const b: Bucket = { start, agg: new Float64Array(this.#features.length * AGG), count: keys.length, multi: null };
      for (const [name, n, sum, min, max, last, lastTs] of aggs) {
        const fi = this.#index.get(name);
        if (fi !== undefined) b.agg.set([n, sum, min, max, last, lastTs], fi * AGG);
      }
      for (const key of keys) {
        const k = split(key);
        if (k && b.agg[k[0] * AGG + N]! > 1) (b.multi ??= new Set()).add(`${k[0]}@${k[1]}`);
      }
      open.push(b);
    }
    open.sort((x, y) => x.start - y.start);
    if (open.length > 0) this.#open[slot] = open;
    for (const [start, keys] of snap.r.slice(-RECENT_BUCKETS)) {
      const parsed = keys.map(split).filter((k): k is [number, number] => k !== null);
      this.#remember(slot, start, (fi) => parsed.filter((k) => k[0] === fi).map((k) => k[1]));
    }
    for (const [name, value, bucket] of snap.l) {
      const fi = this.#index.get(name);
      if (fi === undefined) continue;
      f[o + this.#lastValue + fi] = value;
      f[o + this.#lastBucket + fi] = bucket;
    }
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
      for (const e of this.#drain(stream, slot, Math.max(watermark, nowMs))) out.push(e);
    }
    return out;
  }

  /** A stream's slot, cleared (a restore replaces whatever it held). */
  #fresh(stream: string): number {
    this.release(stream);
    return this.join(stream);
  }

  /** A lone sample's event time as a ring offset from its bucket's start, or SEVERAL when it is not a whole number of ms below 2^31. */
  static #offset(start: number, ts: number): number {
    const d = ts - start;
    return Number.isInteger(d) && d >= 0 && d <= 0x7fffffff && start + d === ts ? d : SEVERAL;
  }

  /** Record a closed bucket's sample keys in the stream's ring (`times(fi)`: the event times of feature fi's samples). */
  #remember(slot: number, start: number, times: (fi: number) => readonly number[]): void {
    this.#writeRing(slot, this.#ringNext(this.#f.chunk(slot), this.#f.offset(slot), start), start, times);
  }

  /** Ring position r's offsets (and sample keys) for the bucket at `start`, whose start the record already holds there. */
  #writeRing(slot: number, r: number, start: number, times: (fi: number) => readonly number[]): void {
    const t = this.#t.chunk(slot);
    const base = this.#t.offset(slot) + r * this.#features.length;
    let multi: Set<string> | null = null;
    for (let fi = 0; fi < this.#features.length; fi++) {
      const x = times(fi);
      const off = x.length === 0 ? NONE : x.length === 1 ? StepAssembler.#offset(start, x[0]!) : SEVERAL;
      t[base + fi] = off;
      if (off !== SEVERAL) continue;
      multi ??= new Set();
      for (const y of x) multi.add(`${fi}@${y}`);
    }
    let ring = this.#recentMulti[slot];
    if (multi && !ring) this.#recentMulti[slot] = ring = new Array<Set<string> | null>(RECENT_BUCKETS).fill(null);
    if (ring) {
      ring[r] = multi;
      if (ring.every((x) => x === null)) this.#recentMulti[slot] = undefined;
    }
  }

  /** `#remember` for a bucket with at most one sample per feature, in a stream whose ring holds no keys: what nearly every step is. */
  #rememberSingles(slot: number, f: Float64Array, o: number, start: number, a: Float64Array): void {
    const F = this.#features.length;
    const r = this.#ringNext(f, o, start);
    const t = this.#t.chunk(slot);
    const base = this.#t.offset(slot) + r * F;
    for (let fi = 0; fi < F; fi++) {
      const off = a[fi * AGG + N] === 0 ? NONE : StepAssembler.#offset(start, a[fi * AGG + LAST_TS]!);
      if (off === SEVERAL) {
        // A time the offsets cannot hold exactly: the position is written again, that key in the ring's sets.
        this.#writeRing(slot, r, start, (k) => (a[k * AGG + N] === 0 ? [] : [a[k * AGG + LAST_TS]!]));
        return;
      }
      t[base + fi] = off;
    }
  }

  /** Take the ring's next position (the oldest closed bucket's) for a bucket closing at `start`; returns it. */
  #ringNext(f: Float64Array, o: number, start: number): number {
    const r = f[o + HEAD]!;
    f[o + HEAD] = (r + 1) % RECENT_BUCKETS;
    f[o + this.#recent + r] = start;
    return r;
  }

  /** Whether a closed bucket still remembered took this sample. */
  #recentHas(slot: number, start: number, fi: number, ts: number): boolean {
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
    for (let r = 0; r < RECENT_BUCKETS; r++) {
      if (f[o + this.#recent + r] !== start) continue;
      const off = this.#t.chunk(slot)[this.#t.offset(slot) + r * this.#features.length + fi]!;
      if (off === NONE) return false;
      if (off !== SEVERAL) return start + off === ts;
      return this.#recentMulti[slot]?.[r]?.has(`${fi}@${ts}`) ?? false;
    }
    return false;
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

  /** Emit, in order, every bucket that is closed by `limit` (or complete, in complete mode). */
  #drain(stream: string, slot: number, limit: number): AssembledEvent[] {
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
      if (bucket.multi === null && this.#recentMulti[slot] === undefined) this.#rememberSingles(slot, f, o, b, a);
      else {
        this.#remember(slot, b, (fi) => {
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

/** A stream's state in a checkpoint: compact arrays, numbers round-trip exactly through JSON. */
interface StreamSnapshot {
  n: number;
  w: number;
  e: number | null;
  o: Array<[number, Array<[string, number, number, number, number, number, number]>, string[]]>;
  r: Array<[number, string[]]>;
  l: Array<[string, number, number]>;
}
