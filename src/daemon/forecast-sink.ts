import type { LoadedModel } from '../inference/model.js';
import { OutputReadError, type OutputHead } from '../inference/output-head.js';
import type { StepResult } from '../inference/step-request.js';
import type { Logger } from '../log.js';
import type { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import { fillTemplate } from '../streams/topic-pattern.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ModelCard } from '../inference/card.js';
import { storedValue } from '../store/codec.js';
import { streamRef } from '../store/rows.js';
import type { EventRow, ForecastLayout, ForecastRow, StepRow, Store } from '../store/store.js';
import type { StepContext } from '../streams/routes.js';
import type { Publisher } from '../mqtt/deferred-publisher.js';
import type { AlertChange } from './alert-book.js';
import type { DriftChange } from './drift-book.js';
import type { ScoreBook } from './score-book.js';

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
  /** Present with prediction intervals: per numeric target, per level ("0.8"), [lower, upper]. */
  intervals?: Record<string, Record<string, [number, number]>>;
}

export interface ForecastSinkOptions {
  store: Store;
  publish: PublishSettings;
  /** Topic template of the drift states (config `drift.topic`). */
  driftTopic: string;
  publisher: Publisher | null;
  /** How to read each model's output (kept current across hot reloads). */
  heads: ReadonlyMap<string, OutputHead>;
  /** Each model's open forecasts and error sums (scored in memory). */
  scores: ReadonlyMap<string, ScoreBook>;
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
 * A step whose scoring turned a target's drift on or off (`DriftBook`) adds a
 * `model_drift` event, and each change is published retained once committed.
 */
export class ForecastSink {
  readonly #opts: ForecastSinkOptions;
  readonly #log: Logger;
  readonly #warnedInvalid = new Set<string>();
  predictions = 0;
  /**
   * Set while recovery replays the input log: every recomputed forecast is
   * published again, stored before or not, since the crash may have come
   * between its commit and its publication (at-least-once; consumers key
   * forecasts by stream, model and issued_at).
   */
  replaying = false;

  constructor(options: ForecastSinkOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'forecast-sink' });
  }

  /**
   * The engine's onResults: builds the batch's rows and hands one commit to
   * the store's writer thread. The writer runs it after what it already has;
   * while the store is failing it waits there, in order (and the daemon stops
   * acknowledging messages until it has gone through). Once committed, only
   * forecasts the commit actually inserted are published: a replay after a
   * crash recomputes forecasts already stored and sent.
   */
  handle(results: readonly StepResult<StepContext>[], model: LoadedModel): void {
    const card = model.card!;
    const head = this.#opts.heads.get(model.name)!;
    const book = this.#opts.scores.get(model.name)!;
    const stepMs = card.stepSeconds * 1000;
    const steps: StepRow[] = [];
    const forecasts: ForecastRow[] = [];
    const events: EventRow[] = [];
    const levels = book.levels;
    const scales = book.intervalScales;
    // Cells without intervals (a classification target, horizon 0) read NaN.
    const partial = levels !== null && scales.includes(null);
    // The batch's bounds in one buffer, a view of it per forecast: a typed array of its own per forecast cost more than the bounds.
    let boundsBuffer: Float64Array | null = null;
    let boundsUsed = 0;
    const issued: Issued = { receivedAt: [], labels: null, cells: head.cells, levels, sent: this.#sending() ? [] : null, alerts: null, drift: null };
    const drifted = book.drift.changes;
    const alerts = book.alerts;
    const changes: AlertChange[] = [];
    for (const r of results) {
      const ctx = r.context;
      // Every step the dispatcher submits carries its context; a bare engine call does not reach a sink.
      if (ctx === undefined) continue;
      const { origin, group, step } = ctx;
      // Where the main thread holds the stream: the writer finds its id by that, not by name.
      const ref = streamRef(group.slots.key, step.slot);
      const gen = group.slots.generation(step.slot);
      steps.push({ stream: r.streamId, ref, gen, route: origin.route, ts: step.ts, receivedAt: origin.receivedAt, features: group.features, values: step.values, filled: step.filled });
      let values: number[] | null = null;
      if (r.status === 'reset') {
        this.#opts.metrics?.reset(model.name, 'non_finite');
        events.push({ at: step.ts, stream: r.streamId, model: model.name, kind: 'state_reset', detail: r.reason ?? 'non_finite', seq: origin.seq });
      } else if (r.status === 'ok') {
        try {
          values = this.#forecast(r.streamId, ref, gen, ctx, r.output!, head, forecasts, issued);
        } catch (err) {
          if (!(err instanceof OutputReadError)) throw err;
          this.#opts.metrics?.invalidOutput(model.name);
          events.push({ at: step.ts, stream: r.streamId, model: model.name, kind: 'invalid_output', detail: err.message, seq: origin.seq });
          // Every such step has its event and metric; the log says it once per model.
          if (!this.#warnedInvalid.has(model.name)) {
            this.#warnedInvalid.add(model.name);
            this.#log.warn({ model: model.name, stream: r.streamId, err: err.message }, 'model output not stored: the card does not describe it (each such step is an invalid_output event)');
          }
        }
      }
      // The step is an actual for the forecasts that target it, whatever became of its own.
      book.step(r.streamId, step.ts, step.values, step.filled, values, undefined, step.slot, group.slots);
      if (drifted.length > 0) {
        // One event per step (the events' unique key has no target): the targets that changed.
        events.push({ at: step.ts, stream: r.streamId, model: model.name, kind: 'model_drift', detail: JSON.stringify(drifted.map(driftState)), seq: origin.seq });
        for (const change of drifted) (issued.drift ??= []).push({ stream: r.streamId, ts: step.ts, params: origin.params, change });
        drifted.length = 0;
      }
      if (values && levels) {
        // Its intervals, from the residuals the step just brought.
        const n = values.length * levels.length * 2;
        boundsBuffer ??= new Float64Array(results.length * n);
        const bounds = boundsBuffer.subarray(boundsUsed, (boundsUsed += n));
        if (partial) bounds.fill(NaN);
        book.bounds(r.streamId, values, bounds, 0, step.slot, group.slots);
        forecasts[forecasts.length - 1]!.bounds = bounds;
        const sent = issued.sent?.[issued.sent.length - 1];
        if (sent) sent.bounds = bounds;
      }
      if (values && alerts) {
        const f = forecasts[forecasts.length - 1]!;
        alerts.evaluate(r.streamId, origin.route, values, f.labels, f.bounds ?? null, levels, changes);
        for (const c of changes) {
          // A first evaluation that finds the alert off is published (a state to show), not an event.
          if (c.was !== null || c.on) events.push({ at: step.ts, stream: r.streamId, model: model.name, kind: `alert:${c.rule.name}`, detail: JSON.stringify(alertState(c)), seq: origin.seq });
          (issued.alerts ??= []).push({ forecast: forecasts.length - 1, stream: r.streamId, ts: step.ts, params: origin.params, change: c });
        }
        changes.length = 0;
      }
    }
    const layout = this.#layout(head, stepMs, levels, scales);
    // Whether the batch was a replay is decided now: its commit is answered later.
    const replayed = this.replaying;
    this.#opts.store.commit(model.name, layout, steps, forecasts, events).then(
      (inserted) => {
        // null: the writer refused the batch (logged there).
        if (inserted) this.#committed(model, card, issued, inserted, replayed);
      },
      (err: Error) => this.#log.warn({ model: model.name, err: err.message }, 'batch not committed (the store stopped); the input log replays it at the next start'),
    );
    if (forecasts.length < results.length) this.#log.debug({ model: model.name, results: results.length, forecasts: forecasts.length }, 'batch had steps without forecast');
  }

  /** Store layouts by the head's cells array, which OutputHead.use replaces when a reload brings other cells (and the interval levels and scales they had). */
  readonly #layouts = new WeakMap<OutputHead['cells'], { levels: readonly number[] | null; scales: ReadonlyArray<number | null>; layout: ForecastLayout }>();

  #layout(head: OutputHead, stepMs: number, levels: readonly number[] | null, scales: ReadonlyArray<number | null>): ForecastLayout {
    const known = this.#layouts.get(head.cells);
    if (known?.levels === levels && known.scales === scales) return known.layout;
    const layout: ForecastLayout = {
      stepMs,
      cells: head.cells.map((c, k) => {
        const scale = levels && !c.labels ? scales[k] : null;
        return scale ? ([c.horizon, c.target, 0, levels!, scale] as const) : ([c.horizon, c.target, c.labels ? 1 : 0] as const);
      }),
    };
    this.#layouts.set(head.cells, { levels, scales, layout });
    return layout;
  }

  /** Whether forecasts are published or listened to once committed (then each keeps what its message needs). */
  #sending(): boolean {
    return (this.#opts.publish.enabled && this.#opts.publisher !== null) || this.#opts.onForecast !== undefined;
  }

  /** Read one output into its forecast row; returns the cell values (for scoring). */
  #forecast(stream: string, ref: number, gen: number, ctx: StepContext, output: Float32Array, head: OutputHead, rows: ForecastRow[], issued: Issued): number[] {
    const { values, labels } = head.readValues(output);
    const ts = ctx.step.ts;
    const i = rows.push({ stream, ref, gen, issuedAt: ts, values, labels }) - 1;
    issued.receivedAt.push(ctx.origin.receivedAt);
    if (labels) (issued.labels ??= [])[i] = labels;
    issued.sent?.push({ stream, ctx: this.#opts.onForecast ? ctx : null, ts, params: ctx.origin.params, values, labels });
    return values;
  }

  /** The MQTT message of a forecast (built only for those published or listened to). */
  #message(model: string, stepS: number, cells: OutputHead['cells'], levels: readonly number[] | null, f: SentForecast): ForecastMessage {
    const msg: ForecastMessage = { stream: f.stream, model, issued_at: new Date(f.ts).toISOString(), step_s: stepS, forecast: [] };
    let entry: ForecastEntry | undefined;
    cells.forEach((cell, k) => {
      if (entry?.horizon !== cell.horizon) {
        entry = { horizon: cell.horizon, target_time: new Date(f.ts + cell.horizon * stepS * 1000).toISOString(), values: {}, ...(f.labels ? { labels: {} } : {}) };
        msg.forecast.push(entry);
      }
      const l = f.labels?.[k];
      if (!l) entry.values[cell.target] = storedValue(f.values[k]!);
      else entry.labels![cell.target] = { label: l[0], probability: storedValue(f.values[k]!), probabilities: { ...l[1] } };
      // Bounds are rounded to their cell's scale already: the stored integers over the scale, these very numbers.
      const at = levels ? k * levels.length * 2 : 0;
      if (f.bounds && levels && !l && !Number.isNaN(f.bounds[at]!)) {
        const per: Record<string, [number, number]> = {};
        levels.forEach((level, i) => (per[String(level)] = [f.bounds![at + 2 * i]!, f.bounds![at + 2 * i + 1]!]));
        (entry.intervals ??= {})[cell.target] = per;
      }
    });
    return msg;
  }

  /**
   * The batch's alert changes, once committed: counted, and each stream's
   * state published retained on the alert's topic (with its Home Assistant
   * binary sensor announced), as forecasts are: only those the commit
   * inserted, unless the batch is a replay.
   */
  #alerted(model: string, card: ModelCard, alerts: readonly IssuedAlert[], inserted: boolean[], replayed: boolean, publishing: boolean): void {
    const { publisher, metrics, discovery } = this.#opts;
    for (const a of alerts) {
      if (!replayed && !inserted[a.forecast]) continue;
      const c = a.change;
      const r = c.rule;
      if (c.was !== null || c.on) metrics?.alertChanged(model, r.name, c.on);
      if (!publishing) continue;
      const topic = fillTemplate(r.config.topic, { ...a.params, alert: r.name, stream: a.stream, model });
      const msg = {
        alert: r.name,
        stream: a.stream,
        model,
        ...alertState(c),
        issued_at: new Date(a.ts).toISOString(),
        target_time: new Date(a.ts + c.horizon * card.stepSeconds * 1000).toISOString(),
      };
      publisher!.publish(topic, JSON.stringify(msg), 1, true);
      discovery?.announceAlert(a.stream, model, r.name, topic);
    }
  }

  /** The batch's drift changes, once committed: counted, and published retained on the drift topic (with the Home Assistant binary sensor announced). */
  #drifted(model: string, drift: readonly IssuedDrift[], publishing: boolean): void {
    const { publisher, metrics, discovery } = this.#opts;
    for (const d of drift) {
      const c = d.change;
      metrics?.driftChanged(model, c.target, c.on);
      if (!publishing) continue;
      const topic = fillTemplate(this.#opts.driftTopic, { ...d.params, stream: d.stream, model, target: c.target });
      publisher!.publish(topic, JSON.stringify({ stream: d.stream, model, ...driftState(c), at: new Date(d.ts).toISOString() }), 1, true);
      discovery?.announceDrift(d.stream, model, c.target, topic);
    }
  }

  #committed(model: LoadedModel, card: ModelCard, issued: Issued, inserted: boolean[], replayed: boolean): void {
    const { publish, publisher, metrics, discovery, onForecast } = this.#opts;
    const now = (this.#opts.now ?? Date.now)();
    const latencies: number[] = [];
    for (let i = 0; i < inserted.length; i++) if (inserted[i]) latencies.push((now - issued.receivedAt[i]!) / 1000);
    this.predictions += latencies.length;
    if (metrics) {
      metrics.committed(model.name, latencies);
      issued.labels?.forEach((labels, i) => {
        if (inserted[i]) labels?.forEach((l, k) => l && metrics.labelled(model.name, issued.cells[k]!.target, l[0]));
      });
    }
    const publishing = publish.enabled && publisher !== null;
    if (issued.alerts) this.#alerted(model.name, card, issued.alerts, inserted, replayed, publishing);
    if (issued.drift) this.#drifted(model.name, issued.drift, publishing);
    if (!issued.sent) return;
    issued.sent.forEach((f, i) => {
      if (!replayed && !inserted[i]) return;
      const msg = this.#message(model.name, card.stepSeconds, issued.cells, issued.levels, f);
      if (publishing) {
        const topic = fillTemplate(publish.topic, { ...f.params, stream: msg.stream, model: msg.model });
        publisher.publish(topic, JSON.stringify(msg), publish.qos, publish.retain);
        discovery?.announce(msg.stream, msg.model, card, topic, issued.levels !== null);
      }
      onForecast?.(msg, f.ctx!);
    });
  }
}

/** An alert change as its event's detail and its published message give it: what it watches, its new state, the probability and horizon that moved it. */
function alertState(c: AlertChange): Record<string, string | number | null> {
  const r = c.rule;
  return {
    target: r.config.target,
    ...(r.kind === 'label' ? { label: r.label } : { [r.kind]: r.threshold }),
    state: c.on ? 'on' : 'off',
    probability: Math.round(c.probability * 1000) / 1000,
    horizon: c.horizon,
  };
}

/** A drift change as its event's detail and its published message give it. */
function driftState(c: DriftChange): Record<string, string | number | readonly string[]> {
  return {
    target: c.target,
    state: c.on ? 'on' : 'off',
    reasons: c.reasons,
    direction: c.direction,
    cusum: Math.round(c.cusum * 100) / 100,
    miss_rate: Math.round(c.missRate * 1000) / 1000,
  };
}

type Labels = ReadonlyArray<readonly [string, Readonly<Record<string, number>>] | null>;

/**
 * A batch's forecasts waiting for their commit: only what is needed then.
 * Whatever this holds lives until the writer answers, long enough for the
 * young-generation GC to copy it, so a forecast that is neither published
 * nor listened to keeps one number (its arrival, for the latency metric).
 */
interface Issued {
  /** Per forecast, when its step's message arrived. */
  readonly receivedAt: number[];
  /** Per forecast, its labels (classification models only). */
  labels: Array<Labels | null> | null;
  /** The head's cells when the batch was read (a hot reload may bring other ones later). */
  readonly cells: OutputHead['cells'];
  /** The interval levels of the batch's forecasts, or null without intervals. */
  readonly levels: readonly number[] | null;
  /** Per forecast, what its message needs; null when nothing is published or listened to. */
  readonly sent: SentForecast[] | null;
  /** Alert states that changed with the batch's forecasts (or were evaluated for the first time); null: none. */
  alerts: IssuedAlert[] | null;
  /** Drift states that changed with the batch's steps; null: none. */
  drift: IssuedDrift[] | null;
}

/** A drift change to publish once its step is committed. */
interface IssuedDrift {
  readonly stream: string;
  readonly ts: number;
  readonly params: Readonly<Record<string, string>>;
  readonly change: DriftChange;
}

/** An alert state to publish once its forecast is committed. */
interface IssuedAlert {
  /** The forecast's index in the batch. */
  readonly forecast: number;
  readonly stream: string;
  readonly ts: number;
  readonly params: Readonly<Record<string, string>>;
  readonly change: AlertChange;
}

/** A forecast to publish once committed. */
interface SentForecast {
  readonly stream: string;
  /** Its step's context, kept only for an `onForecast` listener. */
  readonly ctx: StepContext | null;
  readonly ts: number;
  readonly params: Readonly<Record<string, string>>;
  readonly values: readonly number[];
  readonly labels: Labels | null;
  /** Its intervals (`ForecastRow.bounds`). */
  bounds?: Float64Array;
}
