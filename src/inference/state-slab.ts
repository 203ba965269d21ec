import { Slab, SlotIndex } from '../slots.js';

/**
 * Per-stream recurrent state of one model, in Float32Array chunks.
 *
 * Each stream owns a slot of `slotSize` floats (all its state tensors back to
 * back); new slots start at zero, the state an RNN starts a sequence with.
 * Freed slots are reused before the slab grows; growth adds a chunk of 1,024
 * slots, so the memory held is the states plus at most one partly used chunk.
 */
export class StateSlab {
  readonly slotSize: number;
  readonly #index = new SlotIndex();
  readonly #slab: Slab<Float32Array>;

  constructor(slotSize: number) {
    if (!Number.isInteger(slotSize) || slotSize <= 0) throw new RangeError(`slotSize must be a positive integer, got ${slotSize}`);
    this.slotSize = slotSize;
    this.#slab = new Slab(slotSize, (n) => new Float32Array(n));
  }

  /** Number of streams that hold a slot. */
  get size(): number {
    return this.#index.size;
  }

  has(streamId: string): boolean {
    return this.#index.has(streamId);
  }

  streamIds(): string[] {
    return [...this.#index.names()];
  }

  /** The slot of a stream that holds one. */
  peek(streamId: string): number | undefined {
    return this.#index.get(streamId);
  }

  /** The slot of a stream, allocating a zeroed one on first use. */
  slotOf(streamId: string): number {
    const known = this.#index.get(streamId);
    if (known !== undefined) return known;
    const slot = this.#index.take(streamId);
    this.#slab.fill(slot, 0);
    return slot;
  }

  /** The array that holds a slot's state (it never moves). */
  chunk(slot: number): Float32Array {
    return this.#slab.chunk(slot);
  }

  /** Offset of a slot's first float in its chunk. */
  offsetOf(slot: number): number {
    return this.#slab.offset(slot);
  }

  /** Zero a stream's state, as if it had just started. */
  reset(streamId: string): void {
    const slot = this.#index.get(streamId);
    if (slot !== undefined) this.#slab.fill(slot, 0);
  }

  /** Forget a stream and return its slot to the free list. */
  release(streamId: string): boolean {
    return this.#index.release(streamId) !== undefined;
  }

  /** A copy of a stream's state (for checkpoints and tests). */
  read(streamId: string): Float32Array | undefined {
    const slot = this.#index.get(streamId);
    return slot === undefined ? undefined : this.#slab.read(slot);
  }

  /** Overwrite a stream's state (restoring a checkpoint). */
  write(streamId: string, state: Float32Array): void {
    if (state.length !== this.slotSize) throw new RangeError(`state has ${state.length} floats, slot holds ${this.slotSize}`);
    this.#slab.write(this.slotOf(streamId), state);
  }
}
