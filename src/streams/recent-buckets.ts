import { Slab } from '../slots.js';
import * as assemblyLayout from './assembly-layout.js';
import type { AssemblyLayout } from './assembly-layout.js';

/** The layout's constants as this module's own, for the optimized code (see `step-assembler.ts`). */
const { AGG, HEAD, LAST_TS, N, RECENT_BUCKETS } = assemblyLayout;

/** A ring offset: the feature had no sample in that bucket. */
const NONE = -1;
/** A ring offset: the feature's samples' keys are in `#recentMulti`. */
const SEVERAL = -2;

/**
 * The sample keys (feature, event time) of each stream's last RECENT_BUCKETS
 * closed buckets, so that a sample one of them took is told, when it comes
 * again, as a repeat rather than as late.
 *
 * The ring's head and its buckets' starts are in the stream's record of the
 * assembler's slab (see `assembly-layout.ts`). Per ring position and feature,
 * a second slab (Int32Array) holds the event time of the bucket's only
 * sample of that feature as an offset from the bucket's start (NONE: no
 * sample; SEVERAL: its keys are in `#recentMulti`, which also takes a lone
 * sample whose offset is not a whole number of ms below 2^31: exact either
 * way). The sample-key sets live in an array by slot, only for the streams
 * that have them.
 */
export class RecentBuckets {
  /** The assembler's records (ring head and starts). */
  readonly #f: Slab<Float64Array>;
  readonly #features: readonly string[];
  /** Where a record's ring starts begin. */
  readonly #recent: number;
  /** Per slot, RECENT_BUCKETS × features ring offsets (see above). */
  readonly #t: Slab<Int32Array>;
  /** Per slot whose ring remembers a bucket with several samples of a feature: those keys, by ring position. */
  readonly #recentMulti: Array<Array<Set<string> | null> | undefined> = [];

  constructor(records: Slab<Float64Array>, layout: AssemblyLayout, features: readonly string[]) {
    this.#f = records;
    this.#features = features;
    this.#recent = layout.recent;
    this.#t = new Slab(Math.max(1, RECENT_BUCKETS * features.length), (n) => new Int32Array(n));
  }

  /** The ring offsets by slot, as a binary checkpoint copies them. */
  get offsets(): Slab<Int32Array> {
    return this.#t;
  }

  /** Whether the stream's ring holds no sample keys (every sample it remembers is an offset). */
  keyless(slot: number): boolean {
    return this.#recentMulti[slot] === undefined;
  }

  /** Forget a released stream's sample keys. */
  forget(slot: number): void {
    this.#recentMulti[slot] = undefined;
  }

  /** A lone sample's event time as a ring offset from its bucket's start, or SEVERAL when it is not a whole number of ms below 2^31. */
  static #offset(start: number, ts: number): number {
    const d = ts - start;
    return Number.isInteger(d) && d >= 0 && d <= 0x7fffffff && start + d === ts ? d : SEVERAL;
  }

  /** Record a closed bucket's sample keys in the stream's ring (`times(fi)`: the event times of feature fi's samples). */
  remember(slot: number, start: number, times: (fi: number) => readonly number[]): void {
    this.writeRing(slot, this.#ringNext(this.#f.chunk(slot), this.#f.offset(slot), start), start, times);
  }

  /** Ring position r's offsets (and sample keys) for the bucket at `start`, whose start the record already holds there. */
  writeRing(slot: number, r: number, start: number, times: (fi: number) => readonly number[]): void {
    const t = this.#t.chunk(slot);
    const base = this.#t.offset(slot) + r * this.#features.length;
    let multi: Set<string> | null = null;
    for (let fi = 0; fi < this.#features.length; fi++) {
      const x = times(fi);
      const off = x.length === 0 ? NONE : x.length === 1 ? RecentBuckets.#offset(start, x[0]!) : SEVERAL;
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

  /** `remember` for a bucket with at most one sample per feature, in a stream whose ring holds no keys: what nearly every step is. */
  rememberSingles(slot: number, f: Float64Array, o: number, start: number, a: Float64Array): void {
    const F = this.#features.length;
    const r = this.#ringNext(f, o, start);
    const t = this.#t.chunk(slot);
    const base = this.#t.offset(slot) + r * F;
    for (let fi = 0; fi < F; fi++) {
      const off = a[fi * AGG + N] === 0 ? NONE : RecentBuckets.#offset(start, a[fi * AGG + LAST_TS]!);
      if (off === SEVERAL) {
        // A time the offsets cannot hold exactly: the position is written again, that key in the ring's sets.
        this.writeRing(slot, r, start, (k) => (a[k * AGG + N] === 0 ? [] : [a[k * AGG + LAST_TS]!]));
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
  has(slot: number, start: number, fi: number, ts: number): boolean {
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

  /** The ring's buckets, oldest first, each with its sample keys `${feature}@${ts}` (the JSON checkpoint's form). */
  keys(slot: number): Array<[number, string[]]> {
    const F = this.#features;
    const f = this.#f.chunk(slot);
    const o = this.#f.offset(slot);
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
    return recent;
  }
}
