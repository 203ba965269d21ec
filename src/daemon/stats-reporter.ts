import { Repeating, type Clock } from '../clock.js';
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
  readonly #every: Repeating;

  constructor(o: StatsReporterOptions) {
    this.#every = new Repeating(o.clock, o.intervalS * 1000, () => o.publisher.publish(o.topic, JSON.stringify({ at: new Date(o.clock.now()).toISOString(), ...o.stats() }), 0, true));
  }

  start(): void {
    this.#every.start();
  }

  stop(): void {
    this.#every.stop();
  }
}
