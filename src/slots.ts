import { ErrorCodes, TidecastError } from './errors.js';
/** Slots per chunk of a slab: growth adds one chunk, never copies, never doubles. */
const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;
const MASK = CHUNK - 1;

let nextIndexKey = 1;

/**
 * Stream names to small integer slots, reused after release: the one Map a
 * per-stream table needs, every other column being a typed array indexed by slot.
 * Several tables may share one index (see `SlotView`): one map for all of them.
 */
export class SlotIndex {
  /** Tells this index from the process's others (the writer thread keys its stream ids by index and slot). */
  readonly key = nextIndexKey++;
  readonly #slots = new Map<string, number>();
  /** Each slot's name: the one string object per stream that the caller can pass on (`nameOf`). */
  readonly #names: Array<string | undefined> = [];
  readonly #free: number[] = [];
  #next = 0;
  /** Per slot, how many times it was released: with a view's own count, tells whether the view's columns still belong to the slot's stream. */
  readonly #released = new Slab(1, (n) => new Int32Array(n));

  get size(): number {
    return this.#slots.size;
  }

  /** Slots handed out so far (one past the highest): what a column must hold. */
  get extent(): number {
    return this.#next;
  }

  get(name: string): number | undefined {
    return this.#slots.get(name);
  }

  has(name: string): boolean {
    return this.#slots.has(name);
  }

  /** The name's slot, and whether it was just taken (its columns hold whatever the last owner left). */
  take(name: string): number {
    let slot = this.#slots.get(name);
    if (slot === undefined) {
      slot = this.#free.pop() ?? this.#next++;
      this.#slots.set(name, slot);
      this.#names[slot] = name;
    }
    return slot;
  }

  /**
   * The name a slot was taken for, as the index holds it. A message carries a
   * new string for its stream each time; passing this one on instead lets every
   * other map keyed by stream find its key by identity (no hashing, no compare
   * of the characters) and keep one copy of the name.
   */
  nameOf(slot: number): string | undefined {
    return this.#names[slot];
  }

  /** Free a name's slot; returns it (undefined when the name had none). */
  release(name: string): number | undefined {
    const slot = this.#slots.get(name);
    if (slot === undefined) return undefined;
    this.#slots.delete(name);
    this.#names[slot] = undefined;
    this.#free.push(slot);
    const c = this.#released.chunk(slot);
    c[this.#released.offset(slot)]!++;
    return slot;
  }

  /** The slot's generation: 1 at first, one more each time it is released (a view that held it before then holds nothing there now). */
  generation(slot: number): number {
    return this.#released.chunk(slot)[this.#released.offset(slot)]! + 1;
  }

  clear(): void {
    for (const slot of this.#slots.values()) this.#released.chunk(slot)[this.#released.offset(slot)]!++;
    this.#slots.clear();
    this.#names.length = 0;
    this.#free.length = 0;
    this.#next = 0;
  }

  names(): IterableIterator<string> {
    return this.#slots.keys();
  }

  entries(): IterableIterator<[string, number]> {
    return this.#slots.entries();
  }
}

type Typed = Float32Array | Float64Array | Int32Array | Uint8Array;

/**
 * Fixed-size records of `width` elements per slot, in chunks of 1,024 slots.
 * A record never moves (growth adds a chunk), so the memory held is the
 * records plus at most one partly used chunk, not the doubling slack of one
 * growing array. Read a record at `chunk(slot)[offset(slot) + i]`.
 */
export class Slab<A extends Typed> {
  readonly width: number;
  readonly #make: (length: number) => A;
  readonly #fill: number;
  readonly #chunks: A[] = [];

  /** `fill`: what a new chunk's elements start as (0 unless told). */
  constructor(width: number, make: (length: number) => A, fill = 0) {
    if (!Number.isInteger(width) || width <= 0) throw new TidecastError(ErrorCodes.INTERNAL, `width must be a positive integer, got ${width}`);
    this.width = width;
    this.#make = make;
    this.#fill = fill;
  }

  /** The chunk holding a slot's record (allocated on first use). */
  chunk(slot: number): A {
    const c = slot >> CHUNK_BITS;
    while (this.#chunks.length <= c) {
      const a = this.#make(CHUNK * this.width);
      if (this.#fill !== 0) a.fill(this.#fill);
      this.#chunks.push(a);
    }
    return this.#chunks[c]!;
  }

  /** Where a slot's record starts in its chunk. */
  offset(slot: number): number {
    return (slot & MASK) * this.width;
  }

  /** Set a slot's whole record to one value. */
  fill(slot: number, value: number): void {
    const o = this.offset(slot);
    this.chunk(slot).fill(value, o, o + this.width);
  }

  /** A copy of a slot's record. */
  read(slot: number): A {
    const o = this.offset(slot);
    return this.chunk(slot).slice(o, o + this.width) as A;
  }

  /** Overwrite a slot's record (from its start; `values` may be shorter). */
  write(slot: number, values: ArrayLike<number>): void {
    this.chunk(slot).set(values, this.offset(slot));
  }

  /** Bytes allocated (every chunk). */
  get bytes(): number {
    return this.#chunks.reduce((n, c) => n + c.byteLength, 0);
  }
}

/**
 * A per-stream table's hold on the slots of an index, its own or one it
 * shares with other tables (the step assembler's: then the stream costs one
 * map entry for all of them, and the caller can pass the slot instead of the
 * name). The view knows which slots it holds columns for; a slot the index
 * released and handed to another stream since is not held any more (its
 * generation moved on), so a table never reads another stream's leftovers.
 * On a shared index the view never takes or releases names: the index's
 * owner does.
 */
export class SlotView {
  readonly index: SlotIndex;
  /** Whether the view owns its index (takes and releases names in it). */
  readonly owns: boolean;
  /** Per slot, the index generation the view's columns belong to (0: none). */
  #gen = new Slab(1, (n) => new Int32Array(n));
  #held = 0;

  constructor(shared?: SlotIndex) {
    this.index = shared ?? new SlotIndex();
    this.owns = shared === undefined;
  }

  /** Streams held (a stream the owner of a shared index released before the view did counts until its slot is held again). */
  get size(): number {
    return this.#held;
  }

  /** Whether the view holds columns for the slot's current stream. */
  holds(slot: number): boolean {
    return this.#gen.chunk(slot)[this.#gen.offset(slot)] === this.index.generation(slot);
  }

  /** The slot of a stream the view holds. */
  get(name: string): number | undefined {
    const slot = this.index.get(name);
    return slot !== undefined && this.holds(slot) ? slot : undefined;
  }

  /**
   * Hold a stream's slot; `init` runs when the view did not hold it (its
   * columns hold whatever an earlier stream left). Undefined on a shared
   * index whose owner does not know the name.
   */
  hold(name: string, init: (slot: number) => void): number | undefined {
    const slot = this.owns ? this.index.take(name) : this.index.get(name);
    if (slot !== undefined) this.holdAt(slot, init);
    return slot;
  }

  /**
   * `hold`, given the stream's slot in `index` when the caller has it: taken
   * as is (no lookup by name) when that is the index the view shares.
   */
  holdFrom(name: string, at: number | undefined, index: SlotIndex | undefined, init: (slot: number) => void): number | undefined {
    if (at === undefined || index !== this.index || this.owns) return this.hold(name, init);
    this.holdAt(at, init);
    return at;
  }

  /** Hold a slot the caller took from the index (see `hold`). */
  holdAt(slot: number, init: (slot: number) => void): void {
    const c = this.#gen.chunk(slot);
    const o = this.#gen.offset(slot);
    const gen = this.index.generation(slot);
    if (c[o] === gen) return;
    if (c[o] === 0) this.#held++;
    c[o] = gen;
    init(slot);
  }

  /** Stop holding a stream (on its own index, release it there too); returns its slot. */
  release(name: string): number | undefined {
    const slot = this.get(name);
    if (slot === undefined) return undefined;
    this.#gen.chunk(slot)[this.#gen.offset(slot)] = 0;
    this.#held--;
    if (this.owns) this.index.release(name);
    return slot;
  }

  /** Hold nothing (on its own index, clear it too). */
  clear(): void {
    this.#gen = new Slab(1, (n) => new Int32Array(n));
    this.#held = 0;
    if (this.owns) this.index.clear();
  }

  /** The streams held, with their slots. */
  *entries(): IterableIterator<[string, number]> {
    for (const entry of this.index.entries()) if (this.holds(entry[1])) yield entry;
  }

  *names(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }
}
