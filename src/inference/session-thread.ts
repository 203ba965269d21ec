import { Worker } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { silentLogger, type Logger } from '../log.js';
import type { LoadedModel } from './model.js';
import { ErrorCodes, TidecastError } from '../errors.js';

/** An output tensor as a run returns it. */
export interface RunOutput {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** How a batch's graph is run: on the main thread's session, or on a session thread. */
export type RunSession = (feeds: Record<string, ort.Tensor>) => Promise<Record<string, RunOutput>>;

/** A batch for the session thread: float32 tensors by input name. */
export interface SessionRequest {
  readonly id: number;
  readonly feeds: Record<string, RunOutput>;
}

/** Its answer: the outputs, or why the run failed. Id 0 answers the thread's start. */
export interface SessionReply {
  readonly id: number;
  readonly outputs: Record<string, RunOutput> | null;
  readonly error?: string;
}

interface Pending {
  readonly feeds: Record<string, ort.Tensor>;
  resolve(outputs: Record<string, RunOutput>): void;
  reject(err: Error): void;
}

/** Runs a batch on the main thread's own session. */
export function runInProcess(model: LoadedModel): RunSession {
  return async (feeds) => (await model.session.run(feeds)) as unknown as Record<string, RunOutput>;
}

/**
 * One model's onnxruntime session on a worker thread of its own. onnxruntime-node
 * runs a graph synchronously on the thread that calls it, so on the main thread
 * every batch would stop MQTT, admission and acknowledgements for its duration;
 * here the main thread gathers a batch's tensors, posts them (copied: a few
 * hundred KB per batch), and goes on while the thread runs them.
 *
 * The thread creates its session from the same file and options as the main
 * thread's (same provider). When it cannot start, or exits, the batches it
 * had and every later one run on the main thread's session instead (logged
 * once): a slower daemon, not a lost batch.
 */
export class SessionThread {
  readonly #model: LoadedModel;
  readonly #log: Logger;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  /** Where batches run once the thread cannot: the main thread's session. */
  readonly #inProcess: RunSession;
  #next = 1;
  /** Set once the thread cannot run batches: everything runs in process. */
  #fallback: string | null = null;
  #closing = false;
  /** Resolves once the thread's session is ready, or the thread failed (and batches run in process). */
  readonly ready: Promise<void>;

  constructor(model: LoadedModel, log: Logger = silentLogger) {
    this.#model = model;
    this.#log = log;
    this.#inProcess = runInProcess(model);
    this.#worker = new Worker(new URL('./session-worker.js', import.meta.url), { workerData: { file: model.path, options: model.sessionOptions, name: model.name } });
    let started: () => void = () => undefined;
    this.ready = new Promise<void>((resolve) => (started = resolve));
    this.#worker.on('message', (r: SessionReply) => {
      if (r.id === 0) {
        if (r.error !== undefined) this.#fail(`its session could not be created: ${r.error}`);
        started();
        return;
      }
      const p = this.#pending.get(r.id);
      if (!p) return;
      this.#pending.delete(r.id);
      if (r.outputs) p.resolve(r.outputs);
      else p.reject(new TidecastError(ErrorCodes.INTERNAL, r.error ?? 'the session thread gave no outputs'));
    });
    this.#worker.on('error', (err) => this.#fail(err.message));
    this.#worker.once('exit', (code) => {
      if (!this.#closing) this.#fail(`it exited (code ${code})`);
      started();
    });
  }

  /** Whether batches run on the thread (false once it failed). */
  get running(): boolean {
    return this.#fallback === null;
  }

  run: RunSession = (feeds) => {
    if (this.#fallback !== null) return this.#inProcess(feeds);
    const id = this.#next++;
    const request: SessionRequest = { id, feeds: Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, { data: t.data as Float32Array, dims: t.dims }])) };
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { feeds, resolve, reject });
      this.#worker.postMessage(request);
    });
  };

  /** Stop the thread (its session goes with it); batches it still had fail (a stop past its drain deadline: the input log replays them). */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#worker.terminate();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new TidecastError(ErrorCodes.INTERNAL, 'the session thread stopped before this batch ran'));
  }

  #fail(reason: string): void {
    if (this.#fallback !== null || this.#closing) return;
    this.#fallback = reason;
    this.#log.error({ model: this.#model.name, reason, batches: this.#pending.size }, 'session thread failed; the model runs on the main thread from now on');
    void this.#worker.terminate();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) this.#inProcess(p.feeds).then(p.resolve, p.reject);
  }
}
