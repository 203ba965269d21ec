import type { Clock } from '../clock.js';
import type { Publisher } from '../mqtt/deferred-publisher.js';
import type { Service } from './service.js';

export interface StatsReporterOptions {
  /** Retained, every `intervalS` (0: never). */
  topic: string;
  intervalS: number;
  stats(): object;
  publisher: Publisher;
  clock: Clock;
}

/** The daemon's counters, published retained on `stats.topic` every `stats.intervalS`. */
export class StatsReporter implements Service {
  readonly name = 'stats';
  readonly #opts: StatsReporterOptions;
  #timer: unknown = null;

  constructor(options: StatsReporterOptions) {
    this.#opts = options;
  }

  start(): void {
    const o = this.#opts;
    if (o.intervalS <= 0 || this.#timer !== null) return;
    this.#timer = o.clock.setInterval(() => o.publisher.publish(o.topic, JSON.stringify({ at: new Date(o.clock.now()).toISOString(), ...o.stats() }), 0, true), o.intervalS * 1000);
  }

  stop(): void {
    if (this.#timer !== null) this.#opts.clock.clearInterval(this.#timer);
    this.#timer = null;
  }
}
