/**
 * Per-stream recurrent state of one model, in one contiguous Float32Array.
 *
 * Each stream owns a slot of `slotSize` floats (all its state tensors back to
 * back); new slots start at zero, the state an RNN starts a sequence with.
 * Freed slots go on a free list and are reused before the slab grows; growth
 * doubles capacity so appends stay amortised O(1).
 */
export class StateSlab {
  readonly slotSize: number;
  #data: Float32Array;
  #capacity: number;
  #next = 0;
  #free: number[] = [];
  #slots = new Map<string, number>();

  constructor(slotSize: number, initialCapacity = 64) {
    if (!Number.isInteger(slotSize) || slotSize <= 0) throw new RangeError(`slotSize must be a positive integer, got ${slotSize}`);
    this.slotSize = slotSize;
    this.#capacity = Math.max(1, initialCapacity);
    this.#data = new Float32Array(this.#capacity * slotSize);
  }

  /** Number of streams that hold a slot. */
  get size(): number {
    return this.#slots.size;
  }

  has(streamId: string): boolean {
    return this.#slots.has(streamId);
  }

  streamIds(): string[] {
    return [...this.#slots.keys()];
  }

  /** The slot of a stream, allocating a zeroed one on first use. */
  slotOf(streamId: string): number {
    let slot = this.#slots.get(streamId);
    if (slot === undefined) {
      slot = this.#free.pop() ?? this.#grow();
      this.#data.fill(0, slot * this.slotSize, (slot + 1) * this.slotSize);
      this.#slots.set(streamId, slot);
    }
    return slot;
  }

  /** The live backing array; valid until the next slot allocation. */
  get data(): Float32Array {
    return this.#data;
  }

  /** Offset of a slot's first float in `data`. */
  offsetOf(slot: number): number {
    return slot * this.slotSize;
  }

  /** Zero a stream's state, as if it had just started. */
  reset(streamId: string): void {
    const slot = this.#slots.get(streamId);
    if (slot !== undefined) this.#data.fill(0, slot * this.slotSize, (slot + 1) * this.slotSize);
  }

  /** Forget a stream and return its slot to the free list. */
  release(streamId: string): boolean {
    const slot = this.#slots.get(streamId);
    if (slot === undefined) return false;
    this.#slots.delete(streamId);
    this.#free.push(slot);
    return true;
  }

  /** A copy of a stream's state (for checkpoints and tests). */
  read(streamId: string): Float32Array | undefined {
    const slot = this.#slots.get(streamId);
    return slot === undefined ? undefined : this.#data.slice(slot * this.slotSize, (slot + 1) * this.slotSize);
  }

  /** Overwrite a stream's state (restoring a checkpoint). */
  write(streamId: string, state: Float32Array): void {
    if (state.length !== this.slotSize) throw new RangeError(`state has ${state.length} floats, slot holds ${this.slotSize}`);
    const offset = this.offsetOf(this.slotOf(streamId)); // may grow #data: resolve it first
    this.#data.set(state, offset);
  }

  #grow(): number {
    if (this.#next === this.#capacity) {
      this.#capacity *= 2;
      const bigger = new Float32Array(this.#capacity * this.slotSize);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    return this.#next++;
  }
}
