/**
 * The clock seam: every timed component takes a `Clock` (MQTT.js injects its
 * `Timer` the same way), so a test drives time with `ManualClock`
 * (test/support/manual-clock.ts) instead of sleeping. The micro-batcher's
 * `Timer` is the timeout half of it.
 */
export interface Clock {
  /** Wall-clock time, ms since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/**
 * Node's clock. Its timers never keep the process alive on their own: the
 * daemon lives as long as its sockets, and a retry or a minute's summary
 * pending at the end of a command must not hold its exit back.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/**
 * A duty repeated every `ms` on a clock: the timer of a service, armed by its
 * `start()` and cleared by its `stop()` (both safe to call twice). `ms` of 0
 * or less: never.
 */
export class Repeating {
  readonly #clock: Clock;
  readonly #ms: number;
  readonly #run: () => void;
  #handle: unknown = null;

  constructor(clock: Clock, ms: number, run: () => void) {
    this.#clock = clock;
    this.#ms = ms;
    this.#run = run;
  }

  start(): void {
    if (this.#ms > 0) this.#handle ??= this.#clock.setInterval(this.#run, this.#ms);
  }

  stop(): void {
    if (this.#handle !== null) this.#clock.clearInterval(this.#handle);
    this.#handle = null;
  }
}

/** The system clock's timers with another source of wall-clock time (a test's fixed `now`). */
export function clockWithNow(now: () => number): Clock {
  return { ...systemClock, now };
}
