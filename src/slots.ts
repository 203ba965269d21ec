/** Slots per chunk of a slab: growth adds one chunk, never copies, never doubles. */
const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;
const MASK = CHUNK - 1;

/**
 * Stream names to small integer slots, reused after release: the one Map a
 * per-stream table needs, every other column being a typed array indexed by slot.
 */
export class SlotIndex {
  readonly #slots = new Map<string, number>();
  /** Each slot's name: the one string object per stream that the caller can pass on (`nameOf`). */
  readonly #names: Array<string | undefined> = [];
  readonly #free: number[] = [];
  #next = 0;

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
    return slot;
  }

  clear(): void {
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
    if (!Number.isInteger(width) || width <= 0) throw new RangeError(`width must be a positive integer, got ${width}`);
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
