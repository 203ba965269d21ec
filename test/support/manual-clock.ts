import type { Clock } from '../../src/clock.js';

interface Pending {
  at: number;
  fn: () => void;
  every: number;
  seq: number;
}

/** A clock that moves only when the test says: `advance(ms)` runs every timer due by then, in time order. */
export class ManualClock implements Clock {
  t: number;
  readonly #timers = new Map<number, Pending>();
  #next = 1;

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.#add(fn, ms, 0);
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  setInterval(fn: () => void, ms: number): unknown {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  clearInterval(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer fires, or undefined when none waits. */
  get nextDue(): number | undefined {
    let at: number | undefined;
    for (const p of this.#timers.values()) if (at === undefined || p.at < at) at = p.at;
    return at;
  }

  /** Move time forward by `ms`, firing each timer due on the way at its own time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let first: [number, Pending] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (!first || e[1].at < first[1].at || (e[1].at === first[1].at && e[1].seq < first[1].seq))) first = e;
      if (!first) break;
      const [id, p] = first;
      this.t = Math.max(this.t, p.at);
      if (p.every > 0) p.at += p.every;
      else this.#timers.delete(id);
      p.fn();
    }
    this.t = end;
  }

  #add(fn: () => void, ms: number, every: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + Math.max(0, ms), fn, every, seq: id });
    return id;
  }
}
