import type { Clock } from '../clock.js';
import { ErrorCodes, TidecastError } from '../errors.js';
/**
 * The timeout half of the clock seam (a test's `ManualClock`). The system's
 * is not unref'd, unlike `systemClock`'s: a batch waiting for company must
 * still run when nothing else keeps the process alive (a script awaiting
 * `step`).
 */
export type Timer = Pick<Clock, 'setTimeout' | 'clearTimeout'>;

export const systemTimer: Timer = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface MicroBatcherOptions<T, K = string> {
  /** Most items in one batch. */
  maxBatch: number;
  /** How long an idle batcher waits for more items after the first one arrives. */
  maxDelayMs: number;
  /**
   * Batches that may run at once (default 1). A second one only starts full,
   * and never holds a key of a batch still running, so each key's items still
   * run one after the other.
   */
  maxInFlight?: number;
  /** Items with the same key never share a batch and run in arrival order (a number, such as a stream's slot, hashes faster than a name). */
  key(item: T): K;
  /**
   * Keys are small non-negative integers (slots of a `SlotIndex`): the
   * batcher's per-key tables are then arrays indexed by key, not hash
   * tables, which a key entering and leaving with every item would keep
   * rehashing.
   */
  slotKeys?: boolean;
  /** Process one batch. */
  run(batch: T[]): Promise<void>;
  /** Called when `run` rejects; the batch counts as consumed. */
  onError(err: unknown, batch: T[]): void;
  timer?: Timer;
}

/** What the batcher keeps per key: a hash map, or an array by key for slot keys. */
interface KeyTable<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): void;
  delete(key: K): void;
  has(key: K): boolean;
}

class SlotTable<V> implements KeyTable<number, V> {
  readonly #values: Array<V | undefined> = [];
  get(key: number): V | undefined {
    return this.#values[key];
  }
  set(key: number, value: V): void {
    this.#values[key] = value;
  }
  delete(key: number): void {
    if (key < this.#values.length) this.#values[key] = undefined;
  }
  has(key: number): boolean {
    return this.#values[key] !== undefined;
  }
}

function keyTable<K, V>(slots: boolean): KeyTable<K, V> {
  return (slots ? new SlotTable<V>() : new Map<K, V>()) as KeyTable<K, V>;
}

/**
 * Groups items from many keys (streams) into batches, one item per key per
 * batch, in arrival order per key.
 *
 * Flush policy: a batch runs as soon as `maxBatch` distinct keys are waiting,
 * or `maxDelayMs` after the first item reaches an idle batcher. While batches
 * run, arrivals accumulate; another full batch may start while fewer than
 * `maxInFlight` run (so the next batch's graph runs while the last one's
 * results are handled), and whatever waits runs the moment one finishes:
 * under load batches fill by themselves, when idle a lone step waits at most
 * `maxDelayMs`. A key is never in two running batches, which is what keeps
 * each key's steps ordered against its recurrent state.
 */
export class MicroBatcher<T, K = string> {
  readonly #opts: MicroBatcherOptions<T, K>;
  readonly #timer: Timer;
  #maxInFlight: number;
  /** The oldest waiting item of each key with one. */
  readonly #first: KeyTable<K, T>;
  /** Further waiting items of a key, oldest first (rare: a key's next item while one waits). */
  readonly #more: KeyTable<K, T[]>;
  /** Keys with waiting items, in the order their next item became eligible. */
  #ready: K[] = [];
  #readyHead = 0;
  #pending = 0;
  /** Keys of the running batches. */
  readonly #inFlightKeys: KeyTable<K, true>;
  #running = 0;
  #timerHandle: unknown = null;
  #drainWaiters: Array<() => void> = [];

  constructor(options: MicroBatcherOptions<T, K>) {
    if (!(options.maxBatch >= 1)) throw new TidecastError(ErrorCodes.INTERNAL, 'maxBatch must be at least 1');
    this.#opts = options;
    this.#timer = options.timer ?? systemTimer;
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 1);
    const slots = options.slotKeys === true;
    this.#first = keyTable(slots);
    this.#more = keyTable(slots);
    this.#inFlightKeys = keyTable(slots);
  }

  /** Batches that may run at once (the engine raises it when its model moves to a session thread). */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  set maxInFlight(n: number) {
    this.#maxInFlight = Math.max(1, n);
  }

  /** Items waiting (not yet handed to `run`). */
  get pending(): number {
    return this.#pending;
  }

  /** True while a batch is running. */
  get busy(): boolean {
    return this.#running > 0;
  }

  /** Whether an item of this key is waiting or in a running batch. */
  has(key: K): boolean {
    return this.#first.has(key) || this.#inFlightKeys.has(key);
  }

  push(item: T): void {
    const key = this.#opts.key(item);
    if (this.#first.has(key)) {
      const more = this.#more.get(key);
      if (more) more.push(item);
      else this.#more.set(key, [item]);
    } else {
      this.#first.set(key, item);
      this.#ready.push(key);
    }
    this.#pending++;
    this.#schedule();
  }

  /** Run everything waiting now, ignoring the delay; resolves once nothing is waiting or running. */
  drain(): Promise<void> {
    if (this.#pending === 0 && this.#running === 0) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    if (this.#running === 0) this.#flush();
    return done;
  }

  #readyCount(): number {
    return this.#ready.length - this.#readyHead;
  }

  #schedule(): void {
    if (this.#running > 0) {
      // A full batch may join the running ones; anything less waits for one to finish.
      if (this.#running < this.#maxInFlight && this.#readyCount() >= this.#opts.maxBatch && this.#fullBatchFree()) this.#flush();
      return;
    }
    if (this.#readyCount() >= this.#opts.maxBatch || this.#drainWaiters.length > 0) {
      this.#flush();
    } else if (this.#pending > 0 && this.#timerHandle === null) {
      this.#timerHandle = this.#timer.setTimeout(() => {
        this.#timerHandle = null;
        this.#flush();
      }, this.#opts.maxDelayMs);
    }
  }

  /** Whether maxBatch of the ready keys are in no running batch. */
  #fullBatchFree(): boolean {
    let free = 0;
    for (let i = this.#readyHead; i < this.#ready.length; i++) {
      if (!this.#inFlightKeys.has(this.#ready[i]!) && ++free >= this.#opts.maxBatch) return true;
    }
    return false;
  }

  /** The next batch: up to maxBatch ready keys not in a running batch (those keep their place). */
  #take(): T[] {
    const keys: K[] = [];
    const skipped: K[] = [];
    let i = this.#readyHead;
    for (; i < this.#ready.length && keys.length < this.#opts.maxBatch; i++) {
      const key = this.#ready[i]!;
      if (this.#inFlightKeys.has(key)) skipped.push(key);
      else keys.push(key);
    }
    if (skipped.length > 0) {
      this.#ready = [...skipped, ...this.#ready.slice(i)];
      this.#readyHead = 0;
    } else {
      this.#readyHead = i;
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready = this.#ready.slice(this.#readyHead);
        this.#readyHead = 0;
      }
    }
    const batch: T[] = [];
    for (const key of keys) {
      this.#inFlightKeys.set(key, true);
      batch.push(this.#first.get(key)!);
      const more = this.#more.get(key);
      if (more) {
        // A key's next item waits for a later batch, behind keys already waiting.
        this.#first.set(key, more.shift()!);
        if (more.length === 0) this.#more.delete(key);
        this.#ready.push(key);
      } else {
        this.#first.delete(key);
      }
    }
    this.#pending -= batch.length;
    return batch;
  }

  #flush(): void {
    if (this.#timerHandle !== null) {
      this.#timer.clearTimeout(this.#timerHandle);
      this.#timerHandle = null;
    }
    if (this.#running >= this.#maxInFlight || this.#pending === 0) {
      if (this.#running === 0) this.#settleDrain();
      return;
    }
    const batch = this.#take();
    if (batch.length === 0) return; // every waiting key is in a running batch: it runs when that one settles
    this.#running++;
    void this.#opts
      .run(batch)
      .catch((err: unknown) => this.#opts.onError(err, batch))
      .finally(() => {
        this.#running--;
        for (const item of batch) this.#inFlightKeys.delete(this.#opts.key(item));
        if (this.#pending > 0) this.#flush(); // arrivals during the run go now
        else if (this.#running === 0) this.#settleDrain();
      });
  }

  #settleDrain(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
