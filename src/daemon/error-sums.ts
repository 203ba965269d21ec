import type { AccuracyDelta } from '../store/rows.js';
import { Slab, type SlotView } from '../slots.js';

/** Per delta cell: n, sum |e|, sum e², sum e, sum |persistence error|, last target time. */
const SUMS = 6;
/** A closed delta kept in memory: horizon, target index, bucket, then the SUMS. */
const RECORD = 3 + SUMS;

/** A scored cell of the forecast vector, as its sums are stored. */
export interface SummedCell {
  readonly horizon: number;
  readonly target: string;
}

/**
 * The errors one model's score book summed, by stream, model × horizon ×
 * target and time bucket, until a checkpoint stores them in the `accuracy`
 * table. The current bucket's sums sit in a slab, in a record a stream holds
 * only from its first scored error until a checkpoint takes the sums (or the
 * bucket closes): a stream that was not scored since the last checkpoint
 * costs no sums. A closed bucket's sums wait as closed deltas; the sums a
 * checkpoint took stay in flight until it commits or fails. Streams are the
 * book's: their slots in its `SlotView`, passed in where they are listed.
 */
export class ErrorSums {
  readonly model: string;
  #cells: readonly SummedCell[] = [];
  /** Per slot, its sums record in `#sums` (-1: none, the sums are zero). */
  #sumsOf = new Slab(1, (n) => new Int32Array(n), -1);
  /** Sums records: the current bucket, then SUMS per cell. */
  #sums = new Slab(1, (n) => new Float64Array(n));
  /** Sums records free for reuse, and one past the highest handed out. */
  #freeSums: number[] = [];
  #nextSums = 0;
  /** Deltas of buckets that closed since the last checkpoint, by stream. */
  #closed = new Map<string, number[]>();
  /** Target names the closed records refer to by index (only ever added to: a reload keeps old records readable). */
  readonly #targetNames: string[] = [];
  readonly #targetIndex = new Map<string, number>();
  /** Sums taken by a checkpoint not yet committed. */
  #inflight = new Map<string, AccuracyDelta[]>();

  constructor(model: string) {
    this.model = model;
  }

  /** Take a (hot-reloaded) card's scored cells: every stream's sums start over (`closeAll` keeps them first). */
  layout(cells: readonly SummedCell[]): void {
    this.#cells = cells;
    this.#sumsOf = new Slab(1, (n) => new Int32Array(n), -1);
    this.#sums = new Slab(1 + cells.length * SUMS, (n) => new Float64Array(n));
    this.#freeSums = [];
    this.#nextSums = 0;
  }

  /** Streams holding error sums (scored since their sums were last taken). */
  get summing(): number {
    return this.#nextSums - this.#freeSums.length;
  }

  /** A slot newly held: no sums. */
  clearSlot(slot: number): void {
    this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)] = -1;
  }

  /** Add one scored error of cell `c` (forecast minus actual, and persistence's), at target time `ts` in `bucket`. */
  add(stream: string, slot: number, bucket: number, c: number, err: number, persistenceErr: number, ts: number): void {
    const record = this.#sumsFor(stream, slot, bucket);
    const u = this.#sums.chunk(record);
    const s = this.#sums.offset(record) + 1 + c * SUMS;
    u[s] = u[s]! + 1;
    u[s + 1] = u[s + 1]! + Math.abs(err);
    u[s + 2] = u[s + 2]! + err * err;
    u[s + 3] = u[s + 3]! + err;
    u[s + 4] = u[s + 4]! + Math.abs(persistenceErr);
    u[s + 5] = Math.max(u[s + 5]!, ts);
  }

  /** The summed errors not yet stored: closed buckets and every stream's current one (those taken for a checkpoint in flight excepted). */
  deltas(slots: SlotView): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    for (const [stream, records] of this.#closed) out.push(...this.#read(stream, records));
    for (const [stream, record] of this.#withCurrentSums(slots)) out.push(...this.#deltasOf(stream, record));
    return out;
  }

  /**
   * The sums for a checkpoint (of these streams, or all): their deltas, and
   * the sums start over. They stay in flight (still counted by `deltasOf`)
   * until `stored` (committed) or `unstored` (the checkpoint failed: they are
   * added back).
   */
  take(slots: SlotView, streams?: Iterable<string>): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    for (const stream of streams ?? this.#withSums(slots)) {
      const taken = this.#read(stream, this.#closed.get(stream));
      this.#closed.delete(stream);
      const slot = slots.get(stream);
      const record = slot === undefined ? -1 : this.#sumsRecord(slot);
      if (record >= 0) {
        taken.push(...this.#deltasOf(stream, record));
        this.#freeSumsOf(slot!);
      }
      if (taken.length === 0) continue;
      const list = this.#inflight.get(stream);
      if (list) list.push(...taken);
      else this.#inflight.set(stream, taken);
      out.push(...taken);
    }
    return out;
  }

  /** One stream's sums not yet stored (in flight, closed buckets and the current one; `slot`: its slot, undefined when the book holds none). */
  deltasOf(stream: string, slot: number | undefined): AccuracyDelta[] {
    const out = [...(this.#inflight.get(stream) ?? []), ...this.#read(stream, this.#closed.get(stream))];
    const record = slot === undefined ? -1 : this.#sumsRecord(slot);
    if (record >= 0) out.push(...this.#deltasOf(stream, record));
    return out;
  }

  /** The sums `take` returned (for these streams, or all) were committed. */
  stored(streams?: Iterable<string>): void {
    if (!streams) this.#inflight = new Map();
    else for (const s of streams) this.#inflight.delete(s);
  }

  /** The checkpoint with the sums `take` returned (for these streams, or all) failed: they wait for the next one. */
  unstored(streams?: Iterable<string>): void {
    for (const s of streams ?? [...this.#inflight.keys()]) {
      const list = this.#inflight.get(s);
      if (!list) continue;
      this.#inflight.delete(s);
      this.#keep(s, list);
    }
  }

  /** A stream leaves (evicted: its deltas move to the closed list first). */
  release(stream: string, slot: number): void {
    const record = this.#sumsRecord(slot);
    if (record >= 0) {
      this.#keep(stream, this.#deltasOf(stream, record));
      this.#freeSumsOf(slot);
    }
  }

  /** Every stream's current sums become closed deltas (before the cells change). */
  closeAll(slots: SlotView): void {
    for (const [stream, record] of this.#withCurrentSums(slots)) this.#keep(stream, this.#deltasOf(stream, record));
  }

  /**
   * Keep deltas until a checkpoint takes them, as records of RECORD numbers
   * in one array per stream: a delta object with its boxed numbers would
   * live until the next checkpoint, and the young-generation GC copies
   * every such survivor (a daily model closes a bucket every seventh step).
   */
  #keep(stream: string, deltas: readonly AccuracyDelta[]): void {
    if (deltas.length === 0) return;
    let list = this.#closed.get(stream);
    if (!list) this.#closed.set(stream, (list = []));
    for (const d of deltas) {
      let t = this.#targetIndex.get(d.target);
      if (t === undefined) {
        t = this.#targetNames.push(d.target) - 1;
        this.#targetIndex.set(d.target, t);
      }
      list.push(d.horizon, t, d.bucket, d.n, d.sumAbs, d.sumSq, d.sumErr, d.sumPAbs, d.lastTargetTime);
    }
  }

  /** The deltas of a stream's closed records. */
  #read(stream: string, records: readonly number[] | undefined): AccuracyDelta[] {
    const out: AccuracyDelta[] = [];
    if (!records) return out;
    for (let i = 0; i < records.length; i += RECORD) {
      const r = (k: number): number => records[i + k]!;
      out.push(new Delta(stream, this.model, r(0), this.#targetNames[r(1)]!, r(2), r(3), r(4), r(5), r(6), r(7), r(8)));
    }
    return out;
  }

  /** A slot's sums record (-1: none, its current bucket has no sums). */
  #sumsRecord(slot: number): number {
    return this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)]!;
  }

  /**
   * The slot's sums record for `bucket`: a zeroed one from the free list when
   * it has none; a bucket that closed keeps its sums as closed deltas and the
   * record starts over.
   */
  #sumsFor(stream: string, slot: number, bucket: number): number {
    const sumsOf = this.#sumsOf.chunk(slot);
    const so = this.#sumsOf.offset(slot);
    let record = sumsOf[so]!;
    if (record >= 0 && this.#sums.chunk(record)[this.#sums.offset(record)] === bucket) return record;
    if (record >= 0) this.#keep(stream, this.#deltasOf(stream, record));
    else record = sumsOf[so] = this.#freeSums.pop() ?? this.#nextSums++;
    this.#sums.fill(record, 0);
    this.#sums.chunk(record)[this.#sums.offset(record)] = bucket;
    return record;
  }

  /** The slot's sums were taken or kept elsewhere: its record goes back to the free list. */
  #freeSumsOf(slot: number): void {
    const record = this.#sumsRecord(slot);
    if (record < 0) return;
    this.#freeSums.push(record);
    this.#sumsOf.chunk(slot)[this.#sumsOf.offset(slot)] = -1;
  }

  /** Streams (with their sums records) whose current bucket has sums. */
  *#withCurrentSums(slots: SlotView): Generator<[string, number]> {
    for (const [stream, slot] of slots.entries()) {
      const record = this.#sumsRecord(slot);
      if (record >= 0) yield [stream, record];
    }
  }

  /** Streams with closed deltas or sums in their current bucket: what a full checkpoint takes. */
  #withSums(slots: SlotView): Set<string> {
    const out = new Set(this.#closed.keys());
    for (const [stream] of this.#withCurrentSums(slots)) out.add(stream);
    return out;
  }

  /** A sums record's deltas. */
  #deltasOf(stream: string, record: number): AccuracyDelta[] {
    const d = this.#sums.chunk(record);
    const sums = this.#sums.offset(record);
    const out: AccuracyDelta[] = [];
    this.#cells.forEach((cell, c) => {
      const s = sums + 1 + c * SUMS;
      if (d[s] === 0) return;
      out.push(new Delta(stream, this.model, cell.horizon, cell.target, d[sums]!, d[s]!, d[s + 1]!, d[s + 2]!, d[s + 3]!, d[s + 4]!, d[s + 5]!));
    });
    return out;
  }
}

/**
 * An accuracy delta. A class, so that V8 gives every delta one map with its
 * fields in place: built as object literals at two sites (numbers of
 * different kinds in the same fields), the deltas had maps V8 migrated at the
 * first read of each, most of `packAccuracy`'s time in a bench e2e profile
 * (182 ms of 100,000 messages at QoS 0; 13 ms as a class; a factory of one
 * literal did not help: 190 ms).
 */
class Delta implements AccuracyDelta {
  constructor(
    readonly stream: string,
    readonly model: string,
    readonly horizon: number,
    readonly target: string,
    readonly bucket: number,
    readonly n: number,
    readonly sumAbs: number,
    readonly sumSq: number,
    readonly sumErr: number,
    readonly sumPAbs: number,
    readonly lastTargetTime: number,
  ) {}
}
