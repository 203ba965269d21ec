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
 * One stream. `f` holds, back to back: the next bucket to emit, the
 * watermark, the last emitted bucket (NaN: none), each feature's last value
 * and its bucket (NaN: none), and a ring of the last RECENT_BUCKETS closed
 * buckets (start, then per feature the event time of its only sample; NaN for
 * none, -Infinity for several, whose keys are in `recentMulti`).
 */
interface StreamState {
  readonly f: Float64Array;
  /** Open buckets, by start (usually none or one). */
  open: Bucket[];
  recentHead: number;
  recentMulti: Array<Set<string> | null> | null;
}

const NEXT = 0;
const WATERMARK = 1;
const EMITTED = 2;
const FIXED = 3;

/** Version of the binary checkpoint layout. */
const BINARY_VERSION = 1;

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
 */
export class StepAssembler {
  readonly #o: AssemblerOptions;
  readonly #streams = new Map<string, StreamState>();
  readonly #features: readonly string[];
  /** Tells a binary checkpoint made for these features (names and order) from one made for others. */
  readonly #featureHash: number;
  readonly #index = new Map<string, number>();
  readonly #how: readonly Aggregation[];
  /** Offsets in a stream's `f`. */
  readonly #lastValue: number;
  readonly #lastBucket: number;
  readonly #recent: number;
  readonly #recentSize: number;
  /** Aggregate arrays of closed buckets, reused by new ones. */
  readonly #pool: Float64Array[] = [];
  /** Samples ignored as repeats. */
  duplicates = 0;

  constructor(options: AssemblerOptions) {
    if (!(options.stepMs > 0)) throw new RangeError('stepMs must be positive');
    this.#o = options;
    this.#features = [...options.features];
    this.#features.forEach((f, i) => this.#index.set(f, i));
    this.#featureHash = hash(this.#features.join('\u0000'));
    this.#how = this.#features.map((f) => options.aggregate(f));
    const F = this.#features.length;
    this.#lastValue = FIXED;
    this.#lastBucket = FIXED + F;
    this.#recent = FIXED + 2 * F;
    this.#recentSize = 1 + F;
  }

  bucketOf(ts: number): number {
    return Math.floor(ts / this.#o.stepMs) * this.#o.stepMs;
  }

  /**
   * Add one sample; returns the events it releases (possibly none).
   * Throws DecodeError('late') for a sample whose bucket has closed.
   */
  add(stream: string, feature: string, ts: number, value: number): AssembledEvent[] {
    const fi = this.#index.get(feature);
    if (fi === undefined) throw new DecodeError('unknown_feature', `"${feature}" is not a feature of the route's models (${this.#features.join(', ')})`);
    const start = this.bucketOf(ts);
    let s = this.#streams.get(stream);
    if (!s) {
      s = this.#newStream(start, ts);
      this.#streams.set(stream, s);
    }
    const f = s.f;
    if (start < f[NEXT]!) {
      if (this.#recentHas(s, start, fi, ts)) {
        this.duplicates++;
        return NOTHING;
      }
      throw new DecodeError('late', `${feature} at ${new Date(ts).toISOString()} is for a closed step (the stream is at ${new Date(f[NEXT]!).toISOString()}, lateness ${this.#o.latenessMs} ms)`);
    }
    let bucket: Bucket | undefined;
    let at = 0;
    for (; at < s.open.length; at++) {
      const b = s.open[at]!;
      if (b.start === start) bucket = b;
      if (b.start >= start) break;
    }
    if (!bucket) {
      bucket = { start, agg: this.#pool.pop()?.fill(0) ?? new Float64Array(this.#features.length * AGG), count: 0, multi: null };
      s.open.splice(at, 0, bucket);
    }
    const a = bucket.agg;
    const o = fi * AGG;
    const n = a[o + N]!;
    if (n === 1 ? a[o + LAST_TS] === ts : n > 1 && bucket.multi!.has(`${fi}@${ts}`)) {
      this.duplicates++;
      return NOTHING;
    }
    const cap = this.#o.maxSamplesPerStep ?? 10_000;
    if (bucket.count >= cap) {
      throw new DecodeError('too_many_samples', `the step at ${new Date(start).toISOString()} already holds ${cap} samples (limits.maxSamplesPerStep)`);
    }
    bucket.count++;
    if (n === 0) {
      a[o + N] = 1;
      a[o + SUM] = value;
      a[o + MIN] = value;
      a[o + MAX] = value;
      a[o + LAST] = value;
      a[o + LAST_TS] = ts;
    } else {
      const multi = (bucket.multi ??= new Set());
      if (n === 1) multi.add(`${fi}@${a[o + LAST_TS]}`);
      multi.add(`${fi}@${ts}`);
      a[o + N] = n + 1;
      a[o + SUM] = a[o + SUM]! + value;
      if (value < a[o + MIN]!) a[o + MIN] = value;
      if (value > a[o + MAX]!) a[o + MAX] = value;
      if (ts >= a[o + LAST_TS]!) {
        a[o + LAST] = value;
        a[o + LAST_TS] = ts;
      }
    }
    if (ts > f[WATERMARK]!) f[WATERMARK] = ts;
    return this.#drain(stream, s, f[WATERMARK]!);
  }

  /** Whether the clock closes steps (`wallClock`). */
  get wallClock(): boolean {
    return this.#o.wallClock;
  }

  /** Forget a stream (evicted after idling; export it first). */
  release(stream: string): void {
    const s = this.#streams.get(stream);
    if (!s) return;
    for (const b of s.open) this.#pool.push(b.agg);
    this.#streams.delete(stream);
  }

  /**
   * A stream's assembly state for a checkpoint; undefined when unknown. Binary
   * (a copy of its arrays, a few µs) unless a step holds several samples of
   * one feature, whose keys only the JSON form carries.
   */
  exportStream(stream: string): string | Buffer | undefined {
    const s = this.#streams.get(stream);
    if (!s) return undefined;
    if (s.recentMulti === null && s.open.every((b) => b.multi === null)) return this.#exportBinary(s);
    return this.#exportJson(s);
  }

  /** [BINARY_VERSION, feature-set hash, open buckets, ring head], `f`, then per open bucket [start, count, aggregates]. */
  #exportBinary(s: StreamState): Buffer {
    const per = 2 + this.#features.length * AGG;
    const out = new Float64Array(4 + s.f.length + s.open.length * per);
    out.set([BINARY_VERSION, this.#featureHash, s.open.length, s.recentHead]);
    out.set(s.f, 4);
    s.open.forEach((b, k) => {
      const at = 4 + s.f.length + k * per;
      out[at] = b.start;
      out[at + 1] = b.count;
      out.set(b.agg, at + 2);
    });
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  #importBinary(stream: string, saved: Buffer): void {
    const v = new Float64Array(saved.buffer.slice(saved.byteOffset, saved.byteOffset + saved.byteLength));
    if (v[0] !== BINARY_VERSION || v[1] !== this.#featureHash) {
      throw new Error(`the saved step assembly of ${stream} was made for other features (${this.#features.join(', ')} now)`);
    }
    const s = this.#newStream(0, 0);
    s.f.set(v.subarray(4, 4 + s.f.length));
    s.recentHead = v[3]!;
    const per = 2 + this.#features.length * AGG;
    for (let k = 0; k < v[2]!; k++) {
      const at = 4 + s.f.length + k * per;
      s.open.push({ start: v[at]!, count: v[at + 1]!, agg: v.slice(at + 2, at + per), multi: null });
    }
    this.#streams.set(stream, s);
  }

  #exportJson(s: StreamState): string {
    const F = this.#features;
    const f = s.f;
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
    for (let k = 0; k < RECENT_BUCKETS; k++) {
      // Oldest first, as they were closed.
      const r = (s.recentHead + k) % RECENT_BUCKETS;
      const base = this.#recent + r * this.#recentSize;
      if (Number.isNaN(f[base]!)) continue;
      const keys: string[] = [];
      F.forEach((name, fi) => {
        const t = f[base + 1 + fi]!;
        if (t === -Infinity) {
          for (const key of s.recentMulti?.[r] ?? []) if (key.startsWith(`${fi}@`)) keys.push(`${name}@${key.slice(key.indexOf('@') + 1)}`);
        } else if (!Number.isNaN(t)) keys.push(`${name}@${t}`);
      });
      recent.push([f[base]!, keys]);
    }
    const snap: StreamSnapshot = {
      n: f[NEXT]!,
      w: f[WATERMARK]!,
      e: Number.isNaN(f[EMITTED]!) ? null : f[EMITTED]!,
      o: s.open.map((b) => [
        b.start,
        F.flatMap((name, fi): Array<[string, number, number, number, number, number, number]> => {
          const a = b.agg.subarray(fi * AGG, fi * AGG + AGG);
          return a[N]! > 0 ? [[name, a[N]!, a[SUM]!, a[MIN]!, a[MAX]!, a[LAST]!, a[LAST_TS]!]] : [];
        }),
        keysOf(b),
      ]),
      r: recent,
      l: F.flatMap((name, fi): Array<[string, number, number]> => (Number.isNaN(f[this.#lastBucket + fi]!) ? [] : [[name, f[this.#lastValue + fi]!, f[this.#lastBucket + fi]!]])),
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
    const s = this.#newStream(snap.n, snap.w);
    const f = s.f;
    f[EMITTED] = snap.e ?? NaN;
    const split = (key: string): [number, number] | null => {
      const at = key.lastIndexOf('@');
      const fi = this.#index.get(key.slice(0, at));
      return fi === undefined ? null : [fi, Number(key.slice(at + 1))];
    };
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
      s.open.push(b);
    }
    s.open.sort((x, y) => x.start - y.start);
    for (const [start, keys] of snap.r.slice(-RECENT_BUCKETS)) {
      const parsed = keys.map(split).filter((k): k is [number, number] => k !== null);
      this.#remember(s, start, (fi) => parsed.filter((k) => k[0] === fi).map((k) => k[1]));
    }
    for (const [name, value, bucket] of snap.l) {
      const fi = this.#index.get(name);
      if (fi === undefined) continue;
      f[this.#lastValue + fi] = value;
      f[this.#lastBucket + fi] = bucket;
    }
    this.#streams.set(stream, s);
  }

  /** Whether `sweep(nowMs)` would close a step of some stream (so the tick is worth logging). */
  due(nowMs: number): boolean {
    if (!this.#o.wallClock) return false;
    const span = this.#o.stepMs + this.#o.latenessMs;
    for (const s of this.#streams.values()) if (s.f[NEXT]! + span <= Math.max(s.f[WATERMARK]!, nowMs)) return true;
    return false;
  }

  /** Close buckets the wall clock has passed (only with `wallClock`); call periodically. `skip`: streams to leave alone. */
  sweep(nowMs: number, skip?: (stream: string) => boolean): AssembledEvent[] {
    if (!this.#o.wallClock) return [];
    const out: AssembledEvent[] = [];
    for (const [stream, s] of this.#streams) {
      if (skip?.(stream)) continue;
      for (const e of this.#drain(stream, s, Math.max(s.f[WATERMARK]!, nowMs))) out.push(e);
    }
    return out;
  }

  #newStream(next: number, watermark: number): StreamState {
    const f = new Float64Array(this.#recent + RECENT_BUCKETS * this.#recentSize).fill(NaN);
    f[NEXT] = next;
    f[WATERMARK] = watermark;
    return { f, open: [], recentHead: 0, recentMulti: null };
  }

  /** Record a closed bucket's sample keys in the stream's ring (`times(fi)`: the event times of feature fi's samples). */
  #remember(s: StreamState, start: number, times: (fi: number) => readonly number[]): void {
    const r = s.recentHead;
    s.recentHead = (r + 1) % RECENT_BUCKETS;
    const base = this.#recent + r * this.#recentSize;
    const f = s.f;
    f[base] = start;
    let multi: Set<string> | null = null;
    for (let fi = 0; fi < this.#features.length; fi++) {
      const t = times(fi);
      if (t.length === 0) f[base + 1 + fi] = NaN;
      else if (t.length === 1) f[base + 1 + fi] = t[0]!;
      else {
        f[base + 1 + fi] = -Infinity;
        multi ??= new Set();
        for (const x of t) multi.add(`${fi}@${x}`);
      }
    }
    if (multi || s.recentMulti) (s.recentMulti ??= new Array<Set<string> | null>(RECENT_BUCKETS).fill(null))[r] = multi;
  }

  /** Whether a closed bucket still remembered took this sample. */
  #recentHas(s: StreamState, start: number, fi: number, ts: number): boolean {
    const f = s.f;
    for (let r = 0; r < RECENT_BUCKETS; r++) {
      const base = this.#recent + r * this.#recentSize;
      if (f[base] !== start) continue;
      const t = f[base + 1 + fi]!;
      if (t === ts) return true;
      return t === -Infinity && (s.recentMulti?.[r]?.has(`${fi}@${ts}`) ?? false);
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
  #drain(stream: string, s: StreamState, limit: number): AssembledEvent[] {
    const { stepMs, latenessMs } = this.#o;
    const f = s.f;
    let out = NOTHING;
    for (;;) {
      const b = f[NEXT]!;
      const bucket = s.open.length > 0 && s.open[0]!.start === b ? s.open[0] : undefined;
      const closed = b + stepMs + latenessMs <= limit;
      if (!closed && !(this.#o.emit === 'complete' && this.#complete(bucket))) break;
      if (out === NOTHING) out = [];
      if (!bucket) {
        // A closed step without samples: forward-fill it while every feature's last
        // value is recent enough; otherwise jump to the next step that has samples
        // (or as far as `limit` closes). The gap check on the next emitted step
        // decides whether the stream starts over.
        const fill = this.#fillFrom(s, b, null);
        if (fill) {
          this.#emit(stream, s, b, fill.values, fill.filled, out);
          f[NEXT] = b + stepMs;
        } else {
          const nextOpen = s.open.find((x) => x.start > b)?.start ?? Infinity;
          const firstOpenByLimit = this.bucketOf(limit - latenessMs - stepMs) + stepMs;
          f[NEXT] = Math.max(b + stepMs, Math.min(nextOpen, firstOpenByLimit));
        }
        continue;
      }
      const fill = this.#fillFrom(s, b, bucket.agg);
      if (fill) this.#emit(stream, s, b, fill.values, fill.filled, out);
      else out.push({ kind: 'skip', stream, ts: b, missing: this.#features.filter((_, fi) => bucket.agg[fi * AGG + N] === 0) });
      const a = bucket.agg;
      for (let fi = 0; fi < this.#features.length; fi++) {
        if (a[fi * AGG + N] === 0) continue;
        f[this.#lastValue + fi] = this.#value(a, fi);
        f[this.#lastBucket + fi] = b;
      }
      this.#remember(s, b, (fi) => {
        const n = a[fi * AGG + N]!;
        if (n === 0) return [];
        if (n === 1) return [a[fi * AGG + LAST_TS]!];
        const prefix = `${fi}@`;
        return [...bucket.multi!].filter((k) => k.startsWith(prefix)).map((k) => Number(k.slice(prefix.length)));
      });
      s.open.shift();
      this.#pool.push(a);
      f[NEXT] = b + stepMs;
    }
    return out;
  }

  /** The step's values with missing features forward-filled, or null when one cannot be filled. */
  #fillFrom(s: StreamState, b: number, agg: Float64Array | null): { values: Record<string, number>; filled: string[] } | null {
    const values: Record<string, number> = {};
    let filled: string[] | null = null;
    const f = s.f;
    for (let fi = 0; fi < this.#features.length; fi++) {
      const name = this.#features[fi]!;
      if (agg && agg[fi * AGG + N]! > 0) {
        values[name] = this.#value(agg, fi);
        continue;
      }
      const bucket = f[this.#lastBucket + fi]!;
      if (Number.isNaN(bucket) || (b - bucket) / this.#o.stepMs > this.#o.maxFillSteps) return null;
      values[name] = f[this.#lastValue + fi]!;
      (filled ??= []).push(name);
    }
    return { values, filled: filled ?? [] };
  }

  #emit(stream: string, s: StreamState, b: number, values: Record<string, number>, filled: string[], out: AssembledEvent[]): void {
    const last = s.f[EMITTED]!;
    if (!Number.isNaN(last)) {
      const missed = (b - last) / this.#o.stepMs - 1;
      if (missed > this.#o.maxGapSteps) out.push({ kind: 'gap', stream, ts: b, steps: missed });
    }
    s.f[EMITTED] = b;
    out.push({ kind: 'step', stream, ts: b, values, filled });
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
