/** The clock seam: tests inject their own, production uses the system timers. */
export interface Timer {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimer: Timer = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface MicroBatcherOptions<T> {
  /** Most items in one batch. */
  maxBatch: number;
  /** How long an idle batcher waits for more items after the first one arrives. */
  maxDelayMs: number;
  /** Items with the same key never share a batch and run in arrival order. */
  key(item: T): string;
  /** Process one batch; the next batch starts only after this settles. */
  run(batch: T[]): Promise<void>;
  /** Called when `run` rejects; the batch counts as consumed. */
  onError(err: unknown, batch: T[]): void;
  timer?: Timer;
}

/** The in-flight keys while no batch runs. */
const NO_KEYS: ReadonlySet<string> = new Set();

/**
 * Groups items from many keys (streams) into batches, one item per key per
 * batch, in arrival order per key.
 *
 * Flush policy: a batch runs as soon as `maxBatch` distinct keys are waiting,
 * or `maxDelayMs` after the first item reaches an idle batcher. While a batch
 * runs, arrivals accumulate and run as the next batch the moment it finishes:
 * under load batches fill by themselves, when idle a lone step waits at most
 * `maxDelayMs`. One batch is in flight at a time, which is what keeps each
 * key's steps ordered against its recurrent state.
 */
export class MicroBatcher<T> {
  readonly #opts: MicroBatcherOptions<T>;
  readonly #timer: Timer;
  /** Waiting items of each key, oldest first. */
  readonly #byKey = new Map<string, T[]>();
  /** Keys with waiting items, in the order their next item became eligible. */
  #ready: string[] = [];
  #readyHead = 0;
  #pending = 0;
  /** Keys of the running batch. */
  #inFlightKeys: ReadonlySet<string> = NO_KEYS;
  #inFlight: Promise<void> | null = null;
  #timerHandle: unknown = null;
  #drainWaiters: Array<() => void> = [];

  constructor(options: MicroBatcherOptions<T>) {
    if (!(options.maxBatch >= 1)) throw new RangeError('maxBatch must be at least 1');
    this.#opts = options;
    this.#timer = options.timer ?? systemTimer;
  }

  /** Items waiting (not yet handed to `run`). */
  get pending(): number {
    return this.#pending;
  }

  /** True while a batch is running. */
  get busy(): boolean {
    return this.#inFlight !== null;
  }

  /** Whether an item of this key is waiting or in the running batch. */
  has(key: string): boolean {
    return this.#byKey.has(key) || this.#inFlightKeys.has(key);
  }

  push(item: T): void {
    const key = this.#opts.key(item);
    const queue = this.#byKey.get(key);
    if (queue) {
      queue.push(item);
    } else {
      this.#byKey.set(key, [item]);
      this.#ready.push(key);
    }
    this.#pending++;
    this.#schedule();
  }

  /** Run everything waiting now, ignoring the delay; resolves once nothing is waiting or running. */
  drain(): Promise<void> {
    if (this.#pending === 0 && this.#inFlight === null) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    if (this.#inFlight === null) this.#flush();
    return done;
  }

  #readyCount(): number {
    return this.#ready.length - this.#readyHead;
  }

  #schedule(): void {
    if (this.#inFlight !== null) return; // the running batch reschedules when it settles
    if (this.#readyCount() >= this.#opts.maxBatch || this.#drainWaiters.length > 0) {
      this.#flush();
    } else if (this.#pending > 0 && this.#timerHandle === null) {
      this.#timerHandle = this.#timer.setTimeout(() => {
        this.#timerHandle = null;
        this.#flush();
      }, this.#opts.maxDelayMs);
    }
  }

  #take(): T[] {
    const n = Math.min(this.#opts.maxBatch, this.#readyCount());
    const keys = this.#ready.slice(this.#readyHead, this.#readyHead + n);
    this.#readyHead += n;
    if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#readyHead);
      this.#readyHead = 0;
    }
    this.#inFlightKeys = new Set(keys);
    const batch: T[] = [];
    for (const key of keys) {
      const queue = this.#byKey.get(key)!;
      batch.push(queue.shift()!);
      // A key's next item waits for the next batch, behind keys already waiting.
      if (queue.length > 0) this.#ready.push(key);
      else this.#byKey.delete(key);
    }
    this.#pending -= batch.length;
    return batch;
  }

  #flush(): void {
    if (this.#timerHandle !== null) {
      this.#timer.clearTimeout(this.#timerHandle);
      this.#timerHandle = null;
    }
    if (this.#inFlight !== null || this.#pending === 0) {
      if (this.#inFlight === null) this.#settleDrain();
      return;
    }
    const batch = this.#take();
    this.#inFlight = this.#opts
      .run(batch)
      .catch((err: unknown) => this.#opts.onError(err, batch))
      .finally(() => {
        this.#inFlight = null;
        this.#inFlightKeys = NO_KEYS;
        if (this.#pending > 0) this.#flush(); // arrivals during the run go now
        else this.#settleDrain();
      });
  }

  #settleDrain(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
