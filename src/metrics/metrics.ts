import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ThreadCpu } from './thread-cpu.js';

/** Live numbers the metrics read at scrape time. */
export interface MetricsSource {
  models(): Array<{ name: string; provider: string; queueDepth: number; streams: number }>;
  brokerConnected(): boolean;
  /** Per model and alert, the streams with it on (`alerts` in the config). */
  alerts?(): Array<{ model: string; alert: string; on: number }>;
  /** Per model and numeric target, the streams in drift. */
  drift?(): Array<{ model: string; target: string; on: number }>;
  /** Durability and backpressure state, read at scrape time. */
  reliability(): { holding: string | null; storeFailing: boolean; residentStreams: number; logBacklog: number };
}

const ACCURACY_WINDOW = 500;

/** Rolling online errors of one model × horizon × target, over the last ACCURACY_WINDOW scored forecasts. */
class RollingErrors {
  readonly err = new Float64Array(ACCURACY_WINDOW);
  readonly pers = new Float64Array(ACCURACY_WINDOW);
  n = 0;
  #i = 0;

  add(err: number, persistenceErr: number): void {
    this.err[this.#i] = err;
    this.pers[this.#i] = persistenceErr;
    this.#i = (this.#i + 1) % ACCURACY_WINDOW;
    this.n = Math.min(this.n + 1, ACCURACY_WINDOW);
  }

  summary(): { mae: number; rmse: number; bias: number; skill: number } {
    let abs = 0, sq = 0, sum = 0, pabs = 0;
    for (let i = 0; i < this.n; i++) {
      const e = this.err[i]!;
      abs += Math.abs(e);
      sq += e * e;
      sum += e;
      pabs += Math.abs(this.pers[i]!);
    }
    const mae = abs / this.n;
    return { mae, rmse: Math.sqrt(sq / this.n), bias: sum / this.n, skill: pabs > 0 ? 1 - abs / pabs : 0 };
  }
}

/**
 * The Prometheus metrics (prom-client). Components report through the small
 * methods below; gauges that describe current state are read from a
 * MetricsSource at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #messages: Counter<'route'>;
  readonly #deadLetters: Counter<'reason'>;
  readonly #deadLettersUnstored: Counter<'reason'>;
  readonly #batchSize: Histogram<'model'>;
  readonly #inference: Histogram<'model'>;
  readonly #endToEnd: Histogram<'model'>;
  readonly #predictions: Counter<'model'>;
  readonly #resets: Counter<'model' | 'reason'>;
  readonly #holds: Counter<'reason'>;
  readonly #checkpoints: Histogram;
  readonly #checkpointWrites: Histogram;
  readonly #residency: Counter<'action'>;
  readonly #replayed: Counter;
  readonly #reloads: Counter<'model' | 'outcome'>;
  readonly #labels: Counter<'model' | 'target' | 'label'>;
  readonly #invalidOutputs: Counter<'model'>;
  readonly #storeDropped: Counter;
  readonly #takeovers: Counter;
  readonly #forgotten: Counter;
  readonly #alertChanges: Counter<'model' | 'alert' | 'state'>;
  readonly #driftChanges: Counter<'model' | 'target' | 'state'>;
  readonly #accuracy = new Map<string, { model: string; horizon: number; target: string; errors: RollingErrors }>();
  /**
   * Messages accepted per route, as plain numbers: prom-client hashes the
   * labels and allocates on every inc(), which per message cost about 120
   * bytes; the counter takes the difference when it is read (`collect`).
   */
  readonly #byRoute = new Map<string, { n: number; reported: number }>();
  /** Per-model children of the end-to-end histogram, looked up once (it runs per forecast). */
  readonly #endToEndOf = new Map<string, { observe(v: number): void }>();

  constructor(source: MetricsSource) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'tidecast_process_' });
    this.#messages = new Counter({
      name: 'tidecast_messages_total',
      help: 'MQTT messages accepted, by route',
      labelNames: ['route'],
      registers: [r],
      collect: () => {
        for (const [route, c] of this.#byRoute) {
          if (c.n > c.reported) this.#messages.inc({ route }, c.n - c.reported);
          c.reported = c.n;
        }
      },
    });
    this.#deadLetters = new Counter({ name: 'tidecast_dead_letters_total', help: 'Messages refused, by reason (each a row in dead_letters, unless over the per-minute caps)', labelNames: ['reason'], registers: [r] });
    this.#deadLettersUnstored = new Counter({ name: 'tidecast_dead_letters_unstored_total', help: 'Refused messages whose dead letter was not stored: over limits.deadLettersPerMinute or deadLettersPerSourcePerMinute', labelNames: ['reason'], registers: [r] });
    this.#batchSize = new Histogram({ name: 'tidecast_batch_size', help: 'Streams per onnxruntime call', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [r] });
    this.#inference = new Histogram({ name: 'tidecast_inference_seconds', help: 'Time of one batch: gather, session.run, checks, scatter', labelNames: ['model'], buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25], registers: [r] });
    this.#endToEnd = new Histogram({ name: 'tidecast_end_to_end_seconds', help: 'Message arrival to prediction committed', labelNames: ['model'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [r] });
    this.#predictions = new Counter({ name: 'tidecast_predictions_total', help: 'Forecast steps committed', labelNames: ['model'], registers: [r] });
    this.#resets = new Counter({ name: 'tidecast_state_resets_total', help: 'Streams started over: non_finite (model output NaN/Inf) or gap', labelNames: ['model', 'reason'], registers: [r] });
    const threads = new ThreadCpu();
    const reported = new Map<string, number>();
    const threadCpu: Counter<'thread'> = new Counter({
      name: 'tidecast_thread_cpu_seconds_total',
      help: 'CPU time by thread: main (MQTT, admission, engine), writer (the store), session:MODEL (a model\'s onnxruntime calls), http, wal (WAL copies), other (V8, libuv and onnxruntime\'s pools); Linux only',
      labelNames: ['thread'],
      registers: [r],
      collect: () => {
        for (const [thread, s] of threads.read()) {
          threadCpu.inc({ thread }, s - (reported.get(thread) ?? 0));
          reported.set(thread, s);
        }
      },
    });
    new Gauge({
      name: 'tidecast_queue_depth', help: 'Steps waiting for a batch', labelNames: ['model'], registers: [r],
      collect() { this.reset(); for (const m of source.models()) this.set({ model: m.name }, m.queueDepth); },
    });
    new Gauge({
      name: 'tidecast_active_streams', help: 'Streams holding state in memory', labelNames: ['model'], registers: [r],
      collect() { this.reset(); for (const m of source.models()) this.set({ model: m.name }, m.streams); },
    });
    new Gauge({
      name: 'tidecast_model_provider_info', help: 'Execution provider in use per model (value 1)', labelNames: ['model', 'provider'], registers: [r],
      collect() { this.reset(); for (const m of source.models()) this.set({ model: m.name, provider: m.provider }, 1); },
    });
    new Gauge({
      name: 'tidecast_broker_connected', help: '1 while connected to the MQTT broker', registers: [r],
      collect() { this.set(source.brokerConnected() ? 1 : 0); },
    });
    this.#holds = new Counter({ name: 'tidecast_backpressure_total', help: 'Times a message was held unacknowledged: queue_full (an engine queue, or the store writer, full), reload (a model swap), store (disk full, locked, I/O); checkpoint (earlier versions: checkpoints no longer hold messages)', labelNames: ['reason'], registers: [r] });
    for (const reason of ['queue_full', 'checkpoint', 'reload', 'store']) this.#holds.inc({ reason }, 0);
    this.#checkpoints = new Histogram({ name: 'tidecast_checkpoint_seconds', help: 'Longest turn of the event loop one checkpoint takes (capturing and packing a chunk of streams; messages wait meanwhile)', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [r] });
    this.#checkpointWrites = new Histogram({ name: 'tidecast_checkpoint_write_seconds', help: 'Time from a checkpoint\'s start to its commit by the writer thread (messages flow meanwhile)', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [r] });
    this.#residency = new Counter({ name: 'tidecast_streams_spilled_total', help: 'Idle streams spilled to SQLite and evicted (evicted), and brought back (restored)', labelNames: ['action'], registers: [r] });
    this.#residency.inc({ action: 'evicted' }, 0);
    this.#residency.inc({ action: 'restored' }, 0);
    this.#reloads = new Counter({ name: 'tidecast_model_reloads_total', help: 'Hot reloads of a model file: kept_state, reset_state (the new graph\'s state differs), failed (the old model keeps running)', labelNames: ['model', 'outcome'], registers: [r] });
    this.#labels = new Counter({ name: 'tidecast_labels_total', help: 'Committed predictions of classification targets, by most probable label', labelNames: ['model', 'target', 'label'], registers: [r] });
    this.#invalidOutputs = new Counter({ name: 'tidecast_invalid_outputs_total', help: 'Model outputs not stored because the card does not describe them (class scores declared as probabilities that are not)', labelNames: ['model'], registers: [r] });
    this.#storeDropped = new Counter({ name: 'tidecast_store_dropped_total', help: 'Store writes refused for their rows (a bug: e.g. a non-finite value past the engine\'s check) and dropped; 0 in a healthy daemon (a damaged database stops it instead)', registers: [r] });
    this.#forgotten = new Counter({ name: 'tidecast_streams_forgotten_total', help: 'Streams forgotten after idling past store.forgetStreamsAfterDays (state, error sums, id and Home Assistant entities removed)', registers: [r] });
    this.#takeovers = new Counter({ name: 'tidecast_mqtt_session_takeovers_total', help: 'Connections lost to another client with the same client id: MQTT 5 DISCONNECT reason 0x8E, or (MQTT 3.1.1) the broker closing the connection within 10 s of accepting it, 3 or more times a minute', registers: [r] });
    this.#alertChanges = new Counter({ name: 'tidecast_alert_changes_total', help: 'Threshold alerts turned on or off, per model and alert (each an alert:NAME event)', labelNames: ['model', 'alert', 'state'], registers: [r] });
    new Gauge({
      name: 'tidecast_alerts_on',
      help: 'Streams with each threshold alert on',
      labelNames: ['model', 'alert'],
      registers: [r],
      collect() {
        this.reset();
        for (const a of source.alerts?.() ?? []) this.set({ model: a.model, alert: a.alert }, a.on);
      },
    });
    this.#driftChanges = new Counter({ name: 'tidecast_drift_changes_total', help: 'Drift states of a stream and target turned on or off, per model and target (each in a model_drift event)', labelNames: ['model', 'target', 'state'], registers: [r] });
    new Gauge({
      name: 'tidecast_drift_on',
      help: 'Streams whose errors on a target have drifted from the card\'s held-out errors (bias or coverage)',
      labelNames: ['model', 'target'],
      registers: [r],
      collect() {
        this.reset();
        for (const d of source.drift?.() ?? []) this.set({ model: d.model, target: d.target }, d.on);
      },
    });
    this.#replayed = new Counter({ name: 'tidecast_replayed_inputs_total', help: 'Input-log entries replayed at start (recovery after a crash)', registers: [r] });
    new Gauge({
      name: 'tidecast_holding', help: '1 while a message is held unacknowledged (backpressure)', registers: [r],
      collect() { this.set(source.reliability().holding ? 1 : 0); },
    });
    new Gauge({
      name: 'tidecast_store_failing', help: '1 while the store cannot write (disk full, locked, I/O error)', registers: [r],
      collect() { this.set(source.reliability().storeFailing ? 1 : 0); },
    });
    new Gauge({
      name: 'tidecast_resident_streams', help: 'Streams in memory (limits.maxStreams bounds it)', registers: [r],
      collect() { this.set(source.reliability().residentStreams); },
    });
    new Gauge({
      name: 'tidecast_input_log_backlog', help: 'Inputs logged since the last checkpoint (what a crash would replay)', registers: [r],
      collect() { this.set(source.reliability().logBacklog); },
    });
    const accuracy = this.#accuracy;
    const stat = (name: string, help: string, pick: (s: ReturnType<RollingErrors['summary']>) => number): void => {
      new Gauge({
        name, help, labelNames: ['model', 'horizon', 'target'], registers: [r],
        collect() {
          this.reset();
          for (const a of accuracy.values()) if (a.errors.n > 0) this.set({ model: a.model, horizon: String(a.horizon), target: a.target }, pick(a.errors.summary()));
        },
      });
    };
    stat('tidecast_forecast_mae', `Online MAE over the last ${ACCURACY_WINDOW} scored forecasts`, (s) => s.mae);
    stat('tidecast_forecast_rmse', `Online RMSE over the last ${ACCURACY_WINDOW} scored forecasts`, (s) => s.rmse);
    stat('tidecast_forecast_bias', 'Online mean of forecast - actual', (s) => s.bias);
    stat('tidecast_forecast_skill', '1 - MAE / persistence MAE on the same forecasts', (s) => s.skill);
  }

  /** Start a model's counters at zero, so dashboards see the series before the first event. */
  registerModel(model: string): void {
    this.#predictions.inc({ model }, 0);
    this.#resets.inc({ model, reason: 'non_finite' }, 0);
    this.#resets.inc({ model, reason: 'gap' }, 0);
  }

  message(route: string): void {
    let c = this.#byRoute.get(route);
    if (!c) this.#byRoute.set(route, (c = { n: 0, reported: 0 }));
    c.n++;
  }

  deadLetter(reason: string, stored = true): void {
    this.#deadLetters.inc({ reason });
    if (!stored) this.#deadLettersUnstored.inc({ reason });
  }

  batch(model: string, size: number, seconds: number): void {
    this.#batchSize.observe({ model }, size);
    this.#inference.observe({ model }, seconds);
  }

  committed(model: string, endToEndSeconds: readonly number[]): void {
    this.#predictions.inc({ model }, endToEndSeconds.length);
    let h = this.#endToEndOf.get(model);
    if (!h) this.#endToEndOf.set(model, (h = this.#endToEnd.labels({ model })));
    for (const s of endToEndSeconds) h.observe(s);
  }

  reset(model: string, reason: 'non_finite' | 'gap'): void {
    this.#resets.inc({ model, reason });
  }

  labelled(model: string, target: string, label: string): void {
    this.#labels.inc({ model, target, label });
  }

  alertChanged(model: string, alert: string, on: boolean): void {
    this.#alertChanges.inc({ model, alert, state: on ? 'on' : 'off' });
  }

  driftChanged(model: string, target: string, on: boolean): void {
    this.#driftChanges.inc({ model, target, state: on ? 'on' : 'off' });
  }

  invalidOutput(model: string): void {
    this.#invalidOutputs.inc({ model });
  }

  /** A store write refused for its rows and dropped (logged by the store). */
  forgotten(streams: number): void {
    this.#forgotten.inc(streams);
  }

  sessionTakeover(): void {
    this.#takeovers.inc();
  }

  storeDropped(): void {
    this.#storeDropped.inc();
  }

  /** The rolling window of one model × horizon × target: a score book adds each error it scores (no row object per error). */
  rollingErrors(model: string, horizon: number, target: string): { add(err: number, persistenceErr: number): void } {
    const key = `${model}|${horizon}|${target}`;
    let a = this.#accuracy.get(key);
    if (!a) this.#accuracy.set(key, (a = { model, horizon, target, errors: new RollingErrors() }));
    return a.errors;
  }

  held(reason: 'queue_full' | 'checkpoint' | 'reload' | 'store'): void {
    this.#holds.inc({ reason });
  }

  checkpoint(heldSeconds: number, seconds: number): void {
    this.#checkpoints.observe(heldSeconds);
    this.#checkpointWrites.observe(seconds);
  }

  residency(action: 'evicted' | 'restored', n = 1): void {
    if (n > 0) this.#residency.inc({ action }, n);
  }

  reload(model: string, outcome: 'kept_state' | 'reset_state' | 'failed'): void {
    this.#reloads.inc({ model, outcome });
  }

  replayed(n: number): void {
    this.#replayed.inc(n);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
