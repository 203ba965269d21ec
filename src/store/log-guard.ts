import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';

/** Retry delays for the input log after a failed write. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

export interface LogGuardOptions {
  log: Logger;
  /** Write the pending QoS 0 group; true when it went through (nothing is pending). */
  retry(): boolean;
  /** Whether any other part of the store still fails (the writer). */
  othersFailing(): boolean;
  /** Every write goes through again. */
  recovered(): void;
  /** The retry timer's clock (default: the system clock). */
  clock?: Pick<Clock, 'setTimeout' | 'clearTimeout'>;
}

/**
 * The input log's failure state. A failed write (the caller holds its
 * message unacknowledged) sets it; a timer then retries the pending group,
 * backing off from 50 ms to 2 s, until a write goes through and clears it.
 */
export class LogGuard {
  readonly #opts: LogGuardOptions;
  readonly #clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>;
  #failure: Error | null = null;
  #timer: unknown = null;
  #delayMs = RETRY_MIN_MS;

  constructor(options: LogGuardOptions) {
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** The failure the log is waiting on, if any. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** Note a failed write (`what` names it in the log) and retry until one goes through. */
  fail(err: Error, what: string): void {
    if (!this.#failure && !this.#opts.othersFailing()) {
      this.#opts.log.error({ err: { message: err.message, code: (err as { code?: unknown }).code }, write: what }, 'store cannot write: holding messages unacknowledged and retrying');
    }
    this.#failure = err;
    if (this.#timer !== null) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      if (this.#opts.retry()) this.succeed();
    }, this.#delayMs);
    this.#delayMs = Math.min(this.#delayMs * 2, RETRY_MAX_MS);
  }

  /** A write went through: clears the failure. */
  succeed(): void {
    if (!this.#failure) return;
    this.#failure = null;
    this.#delayMs = RETRY_MIN_MS;
    this.cancel();
    if (!this.#opts.othersFailing()) {
      this.#opts.log.warn('store writable again; queued writes committed');
      this.#opts.recovered();
    }
  }

  /** Stop retrying (the store is stopping). */
  cancel(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
