import { ErrorCodes, TidecastError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { MicroBatcher, type Timer } from './micro-batcher.js';
import { loadModel, type LoadedModel, type LoadModelOptions } from './model.js';
import { AUTO_THREAD_ABOVE_MS, GraphPlacement } from './graph-placement.js';
import type { InputReader, StepRequest, StepResult } from './step-request.js';
import { StepRunner } from './step-runner.js';
import type { SlotIndex } from '../slots.js';

export interface EngineOptions<C = unknown> {
  /** Most streams in one `session.run` (default 256: bench/engine measured the knee there). */
  maxBatch?: number;
  /** Longest an idle engine holds a step waiting for company (default 5 ms). */
  maxDelayMs?: number;
  timer?: Timer;
  /**
   * Where the graph runs: true, on a session thread of the model's own (see
   * SessionThread); false, on the calling thread; 'auto', on the calling
   * thread until its runs hold it longer than `threadAboveMs`, then on a
   * session thread (default false).
   */
  thread?: boolean | 'auto';
  /** With `thread: 'auto'`: how long (ms) a run may hold the calling thread before the model moves to a session thread (default AUTO_THREAD_ABOVE_MS). */
  threadAboveMs?: number;
  /** Where resets and failed batches are logged (default: nowhere). */
  log?: Logger;
  /** Receives every batch's results, in the order the batch ran. */
  onResults(results: StepResult<C>[], model: LoadedModel): void;
  /** Each batch's size and duration (gather, run, checks, scatter), for metrics. */
  onBatch?(size: number, seconds: number): void;
  /** A batch whose `session.run` failed; its steps produced nothing. */
  onError?(err: unknown, requests: StepRequest<C>[]): void;
}

/** Running totals, for logs and metrics. */
export interface EngineStats {
  steps: number;
  batches: number;
  resets: number;
  failedBatches: number;
}

/**
 * One model, its per-stream state and its micro-batcher: `submit` a step for a
 * stream, results arrive at `onResults` batch by batch.
 */
export class InferenceEngine<C = unknown> {
  #model: LoadedModel;
  #runner: StepRunner;
  /** Where every runner of this engine runs its graph. */
  readonly #placement: GraphPlacement;
  readonly stats: EngineStats = { steps: 0, batches: 0, resets: 0, failedBatches: 0 };
  readonly #batcher: MicroBatcher<StepRequest<C>, number>;
  #closed: Promise<void> | null = null;
  /** The slot index the state slab shares (`shareSlots`). */
  #slots: SlotIndex | undefined;

  constructor(model: LoadedModel, options: EngineOptions<C>) {
    this.#model = model;
    const onError = options.onError ?? (() => undefined);
    const log = (options.log ?? silentLogger).child({ component: 'engine', model: model.name });
    this.#placement = new GraphPlacement(model, {
      thread: options.thread ?? false,
      threadAboveMs: options.threadAboveMs ?? AUTO_THREAD_ABOVE_MS,
      log,
      onMoved: () => (this.#batcher.maxInFlight = 2),
      closed: () => this.#closed !== null,
    });
    this.#runner = new StepRunner(model, this.#placement.run);
    this.#batcher = new MicroBatcher<StepRequest<C>, number>({
      maxBatch: options.maxBatch ?? 256,
      maxDelayMs: options.maxDelayMs ?? 5,
      // On a session thread the next batch's graph runs while this thread handles the last one's results.
      maxInFlight: this.#placement.onThread ? 2 : 1,
      timer: options.timer,
      // The stream's slot, taken at submit: a batch's bookkeeping hashes a number, not the name.
      key: (r) => r.slot!,
      slotKeys: true,
      run: async (batch) => {
        const started = process.hrtime.bigint();
        const results = await this.runner.run(batch);
        options.onBatch?.(batch.length, Number(process.hrtime.bigint() - started) / 1e9);
        this.stats.batches++;
        this.stats.steps += batch.length;
        for (const r of results) {
          if (r.status !== 'reset') continue;
          this.stats.resets++;
          log.warn({ stream: r.streamId, reason: r.reason }, 'non-finite model output: stream state reset, step not stored');
        }
        options.onResults(results, this.#model);
      },
      onError: (err, batch) => {
        this.stats.failedBatches++;
        log.error({ err, steps: batch.length }, 'batch failed: its steps produced no forecast');
        onError(err, batch);
      },
    });
  }

  /** Resolves once the engine can run batches (its session thread started, or fell back to this thread). */
  get ready(): Promise<void> {
    return this.#placement.ready;
  }

  /** Where batches run: 'thread' (a session thread) or 'main' (the calling thread). */
  get runsOn(): 'thread' | 'main' {
    return this.#placement.runsOn;
  }

  /** Load a model file and wrap it in an engine. */
  static async load<C>(file: string, load: LoadModelOptions, options: EngineOptions<C>): Promise<InferenceEngine<C>> {
    return new InferenceEngine<C>(await loadModel(file, load), options);
  }

  /**
   * Queue one step of a stream. `input` must hold the model's feature count,
   * scaled; `context` comes back with the result. `slot`, `slots`: the
   * stream's slot in an index, taken without a lookup when it is the one the
   * engine shares (`shareSlots`).
   */
  submit(streamId: string, input: Float32Array, context?: C, options?: { resetBefore?: boolean }, slot?: number, slots?: SlotIndex): void {
    if (this.#closed) throw new TidecastError(ErrorCodes.STOPPED, `engine for ${this.model.name} is closed`);
    const F = this.model.signature.featureCount;
    if (input.length !== F) {
      throw new TidecastError(ErrorCodes.STEP_SHAPE, `stream ${streamId}: step has ${input.length} features, model ${this.model.name} takes ${F}`);
    }
    this.#batcher.push({ streamId, slot: this.#runner.slotOf(streamId, slot, slots), input, context, resetBefore: options?.resetBefore === true });
  }

  /**
   * `submit` for a step whose input `reader` writes from `values` into the
   * batch tensor when the batch runs (scaled, in the model's feature order):
   * no input vector per step. `values` must not change until then.
   */
  submitRead(streamId: string, values: object, reader: InputReader<C>, context?: C, options?: { resetBefore?: boolean }, slot?: number, slots?: SlotIndex): void {
    if (this.#closed) throw new TidecastError(ErrorCodes.STOPPED, `engine for ${this.model.name} is closed`);
    this.#batcher.push({ streamId, slot: this.#runner.slotOf(streamId, slot, slots), input: values, reader, context, resetBefore: options?.resetBefore === true });
  }

  /**
   * Key the per-stream state by another table's slot index (the step
   * assembler's of the one route group that uses the model): one map entry
   * per stream for both, and `submit` takes the slot instead of looking up
   * the name. Only while no stream holds state; a model without a state
   * slab (windowed, stateless) keeps its own.
   */
  shareSlots(index: SlotIndex): void {
    if (this.#runner.streams > 0) throw new TidecastError(ErrorCodes.INTERNAL, `engine for ${this.model.name} holds streams: it cannot share a slot index now`);
    if (!this.#runner.slab) return;
    this.#slots = index;
    this.#runner = new StepRunner(this.#model, this.#placement.run, index);
  }

  /** Steps waiting for a batch. */
  get queueDepth(): number {
    return this.#batcher.pending;
  }

  /** True while a batch is running. */
  get busy(): boolean {
    return this.#batcher.busy;
  }

  /** Streams holding state in memory. */
  get streams(): number {
    return this.runner.streams;
  }

  /** Whether none of the stream's steps waits or runs: its state reflects every step submitted. */
  quiet(streamId: string): boolean {
    const slot = this.#runner.peekSlot(streamId);
    return slot === undefined || !this.#batcher.has(slot);
  }

  /** A copy of a stream's state for a checkpoint (call while the stream is quiet). */
  exportStream(streamId: string): { state: Float32Array; filled: number } | undefined {
    return this.runner.exportStream(streamId);
  }

  /**
   * Restore a stream's state from a checkpoint. Returns false (and leaves the
   * stream at zero state) when the state does not fit this model's graph.
   */
  importStream(streamId: string, state: Float32Array, filled: number): boolean {
    if (state.length !== this.runner.streamStateSize) return false;
    this.runner.importStream(streamId, state, filled);
    return true;
  }

  /** Free a stream's state (evicted after idling; spill it first). */
  releaseStream(streamId: string): void {
    this.runner.releaseStream(streamId);
  }

  /** The model the engine runs now (a hot reload replaces it). */
  get model(): LoadedModel {
    return this.#model;
  }

  /** Per-stream state and the batch runner of the current model. */
  get runner(): StepRunner {
    return this.#runner;
  }

  /**
   * Hot reload: run the next batches on `next`. Call while drained (no batch
   * running, nothing queued). Each stream keeps its state when the two graphs'
   * state has the same size per stream; otherwise every stream starts over.
   * Returns whether state was kept. The old session is released.
   */
  async replaceModel(next: LoadedModel): Promise<{ stateKept: boolean; streams: number }> {
    if (this.#batcher.busy || this.#batcher.pending > 0) throw new TidecastError(ErrorCodes.INTERNAL, 'replaceModel needs a drained engine');
    const old = this.#runner;
    const previous = this.#model;
    await this.#placement.replace(next);
    const runner = new StepRunner(next, this.#placement.run, this.#slots);
    const sameShape =
      old.streamStateSize === runner.streamStateSize &&
      next.mode === previous.mode &&
      next.signature.states.map((s) => s.perStream).join(',') === previous.signature.states.map((s) => s.perStream).join(',');
    const ids = old.streamIds();
    if (sameShape) {
      for (const id of ids) {
        const st = old.exportStream(id);
        if (st) runner.importStream(id, st.state, st.filled);
      }
    }
    this.#model = next;
    this.#runner = runner;
    this.#batcher.maxInFlight = this.#placement.onThread ? 2 : 1;
    await previous.session.release();
    return { stateKept: sameShape, streams: ids.length };
  }

  /** Run everything queued; resolves when all results have been delivered. */
  drain(): Promise<void> {
    return this.#batcher.drain();
  }

  /**
   * Drain (waiting at most `drainMs`), then release the onnxruntime session.
   * Safe to call twice. Steps still queued after the wait produce nothing.
   */
  close(drainMs = Infinity): Promise<void> {
    const drained = Number.isFinite(drainMs)
      ? Promise.race([this.#batcher.drain(), new Promise<void>((r) => setTimeout(r, drainMs).unref())])
      : this.#batcher.drain();
    this.#closed ??= drained.then(async () => {
      await this.#placement.close();
      await this.#model.session.release();
    });
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
