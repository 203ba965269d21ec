import ort from 'onnxruntime-node';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { LoadedModel } from './model.js';
import { runInProcess, type RunSession } from './session-thread.js';
import { SlotIndex } from '../slots.js';
import { StateSlab } from './state-slab.js';
import { readRow, rowLayout, writeRow, type RowLayout } from './tensor-rows.js';
import type { StepRequest, StepResult } from './step-request.js';
import { WindowBuffer } from './window-buffer.js';

interface BatchShapes {
  inputDims: number[];
  stateDims: number[][];
  stateLayouts: RowLayout[];
}

/** A Float32Array whose memory is not zeroed first (its caller writes every element). */
const uninitializedFloats = (n: number): Float32Array => new Float32Array(Buffer.allocUnsafeSlow(n * 4).buffer, 0, n);

const concreteDims = (shape: readonly (number | string)[], batchAxis: number, batch: number): number[] =>
  shape.map((d, i) => (i === batchAxis ? batch : (d as number)));

/**
 * Runs batches of steps (at most one per stream) through a model, carrying each
 * stream's recurrent state in a StateSlab (stateful mode) or its last steps in a
 * WindowBuffer (windowed mode). Runs may overlap only when no stream is in
 * two of them (the micro-batcher's keys see to it).
 */
export class StepRunner {
  readonly model: LoadedModel;
  readonly slab: StateSlab | null;
  readonly windows: WindowBuffer | null;
  readonly #stateOffsets: number[] = [];
  readonly #zeroStates = new Map<number, Record<string, ort.Tensor>>();
  readonly #shapes = new Map<number, BatchShapes>();
  readonly #outputLayouts = new Map<string, RowLayout>();
  /** Slots of a model that keeps neither state nor a window. */
  readonly #keys: SlotIndex | null;
  readonly #runSession: RunSession;

  /**
   * `runSession`: where the graph runs (default: the model's session, on this
   * thread). `slots`: an index the state slab shares (see `SlotView`).
   */
  constructor(model: LoadedModel, runSession: RunSession = runInProcess(model), slots?: SlotIndex) {
    this.model = model;
    this.#runSession = runSession;
    const sig = model.signature;
    let slotSize = 0;
    for (const s of sig.states) {
      this.#stateOffsets.push(slotSize);
      slotSize += s.perStream;
    }
    this.slab = model.mode === 'stateful' && slotSize > 0 ? new StateSlab(slotSize, slots) : null;
    this.windows = model.mode === 'windowed' ? new WindowBuffer(model.window!, sig.featureCount) : null;
    this.#keys = this.slab || this.windows ? null : new SlotIndex();
  }

  /**
   * The stream's slot in this runner (its state's or its window's, taken on
   * first use; a model with neither keeps a slot anyway): a number that stands
   * for the stream in a batch's bookkeeping, where a name would be hashed.
   * `at`, `index`: the stream's slot in an index the state slab may share.
   */
  slotOf(streamId: string, at?: number, index?: SlotIndex): number {
    return this.slab?.slotOf(streamId, at, index) ?? this.windows?.slotOf(streamId) ?? this.#keys!.take(streamId);
  }

  /** The stream's slot when it holds one. */
  peekSlot(streamId: string): number | undefined {
    return this.slab ? this.slab.peek(streamId) : this.windows ? this.windows.peek(streamId) : this.#keys!.get(streamId);
  }

  /** Streams that currently hold state or a window. */
  get streams(): number {
    return this.slab?.size ?? this.windows?.size ?? 0;
  }

  /** A copy of a stream's state (or window), for checkpoints; undefined when it holds none. */
  exportStream(streamId: string): { state: Float32Array; filled: number } | undefined {
    if (this.slab) {
      const state = this.slab.read(streamId);
      return state && { state, filled: 0 };
    }
    const w = this.windows?.read(streamId);
    return w && { state: w.data, filled: w.filled };
  }

  /** The streams holding state or a window. */
  streamIds(): string[] {
    return this.slab?.streamIds() ?? this.windows?.streamIds() ?? [];
  }

  /** Size in floats of one stream's state (or window): a stored state of another size belongs to another graph. */
  get streamStateSize(): number {
    return this.slab?.slotSize ?? (this.windows ? this.windows.window * this.windows.features : 0);
  }

  /** Restore a stream's state (or window) from a checkpoint. */
  importStream(streamId: string, state: Float32Array, filled: number): void {
    if (this.slab) this.slab.write(streamId, state);
    else this.windows?.write(streamId, state, filled);
  }

  /** Forget a stream and free its memory (it was evicted after idling, its state spilled first). */
  releaseStream(streamId: string): void {
    this.slab?.release(streamId);
    this.windows?.release(streamId);
    this.#keys?.release(streamId);
  }

  /** Forget a stream's history: the next step starts from zero state / an empty window. */
  resetStream(streamId: string): void {
    this.slab?.reset(streamId);
    this.windows?.reset(streamId);
  }

  /** Run one batch. Stream ids in `batch` must be distinct. */
  async run<C>(batch: readonly StepRequest<C>[]): Promise<StepResult<C>[]> {
    const F = this.model.signature.featureCount;
    for (const r of batch) {
      if (!r.reader && (r.input as Float32Array).length !== F) {
        throw new TidecastError(ErrorCodes.STEP_SHAPE, `stream ${r.streamId}: step has ${(r.input as Float32Array).length} features, model ${this.model.name} takes ${F}`);
      }
    }
    for (const r of batch) if (r.resetBefore) this.resetStream(r.streamId);
    const results: StepResult<C>[] = [];
    const limit = this.model.signature.fixedBatch ?? batch.length;
    for (let i = 0; i < batch.length; i += limit) {
      const chunk = batch.slice(i, i + limit);
      results.push(...(this.windows ? await this.#runWindowed(chunk) : await this.#runStateful(chunk)));
    }
    return results;
  }

  /** Rows the graph is run with: the chunk, padded with zero rows to a fixed batch size. */
  #rows(n: number): number {
    return this.model.signature.fixedBatch ?? n;
  }

  async #runStateful<C>(chunk: readonly StepRequest<C>[]): Promise<StepResult<C>[]> {
    const sig = this.model.signature;
    const F = sig.featureCount;
    const n = chunk.length;
    const B = this.#rows(n);
    const slab = this.slab;
    const slots = slab ? chunk.map((r) => r.slot ?? slab.slotOf(r.streamId)) : [];
    const shapes = this.#shapesFor(B);
    const stateLayouts = shapes.stateLayouts;
    // Fresh tensors per batch. Reusing them measured slower, not faster:
    // allocating them keeps V8's collections frequent enough that the output
    // buffers onnxruntime allocates per run come from memory glibc still holds,
    // instead of pages it trimmed and must fault in again (perf: page faults in
    // napi_create_arraybuffer; bench/engine batch 256 fell from ~780,000 to
    // ~350,000 steps/s).
    // Every row is written below: no zero-fill, except for a fixed batch's padding rows.
    const input = uninitializedFloats(B * F);
    for (let b = 0; b < n; b++) writeInput(chunk[b]!, input, b * F); // with T = 1 every layout puts row b at b·F
    if (n < B) input.fill(0, n * F);
    const feeds: Record<string, ort.Tensor> = { [sig.input]: new ort.Tensor('float32', input, shapes.inputDims) };
    if (slab) {
      for (let k = 0; k < sig.states.length; k++) {
        const layout = stateLayouts[k]!;
        const offset = this.#stateOffsets[k]!;
        const tensor = uninitializedFloats(B * layout.rowSize);
        if (n < B) tensor.fill(0);
        for (let b = 0; b < n; b++) writeRow(layout, tensor, b, slab.chunk(slots[b]!), slab.offsetOf(slots[b]!) + offset);
        feeds[sig.states[k]!.input] = new ort.Tensor('float32', tensor, shapes.stateDims[k]!);
      }
    }
    const out = await this.#runSession(feeds);
    const y = out[sig.output]!;
    const yLayout = this.#outputLayout(y.dims);
    const yData = y.data as Float32Array;
    const newStates = sig.states.map((s) => out[s.output]!.data as Float32Array);

    // Each row is copied and checked for NaN/Infinity in one pass: the output
    // into its own array, the new state straight into the slab. A row that is
    // not finite leaves its stream at zero state and commits nothing.
    const results: StepResult<C>[] = new Array(n);
    for (let b = 0; b < n; b++) {
      const { streamId, context } = chunk[b]!;
      const output = new Float32Array(yLayout.rowSize);
      if (!readRow(yLayout, yData, b, output, 0)) {
        if (slab) slab.reset(streamId);
        results[b] = { streamId, status: 'reset', output: null, reason: 'non_finite_output', context };
        continue;
      }
      if (slab) {
        const slot = slots[b]!;
        const data = slab.chunk(slot);
        const at = slab.offsetOf(slot);
        let finite = true;
        for (let k = 0; k < newStates.length; k++) {
          if (!readRow(stateLayouts[k]!, newStates[k]!, b, data, at + this.#stateOffsets[k]!)) finite = false;
        }
        if (!finite) {
          slab.reset(streamId);
          results[b] = { streamId, status: 'reset', output: null, reason: 'non_finite_state', context };
          continue;
        }
      }
      results[b] = { streamId, status: 'ok', output, context };
    }
    return results;
  }

  async #runWindowed<C>(chunk: readonly StepRequest<C>[]): Promise<StepResult<C>[]> {
    const sig = this.model.signature;
    const windows = this.windows!;
    const T = windows.window;
    const results: StepResult<C>[] = new Array(chunk.length);
    const ready: number[] = [];
    const step = new Float32Array(sig.featureCount);
    chunk.forEach((r, i) => {
      writeInput(r, step, 0);
      if (windows.push(r.streamId, step) < T) results[i] = { streamId: r.streamId, status: 'warming', output: null, context: r.context };
      else ready.push(i);
    });
    if (ready.length === 0) return results;

    const B = this.#rows(ready.length);
    const inputDims = sig.inputBatchAxis === 0 ? [B, T, sig.featureCount] : [T, B, sig.featureCount];
    const inputLayout = rowLayout(inputDims, sig.inputBatchAxis);
    const input = new Float32Array(B * T * sig.featureCount);
    ready.forEach((i, b) => writeRow(inputLayout, input, b, windows.view(chunk[i]!.streamId), 0));
    const feeds: Record<string, ort.Tensor> = { [sig.input]: new ort.Tensor('float32', input, inputDims), ...this.#zeroStateFeeds(B) };
    const out = await this.#runSession(feeds);
    const y = out[sig.output]!;
    const yLayout = this.#outputLayout(y.dims);
    ready.forEach((i, b) => {
      const { streamId, context } = chunk[i]!;
      const output = new Float32Array(yLayout.rowSize);
      if (readRow(yLayout, y.data as Float32Array, b, output, 0)) {
        results[i] = { streamId, status: 'ok', output, context };
      } else {
        windows.reset(streamId);
        results[i] = { streamId, status: 'reset', output: null, reason: 'non_finite_output', context };
      }
    });
    return results;
  }

  /** Tensor dims and row layouts for a stateful batch of B rows, computed once per B. */
  #shapesFor(B: number): BatchShapes {
    let shapes = this.#shapes.get(B);
    if (!shapes) {
      const sig = this.model.signature;
      const F = sig.featureCount;
      const stateDims = sig.states.map((s) => concreteDims(s.shape, s.batchAxis, B));
      shapes = {
        inputDims: sig.inputTimeAxis < 0 ? [B, F] : sig.inputBatchAxis === 0 ? [B, 1, F] : [1, B, F],
        stateDims,
        stateLayouts: sig.states.map((s, k) => rowLayout(stateDims[k]!, s.batchAxis)),
      };
      this.#shapes.set(B, shapes);
    }
    return shapes;
  }

  /** The model's output row for each stream: the last time step when the output has a time axis. */
  #outputLayout(dims: readonly number[]): RowLayout {
    const key = dims.join(',');
    let layout = this.#outputLayouts.get(key);
    if (!layout) {
      const { outputBatchAxis, outputTimeAxis } = this.model.signature;
      layout = outputTimeAxis >= 0
        ? rowLayout(dims, outputBatchAxis, outputTimeAxis, dims[outputTimeAxis]! - 1)
        : rowLayout(dims, outputBatchAxis);
      this.#outputLayouts.set(key, layout);
    }
    return layout;
  }

  /** A stateful graph run windowed (the naive way) starts every window from zero state. */
  #zeroStateFeeds(B: number): Record<string, ort.Tensor> {
    let feeds = this.#zeroStates.get(B);
    if (!feeds) {
      feeds = {};
      for (const s of this.model.signature.states) {
        const dims = concreteDims(s.shape, s.batchAxis, B);
        feeds[s.input] = new ort.Tensor('float32', new Float32Array(B * s.perStream), dims);
      }
      this.#zeroStates.set(B, feeds);
    }
    return feeds;
  }
}

/** A request's input vector into `into` at `at`. */
function writeInput<C>(r: StepRequest<C>, into: Float32Array, at: number): void {
  if (r.reader) r.reader.read(r.input, into, at, r.context);
  else into.set(r.input as Float32Array, at);
}
