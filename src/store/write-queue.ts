import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';

/** SQLite result codes that describe the moment, not the data: retry later. */
const TRANSIENT = /^SQLITE_(FULL|BUSY|LOCKED|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM)/;

/** True for a store error worth retrying (disk full, locked, I/O). */
function isTransientStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === ErrorCodes.STORE_UNAVAILABLE) return true;
  return typeof code === 'string' && TRANSIENT.test(code);
}

/** Retry delays for queued writes after a transient failure. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

/**
 * Writes that must go through in order. A write runs at once when nothing
 * waits; a transient failure (disk full, locked, I/O) keeps it, and everything
 * after it, queued and retried with backoff; any other failure is a bug in the
 * row and is logged and dropped.
 */
export class WriteQueue {
  readonly #log: Logger;
  readonly #isOpen: () => boolean;
  readonly #queue: Array<{ what: string; run: () => void }> = [];
  #retryTimer: NodeJS.Timeout | null = null;
  #retryMs = RETRY_MIN_MS;
  /** The last transient failure, while writes are failing. */
  failure: Error | null = null;
  /** Called when queued writes have all gone through after a failure. */
  onRecovered: (() => void) | null = null;

  constructor(opts: { log: Logger; isOpen: () => boolean }) {
    this.#log = opts.log;
    this.#isOpen = opts.isOpen;
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Run a write now, or after the writes already waiting. `run` must be all-or-nothing. */
  enqueue(what: string, run: () => void): void {
    this.#queue.push({ what, run });
    if (this.#queue.length === 1 && !this.#retryTimer) this.flush();
  }

  /** Run queued writes in order; stops at the first transient failure. Returns true when none are left. */
  flush(): boolean {
    while (this.#queue.length > 0) {
      const job = this.#queue[0]!;
      try {
        job.run();
      } catch (err) {
        if (isTransientStoreError(err)) {
          this.reportFailure(err as Error, job.what);
          return false;
        }
        this.#log.error({ err, write: job.what }, 'store write refused; row dropped');
      }
      this.#queue.shift();
    }
    if (this.failure) {
      this.#log.warn({ after: this.failure.message }, 'store writable again; queued writes committed');
      this.failure = null;
      this.#retryMs = RETRY_MIN_MS;
      this.onRecovered?.();
    }
    return true;
  }

  /** Note a transient failure and schedule a retry: from a queued write, or from a write outside the queue. */
  reportFailure(err: Error, what: string): void {
    if (!this.failure) this.#log.error({ err: { message: err.message, code: (err as { code?: unknown }).code }, write: what }, 'store cannot write: holding messages unacknowledged and retrying');
    this.failure = err;
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#isOpen()) this.flush();
    }, this.#retryMs);
    this.#retryTimer.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
  }

  /** A write outside the queue went through: clears a failure when nothing is queued. */
  reportSuccess(): void {
    if (this.failure && this.#queue.length === 0) this.flush();
  }

  /** No more retries (the store closes). */
  stop(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }
}
