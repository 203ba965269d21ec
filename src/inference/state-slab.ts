import { Slab, SlotView, type SlotIndex } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';

/**
 * Per-stream recurrent state of one model, in Float32Array chunks.
 *
 * Each stream owns a slot of `slotSize` floats (all its state tensors back to
 * back); new slots start at zero, the state an RNN starts a sequence with.
 * Freed slots are reused before the slab grows; growth adds a chunk of 1,024
 * slots, so the memory held is the states plus at most one partly used chunk.
 * Slots come from the slab's own index, or from one it shares (the step
 * assembler's, see `SlotView`): on a shared index a stream must be known to
 * the index's owner before it can hold state.
 */
export class StateSlab {
  readonly slotSize: number;
  readonly #index: SlotView;
  readonly #slab: Slab<Float32Array>;
  readonly #zero = (slot: number): void => this.#slab.fill(slot, 0);

  constructor(slotSize: number, shared?: SlotIndex) {
    if (!Number.isInteger(slotSize) || slotSize <= 0) throw new TidecastError(ErrorCodes.INTERNAL, `slotSize must be a positive integer, got ${slotSize}`);
    this.slotSize = slotSize;
    this.#slab = new Slab(slotSize, (n) => new Float32Array(n));
    this.#index = new SlotView(shared);
  }

  /** The index the slab shares, if it shares one. */
  get sharedIndex(): SlotIndex | undefined {
    return this.#index.owns ? undefined : this.#index.index;
  }

  /** Number of streams that hold a slot. */
  get size(): number {
    return this.#index.size;
  }

  has(streamId: string): boolean {
    return this.#index.get(streamId) !== undefined;
  }

  streamIds(): string[] {
    return [...this.#index.names()];
  }

  /** The slot of a stream that holds one. */
  peek(streamId: string): number | undefined {
    return this.#index.get(streamId);
  }

  /**
   * The slot of a stream, allocating a zeroed one on first use; `at`: its
   * slot in `index`, when the caller has it: taken as is (no lookup by name)
   * when that is the index the slab shares.
   */
  slotOf(streamId: string, at?: number, index?: SlotIndex): number {
    const slot = this.#index.holdFrom(streamId, at, index, this.#zero);
    if (slot === undefined) throw new TidecastError(ErrorCodes.INTERNAL, `stream ${streamId} is not in the shared slot index`);
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
    if (state.length !== this.slotSize) throw new TidecastError(ErrorCodes.INTERNAL, `state has ${state.length} floats, slot holds ${this.slotSize}`);
    this.#slab.write(this.slotOf(streamId), state);
  }
}
