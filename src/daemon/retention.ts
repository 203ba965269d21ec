import { Repeating, type Clock } from '../clock.js';
import type { ModelCard } from '../inference/card.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import type { Store } from '../store/store.js';
import type { Service } from './service.js';

export interface RetentionOptions {
  store: Store;
  pruneIntervalS: number;
  /** Streams out of memory and idle this long are forgotten. */
  forgetAfterDays: number;
  /** A model's card (its Home Assistant entities are named from it), when it is loaded. */
  cardOf(model: string): ModelCard | null | undefined;
  discovery?: HomeAssistantDiscovery;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
}

/**
 * Retention, every `pruneIntervalS`: rows older than store.retentionDays,
 * dead letters past their size cap, and streams idle (out of memory) past
 * forgetStreamsAfterDays, whose Home Assistant entities are removed.
 */
export class Retention implements Service {
  readonly name = 'retention';
  readonly #opts: RetentionOptions;
  readonly #every: Repeating;

  constructor(options: RetentionOptions) {
    this.#opts = options;
    this.#every = new Repeating(options.clock, options.pruneIntervalS * 1000, () => void this.prune());
  }

  start(): void {
    this.#every.start();
  }

  stop(): void {
    this.#every.stop();
  }

  /** One pass; never rejects (a failure is logged, the next pass tries again). */
  async prune(): Promise<void> {
    const { store, log, clock } = this.#opts;
    try {
      log.info({ deleted: await store.prune() }, 'retention pruning');
      const days = this.#opts.forgetAfterDays;
      const forgotten = await store.forget(clock.now() - days * 86_400_000);
      if (forgotten.length === 0) return;
      for (const f of forgotten) {
        for (const model of f.models) {
          const card = this.#opts.cardOf(model);
          if (card) this.#opts.discovery?.retract(f.stream, model, card);
        }
      }
      this.#opts.metrics.forgotten(forgotten.length);
      log.info({ streams: forgotten.length, idleDays: days, first: forgotten.slice(0, 5).map((f) => f.stream) }, 'forgot idle streams');
    } catch (err) {
      log.error({ err }, 'retention pruning failed');
    }
  }
}
