import type { Logger } from '../log.js';
import type { LoadedModel } from './model.js';
import { SessionThread, type RunOutput, type RunSession } from './session-thread.js';

/**
 * `thread: 'auto'`: a model whose run holds the calling thread longer than
 * this (ms) AUTO_SLOW_RUNS times in a row moves to a session thread. Below
 * it, a session thread costs more than it saves on a small machine: a copy
 * of every batch's tensors each way, a second V8 heap and malloc arena (about
 * 110 bytes per stream at 100,000 streams), and one more thread to schedule
 * beside the broker; on this 2-core machine the shipped models (a batch of
 * 256 in about 0.4 ms) ran with as good or better latency on the main thread
 * (README, "Where inference runs").
 */
export const AUTO_THREAD_ABOVE_MS = 2;
const AUTO_SLOW_RUNS = 3;

export interface GraphPlacementOptions {
  /** true: on a session thread of the model's own; false: on the calling thread; 'auto': here until runs hold this thread too long. */
  thread: boolean | 'auto';
  /** With 'auto': how long (ms) a run may hold the calling thread. */
  threadAboveMs: number;
  log: Logger;
  /** 'auto' moved the model to a session thread: from now on two batches may run at once. */
  onMoved(): void;
  /** Whether the engine is closed: a session thread that finished starting is then not used. */
  closed(): boolean;
}

/**
 * Where one engine's graph runs (its `run`, handed to every step runner of
 * the engine): on the calling thread, on a session thread of the model's own
 * (`SessionThread`), or, with 'auto', on the calling thread until its runs
 * hold it longer than `threadAboveMs`, then on a session thread.
 */
export class GraphPlacement {
  readonly #opts: GraphPlacementOptions;
  #model: LoadedModel;
  #thread: SessionThread | null;
  /** 'auto': consecutive runs over the bound, and whether a session thread is starting (or failed to: then the model stays here). */
  #slowRuns = 0;
  #moving = false;
  #stayHere = false;
  /** Runs a graph wherever the model is now. */
  readonly run: RunSession = (feeds) => this.#runGraph(feeds);

  constructor(model: LoadedModel, options: GraphPlacementOptions) {
    this.#opts = options;
    this.#model = model;
    this.#thread = options.thread === true ? new SessionThread(model, options.log) : null;
  }

  /** Resolves once graphs can run (the session thread started, or fell back to this thread). */
  get ready(): Promise<void> {
    return this.#thread?.ready ?? Promise.resolve();
  }

  /** 'thread' (a session thread) or 'main' (the calling thread). */
  get runsOn(): 'thread' | 'main' {
    return this.#thread?.running ? 'thread' : 'main';
  }

  /** Whether a session thread runs the graph (the engine then keeps two batches in flight). */
  get onThread(): boolean {
    return this.#thread !== null;
  }

  /** Hot reload: run `next` from now on (on a session thread of its own, started first, when `thread` is true); 'auto' times it afresh. */
  async replace(next: LoadedModel): Promise<void> {
    const thread = this.#opts.thread === true ? new SessionThread(next, this.#opts.log) : null;
    await thread?.ready;
    const old = this.#thread;
    this.#model = next;
    this.#thread = thread;
    this.#slowRuns = 0;
    this.#stayHere = false;
    await old?.close();
  }

  /** Stop the session thread, if any. */
  async close(): Promise<void> {
    await this.#thread?.close();
  }

  #runGraph(feeds: Parameters<RunSession>[0]): Promise<Record<string, RunOutput>> {
    if (this.#thread) return this.#thread.run(feeds);
    if (this.#opts.thread !== 'auto' || this.#stayHere) return this.#model.session.run(feeds) as unknown as Promise<Record<string, RunOutput>>;
    return this.#runTimed(feeds);
  }

  /**
   * A run on this thread, timed. onnxruntime-node runs the graph in a
   * setImmediate callback it queues when called; one queued just before it
   * and one just after bracket that callback.
   */
  async #runTimed(feeds: Parameters<RunSession>[0]): Promise<Record<string, RunOutput>> {
    let started = 0;
    setImmediate(() => (started = performance.now()));
    const run = this.#model.session.run(feeds);
    const held = new Promise<number>((resolve) => setImmediate(() => resolve(performance.now() - started)));
    const out = (await run) as unknown as Record<string, RunOutput>;
    this.#timed(await held);
    return out;
  }

  /** 'auto': after AUTO_SLOW_RUNS runs in a row over the bound, start a session thread and run there once it is ready. */
  #timed(ms: number): void {
    const { threadAboveMs, log } = this.#opts;
    if (ms <= threadAboveMs) {
      this.#slowRuns = 0;
      return;
    }
    if (++this.#slowRuns < AUTO_SLOW_RUNS || this.#moving || this.#stayHere) return;
    this.#moving = true;
    const model = this.#model;
    const thread = new SessionThread(model, log);
    void thread.ready.then(() => {
      this.#moving = false;
      const closed = this.#opts.closed();
      if (closed || model !== this.#model || this.#thread || !thread.running) {
        // Stopped or reloaded meanwhile, or the thread failed (logged): the model stays on this thread.
        if (!thread.running && !closed && model === this.#model) this.#stayHere = true;
        void thread.close();
        return;
      }
      this.#thread = thread;
      this.#opts.onMoved();
      log.info({ runMs: Math.round(ms * 100) / 100, boundMs: threadAboveMs, runs: AUTO_SLOW_RUNS }, 'batches hold the main thread too long: the model runs on a session thread of its own from now on');
    });
  }
}
