import type { Slab } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { AGG, EMITTED, FIXED, HEAD, LAST, LAST_TS, MAX, MIN, N, NEXT, RECENT_BUCKETS, SUM, WATERMARK, type AssemblyLayout, type Bucket } from './assembly-layout.js';
import type { RecentBuckets } from './recent-buckets.js';

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

/** A stream's state in a checkpoint: compact arrays, numbers round-trip exactly through JSON. */
interface StreamSnapshot {
  n: number;
  w: number;
  e: number | null;
  o: Array<[number, Array<[string, number, number, number, number, number, number]>, string[]]>;
  r: Array<[number, string[]]>;
  l: Array<[string, number, number]>;
}

/** The assembler's tables a checkpoint reads and writes. */
export interface CodecTables {
  readonly features: readonly string[];
  /** Each feature's index in `features`. */
  readonly index: ReadonlyMap<string, number>;
  readonly layout: AssemblyLayout;
  /** The streams' records (see `assembly-layout.ts`). */
  readonly records: Slab<Float64Array>;
  readonly recent: RecentBuckets;
  /** Open buckets by slot, in start order (undefined: none). */
  readonly open: Array<Bucket[] | undefined>;
  /** A stream's slot, cleared (a restore replaces whatever it held). */
  readonly fresh: (stream: string) => number;
}

/**
 * A stream's step assembly to and from a checkpoint. Binary (a copy of its
 * arrays, a few µs) unless a step holds several samples of one feature, whose
 * keys only the JSON form carries; both forms, and those of earlier versions,
 * import.
 */
export class AssemblyCodec {
  readonly #features: readonly string[];
  /** Tells a binary checkpoint made for these features (names and order) from one made for others. */
  readonly #featureHash: number;
  readonly #index: ReadonlyMap<string, number>;
  readonly #f: Slab<Float64Array>;
  readonly #t: Slab<Int32Array>;
  readonly #ring: RecentBuckets;
  readonly #open: Array<Bucket[] | undefined>;
  readonly #fresh: (stream: string) => number;
  /** Offsets in a stream's record. */
  readonly #lastValue: number;
  readonly #lastBucket: number;
  readonly #recent: number;

  constructor(tables: CodecTables) {
    this.#features = tables.features;
    this.#featureHash = hash(this.#features.join('\u0000'));
    this.#index = tables.index;
    this.#f = tables.records;
    this.#t = tables.recent.offsets;
    this.#ring = tables.recent;
    this.#open = tables.open;
    this.#fresh = tables.fresh;
    this.#lastValue = tables.layout.lastValue;
    this.#lastBucket = tables.layout.lastBucket;
    this.#recent = tables.layout.recent;
  }

  /** A known stream's state (by its slot), binary when it can be. */
  export(slot: number): string | Buffer {
    const open = this.#open[slot] ?? [];
    if (this.#ring.keyless(slot) && open.every((b) => b.multi === null)) return this.#exportBinary(slot, open);
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
        if (!Number.isNaN(start)) this.#ring.writeRing(slot, r, start, (fi) => (Number.isNaN(v[at + 1 + fi]!) ? [] : [v[at + 1 + fi]!]));
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
    const recent = this.#ring.keys(slot);
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

  /** Restore a stream from `export` (also the JSON of earlier versions). Throws when a binary state was saved for other features. */
  import(stream: string, saved: string | Buffer): void {
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
      this.#ring.remember(slot, start, (fi) => parsed.filter((k) => k[0] === fi).map((k) => k[1]));
    }
    for (const [name, value, bucket] of snap.l) {
      const fi = this.#index.get(name);
      if (fi === undefined) continue;
      f[o + this.#lastValue + fi] = value;
      f[o + this.#lastBucket + fi] = bucket;
    }
  }
}
