import type { LoadedModel } from '../inference/model.js';
import { OutputReadError, type OutputHead } from '../inference/output-head.js';
import type { StepResult } from '../inference/step-runner.js';
import type { Logger } from '../log.js';
import type { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import { fillTemplate } from '../mqtt/topic-pattern.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ModelCard } from '../inference/card.js';
import type { EventRow, PredictionRow, ScoredRow, StepRow, Store } from '../store/store.js';
import type { StepContext } from '../streams/ingest.js';

export interface PublishSettings {
  enabled: boolean;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
}

/** A forecast as published over MQTT (and handed to listeners such as the demo). */
export interface ForecastMessage {
  stream: string;
  model: string;
  issued_at: string;
  step_s: number;
  forecast: ForecastEntry[];
}

/** One horizon of a forecast: numeric targets under values, classification targets under labels. */
export interface ForecastEntry {
  horizon: number;
  target_time: string;
  values: Record<string, number>;
  /** Present when the model has classification targets: the most probable label, its probability, and all of them. */
  labels?: Record<string, { label: string; probability: number; probabilities: Record<string, number> }>;
}

export interface ForecastSinkOptions {
  store: Store;
  publish: PublishSettings;
  publisher: { publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void } | null;
  /** How to read each model's output (kept current across hot reloads). */
  heads: ReadonlyMap<string, OutputHead>;
  log: Logger;
  metrics?: Metrics;
  discovery?: HomeAssistantDiscovery;
  now?: () => number;
  /** Called after each committed forecast (the demo's live table). */
  onForecast?(forecast: ForecastMessage, ctx: StepContext): void;
}

/**
 * Turns a batch of engine results into stored rows and published messages:
 * reads each output through the model's OutputHead (de-scaled values, or a
 * label with its probabilities), expands it per horizon and target with its
 * target time, commits steps and predictions in one transaction, then
 * publishes. A `reset` result stores its step and a `state_reset` event, no
 * prediction; so does an output the head cannot read (an `invalid_output` event).
 */
export class ForecastSink {
  readonly #opts: ForecastSinkOptions;
  readonly #log: Logger;
  readonly #warnedInvalid = new Set<string>();
  predictions = 0;

  constructor(options: ForecastSinkOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'forecast-sink' });
  }

  /**
   * The engine's onResults: builds the batch's rows and queues one commit. The
   * commit runs at once unless the store is failing, in which case it waits in
   * order (and the daemon stops acknowledging messages until it has gone
   * through). Only forecasts the commit actually inserted are published: a
   * replay after a crash recomputes forecasts already stored and sent.
   */
  handle(results: readonly StepResult[], model: LoadedModel): void {
    const card = model.card!;
    const head = this.#opts.heads.get(model.name)!;
    const stepMs = card.stepSeconds * 1000;
    const steps: StepRow[] = [];
    const rows: PredictionRow[] = [];
    const events: EventRow[] = [];
    const messages: Array<{ msg: ForecastMessage; ctx: StepContext; first: number }> = [];
    for (const r of results) {
      const ctx = r.context as StepContext;
      steps.push({ stream: r.streamId, route: ctx.route, ts: ctx.ts, receivedAt: ctx.receivedAt, topic: ctx.topic, values: ctx.values, filled: ctx.filled });
      if (r.status === 'reset') {
        this.#opts.metrics?.reset(model.name, 'non_finite');
        events.push({ at: ctx.ts, stream: r.streamId, model: model.name, kind: 'state_reset', detail: r.reason ?? 'non_finite', seq: ctx.seq });
        continue;
      }
      if (r.status !== 'ok') continue;
      let readings;
      try {
        readings = head.read(r.output!);
      } catch (err) {
        if (!(err instanceof OutputReadError)) throw err;
        this.#opts.metrics?.invalidOutput(model.name);
        events.push({ at: ctx.ts, stream: r.streamId, model: model.name, kind: 'invalid_output', detail: err.message, seq: ctx.seq });
        // Every such step has its event and metric; the log says it once per model.
        if (!this.#warnedInvalid.has(model.name)) {
          this.#warnedInvalid.add(model.name);
          this.#log.warn({ model: model.name, stream: r.streamId, err: err.message }, 'model output not stored: the card does not describe it (each such step is an invalid_output event)');
        }
        continue;
      }
      const msg: ForecastMessage = { stream: r.streamId, model: model.name, issued_at: new Date(ctx.ts).toISOString(), step_s: card.stepSeconds, forecast: [] };
      const first = rows.length;
      let entry: ForecastEntry | undefined;
      for (const x of readings) {
        const targetTime = ctx.ts + x.horizon * stepMs;
        if (entry?.horizon !== x.horizon) {
          entry = { horizon: x.horizon, target_time: new Date(targetTime).toISOString(), values: {}, ...(head.classifies ? { labels: {} } : {}) };
          msg.forecast.push(entry);
        }
        if (x.label === undefined) {
          entry.values[x.target] = x.value;
          rows.push({ stream: r.streamId, model: model.name, issuedAt: ctx.ts, horizon: x.horizon, target: x.target, targetTime, value: x.value });
        } else {
          entry.labels![x.target] = { label: x.label, probability: x.value, probabilities: { ...x.probabilities! } };
          rows.push({ stream: r.streamId, model: model.name, issuedAt: ctx.ts, horizon: x.horizon, target: x.target, targetTime, value: x.value, label: x.label, probabilities: JSON.stringify(x.probabilities) });
        }
      }
      messages.push({ msg, ctx, first });
    }
    const store = this.#opts.store;
    const horizonsMs = card.horizons.map((h) => h * stepMs);
    store.enqueue(`batch of ${model.name}`, () => {
      const { scored, inserted } = store.commit(model.name, steps, rows, events, horizonsMs);
      this.#committed(model, card, messages, scored, inserted);
    });
    if (messages.length < results.length) this.#log.debug({ model: model.name, results: results.length, forecasts: messages.length }, 'batch had steps without forecast');
  }

  #committed(model: LoadedModel, card: ModelCard, messages: Array<{ msg: ForecastMessage; ctx: StepContext; first: number }>, scored: ScoredRow[], inserted: boolean[]): void {
    const fresh = messages.filter((m) => inserted[m.first]);
    this.predictions += fresh.length;
    const { publish, publisher, metrics, discovery } = this.#opts;
    if (metrics) {
      const now = (this.#opts.now ?? Date.now)();
      metrics.committed(model.name, fresh.map(({ ctx }) => (now - ctx.receivedAt) / 1000));
      metrics.scored(scored);
      for (const { msg } of fresh) {
        for (const f of msg.forecast) for (const [target, l] of Object.entries(f.labels ?? {})) metrics.labelled(model.name, target, l.label);
      }
    }
    for (const { msg, ctx } of fresh) {
      if (publish.enabled && publisher) {
        const topic = fillTemplate(publish.topic, { ...ctx.params, stream: msg.stream, model: msg.model });
        publisher.publish(topic, JSON.stringify(msg), publish.qos, publish.retain);
        discovery?.announce(msg.stream, msg.model, card, topic);
      }
      this.#opts.onForecast?.(msg, ctx);
    }
  }
}
