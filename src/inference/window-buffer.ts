import { StateSlab } from './state-slab.js';

/**
 * The last `window` steps of each stream, oldest first, for models that cannot
 * stream (bidirectional RNNs, many-to-one windows).
 *
 * Each stream's window is one slab slot; a push shifts it left by one step.
 * Shifting (window × features floats, 56 for weather-brnn) costs far less than
 * the window's forward pass, and keeps the slot already in the order the model
 * reads, so a batch is built with one copy per stream.
 */
export class WindowBuffer {
  readonly window: number;
  readonly features: number;
  readonly #slab: StateSlab;
  readonly #filled = new Map<string, number>();

  constructor(window: number, features: number) {
    this.window = window;
    this.features = features;
    this.#slab = new StateSlab(window * features);
  }

  get size(): number {
    return this.#slab.size;
  }

  /** The stream's slot, taken (an empty window) on first use. */
  slotOf(streamId: string): number {
    return this.#slab.slotOf(streamId);
  }

  /** The stream's slot when it holds a window. */
  peek(streamId: string): number | undefined {
    return this.#slab.peek(streamId);
  }

  /** Append a step; returns how many steps the window now holds (at most `window`). */
  push(streamId: string, step: Float32Array): number {
    const slot = this.#slab.slotOf(streamId);
    const off = this.#slab.offsetOf(slot);
    const data = this.#slab.chunk(slot);
    const span = this.window * this.features;
    data.copyWithin(off, off + this.features, off + span);
    data.set(step, off + span - this.features);
    const filled = Math.min(this.window, (this.#filled.get(streamId) ?? 0) + 1);
    this.#filled.set(streamId, filled);
    return filled;
  }

  /** The stream's window (oldest step first) as a view into the backing array. */
  view(streamId: string): Float32Array {
    const slot = this.#slab.slotOf(streamId);
    const off = this.#slab.offsetOf(slot);
    return this.#slab.chunk(slot).subarray(off, off + this.window * this.features);
  }

  reset(streamId: string): void {
    this.#slab.reset(streamId);
    this.#filled.delete(streamId);
  }

  has(streamId: string): boolean {
    return this.#slab.has(streamId);
  }

  streamIds(): string[] {
    return this.#slab.streamIds();
  }

  /** A copy of the stream's window and how many steps it holds (for checkpoints). */
  read(streamId: string): { data: Float32Array; filled: number } | undefined {
    const data = this.#slab.read(streamId);
    return data && { data, filled: this.#filled.get(streamId) ?? 0 };
  }

  /** Restore a stream's window from a checkpoint. */
  write(streamId: string, data: Float32Array, filled: number): void {
    this.#slab.write(streamId, data);
    this.#filled.set(streamId, Math.min(this.window, Math.max(0, filled)));
  }

  /** Forget a stream (evicted after idling; its window was spilled first). */
  release(streamId: string): void {
    this.#slab.release(streamId);
    this.#filled.delete(streamId);
  }
}
