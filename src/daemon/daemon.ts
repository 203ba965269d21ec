import { unwatchFile, watchFile } from 'node:fs';
import type { LoadedConfig } from '../config/config.js';
import { ConfigError } from '../config/load-config.js';
import { redactUrl } from '../config/redact.js';
import type { TidecastError } from '../errors.js';
import { InferenceEngine } from '../inference/engine.js';
import { readCard } from '../inference/card.js';
import { fingerprintOf, loadModel, loadOptionsFor, type LoadedModel } from '../inference/model.js';
import { OutputHead } from '../inference/output-head.js';
import { CardScaler } from '../inference/scaler.js';
import type { Logger } from '../log.js';
import { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import { MqttConnection } from '../mqtt/mqtt-connection.js';
import { HttpService } from '../http/http-service.js';
import { Metrics } from '../metrics/metrics.js';
import { packCheckpoint, type PackedCheckpoint } from '../store/codec.js';
import { InstanceLock } from '../store/instance-lock.js';
import { Store, type CheckpointedStream, type StreamStateRow } from '../store/store.js';
import { Ingest, compileRoutes, type RouteModel, type StepContext } from '../streams/ingest.js';
import { ForecastSink, type ForecastMessage } from './forecast-sink.js';
import { Intake, type HoldReason } from './intake.js';
import { ScoreBook } from './score-book.js';

export interface DaemonOptions {
  loaded: LoadedConfig;
  log: Logger;
  /** Each committed forecast (the demo's live view). */
  onForecast?(forecast: ForecastMessage, ctx: StepContext): void;
  now?: () => number;
  /** Most streams a checkpoint captures per turn of the event loop (default CHECKPOINT_CHUNK; the kill test sets 1). */
  checkpointChunk?: number;
}

export interface DaemonStats {
  messages: number;
  accepted: Record<string, number>;
  deadLetters: Record<string, number>;
  duplicates: number;
  steps: { submitted: number; skipped: number; gapResets: number };
  predictions: number;
  resets: number;
  streams: number;
  queueDepth: number;
  /** Why a message is held unacknowledged right now (backpressure), or null. */
  holding: HoldReason | null;
  /** Input-log position of the last input applied, and of the last checkpoint. */
  seq: number;
  checkpointSeq: number;
  /** The last start's recovery; skippedInputs: replayed inputs a stream's state, checkpointed after the record, already reflected. */
  recovery: { restoredStreams: number; replayedInputs: number; skippedInputs: number; ms: number };
  residency: { resident: number; evicted: number; restored: number };
}

/** Most streams a checkpoint captures in one turn of the event loop. */
const CHECKPOINT_CHUNK = 128;
/**
 * How long a checkpoint captures streams in one turn of the event loop, ms;
 * taking their error sums and packing them for the writer adds about as much.
 */
const CHECKPOINT_SLICE_MS = 1.5;
/** Streams per checkpoint transaction of the writer (chunks are packed as they are captured, and written together). */
const CHECKPOINT_WRITE = 1024;
/**
 * Checkpoint transactions posted to the writer and not yet committed, at
 * most, before capturing goes on. What waits for the writer is memory the
 * process keeps: glibc does not hand it back after the peak. bench/memory,
 * a checkpoint of 100k streams: with every transaction in flight (4,096
 * streams each) RSS grew by 1.2 KB per stream; 2 of 4,096, by 0.9 KB; 1 of
 * 1,024, by 0.1 KB.
 */
const CHECKPOINT_AHEAD = 1;

/**
 * The composition root: builds every component and owns the start and stop
 * order. Start: store → models → routes → MQTT subscriptions, then "ready".
 * Stop, in two phases: stop acknowledging messages and drain the batchers
 * (every accepted message gets its predictions committed), then release in
 * reverse order: MQTT, sessions, store.
 */
export class Daemon {
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #engines = new Map<string, InferenceEngine>();
  #store: Store | null = null;
  #mqtt: MqttConnection | null = null;
  #lock: InstanceLock | null = null;
  #ingest: Ingest | null = null;
  #intake: Intake | null = null;
  #sink: ForecastSink | null = null;
  #checkpointTimer: NodeJS.Timeout | null = null;
  #checkpointing: Promise<boolean> | null = null;
  #reloading: Promise<void> | null = null;
  #swapping = false;
  readonly #watched: string[] = [];
  #reloadTimer: NodeJS.Timeout | null = null;
  #checkpointSeq = 0;
  #recovery = { restoredStreams: 0, replayedInputs: 0, skippedInputs: 0, ms: 0 };
  readonly #scalers = new Map<string, CardScaler>();
  /** How each model's output is read (values, labels), kept current across hot reloads. */
  readonly #heads = new Map<string, OutputHead>();
  /** Each model's open forecasts and error sums, scored in memory. */
  readonly #scores = new Map<string, ScoreBook>();
  #discovery: HomeAssistantDiscovery | undefined;
  #pruneTimer: NodeJS.Timeout | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  #statsTimer: NodeJS.Timeout | null = null;
  #http: HttpService | null = null;
  #ready = false;
  #lastBatches = -1;
  readonly metrics: Metrics;
  #stopping: Promise<void> | null = null;
  #fail: (err: TidecastError) => void = () => undefined;
  /**
   * Settles (never rejects) with the store's fatal error if its writer meets a
   * failure no retry fixes (a damaged database): the caller stops the daemon
   * and exits with the store's code. Nothing is trimmed from the input log
   * after it.
   */
  readonly failed: Promise<TidecastError> = new Promise((resolve) => (this.#fail = resolve));
  /** Publications made before the broker connection started (recovery replay); null once sent. */
  #deferred: Array<[string, string, 0 | 1 | 2, boolean]> | null = [];

  constructor(options: DaemonOptions) {
    this.#opts = options;
    this.#log = options.log;
    this.metrics = new Metrics({
      models: () => [...this.#engines.values()].map((e) => ({ name: e.model.name, provider: e.model.provider, queueDepth: e.queueDepth, streams: e.streams })),
      brokerConnected: () => this.connected,
      reliability: () => ({
        holding: this.#intake?.holding ?? null,
        storeFailing: this.#store?.failing ?? false,
        residentStreams: this.#ingest?.residentStreams ?? 0,
        logBacklog: Math.max(0, (this.#intake?.lastSeq ?? 0) - this.#checkpointSeq),
      }),
    });
  }

  /** The HTTP endpoint's address once started (port 0 picks one). */
  get httpAddress(): { host: string; port: number } | null {
    return this.#http?.address ?? null;
  }

  /** What /readyz reports: every check must hold. */
  readiness(): { ready: boolean; checks: Record<string, boolean> } {
    const checks = {
      started: this.#ready,
      brokerConnected: this.connected,
      storeWritable: (this.#store !== null && !this.#store.failing && this.#store.writable()),
      modelsLoaded: this.#engines.size > 0,
    };
    return { ready: Object.values(checks).every(Boolean), checks };
  }

  /**
   * Whether the pipeline made progress since the last call: a batch completed,
   * or nothing is waiting or running. Drives the systemd watchdog, so a stuck
   * inference or store withholds the ping and systemd restarts the service.
   */
  progressed(): boolean {
    const engines = [...this.#engines.values()];
    const batches = engines.reduce((n, e) => n + e.stats.batches, 0);
    const idle = engines.every((e) => e.queueDepth === 0 && !e.busy);
    const moved = batches !== this.#lastBatches;
    this.#lastBatches = batches;
    return moved || idle;
  }

  get store(): Store | null {
    return this.#store;
  }

  /** The loaded models' engines, by configured name. */
  get engines(): ReadonlyMap<string, InferenceEngine> {
    return this.#engines;
  }

  /** Whether the broker connection is up right now. */
  get connected(): boolean {
    return this.#mqtt?.connected ?? false;
  }

  async start(): Promise<void> {
    const cfg = this.#opts.loaded.config;
    // Before anything touches the database: a second daemon on it stops here (exit 75).
    this.#lock = InstanceLock.acquire(cfg.store.path);
    try {
      await this.#start();
    } catch (err) {
      this.#lock?.release();
      this.#lock = null;
      throw err;
    }
  }

  async #start(): Promise<void> {
    const { config: cfg, file } = this.#opts.loaded;
    const log = this.#log;
    const store = new Store({
      path: cfg.store.path,
      retentionDays: cfg.store.retentionDays,
      deadLetterMaxMiB: cfg.store.deadLetterMaxMiB,
      durability: cfg.durability.level,
      maxSizeMiB: cfg.store.maxSizeMiB,
      integrityCheck: cfg.store.integrityCheck,
      log: log.child({ component: 'store' }),
      now: this.#opts.now,
    });
    store.onFatal = (err) => this.#fail(err);
    store.onDropped = () => this.metrics.storeDropped();
    store.start();
    this.#store = store;
    log.info({ path: cfg.store.path }, 'store open');

    const scalers = this.#scalers;
    const heads = this.#heads;
    // Forecasts that recovery replays are published once the broker connection is up (it starts after recovery).
    const publisher = {
      publish: (t: string, p: string, q: 0 | 1 | 2, r: boolean): void => {
        if (this.#deferred) this.#deferred.push([t, p, q, r]);
        else this.#mqtt?.publish(t, p, q, r);
      },
    };
    if (cfg.homeAssistant.discovery) {
      this.#discovery = new HomeAssistantDiscovery({
        prefix: cfg.homeAssistant.prefix,
        availabilityTopic: cfg.mqtt.availabilityTopic,
        maxEntities: cfg.homeAssistant.maxEntities,
        publish: publisher.publish,
        log: log.child({ component: 'home-assistant' }),
      });
    }
    this.#sink = new ForecastSink({
      store,
      publish: cfg.publish,
      publisher,
      heads,
      scores: this.#scores,
      log,
      metrics: this.metrics,
      discovery: this.#discovery,
      now: this.#opts.now,
      onForecast: this.#opts.onForecast,
    });
    const routeModels = new Map<string, RouteModel>();
    const problems: string[] = [];
    for (const name of new Set(cfg.routes.flatMap((r) => r.models))) {
      const m = cfg.models[name]!;
      const model = await loadModel(m.path!, loadOptionsFor(m, log));
      if (!model.card) {
        problems.push(`models.${name}: ${m.path} has no model card; the daemon needs one for features, scaling, targets and horizons`);
        await model.session.release();
        continue;
      }
      const sink = this.#sink;
      const engine = new InferenceEngine(model, {
        maxBatch: cfg.batching.maxBatch,
        maxDelayMs: cfg.batching.maxDelayMs,
        thread: m.sessionThread,
        log,
        onBatch: (size, seconds) => {
          this.metrics.batch(model.name, size, seconds);
          // The queue just shrank: a message held for backpressure may go on.
          if (this.#intake?.holding) queueMicrotask(() => this.#intake?.pump());
        },
        onResults: (results, lm) => sink.handle(results, lm),
      });
      this.#engines.set(name, engine);
      this.metrics.registerModel(model.name);
      const scaler = new CardScaler(model.card);
      scalers.set(model.name, scaler);
      heads.set(model.name, new OutputHead(model.card));
      const scores = new ScoreBook(model.card, (horizon, target) => this.metrics.rollingErrors(model.name, horizon, target));
      this.#scores.set(model.name, scores);
      routeModels.set(name, { name: model.name, engine, scaler, scores, features: model.card.features.map((f) => f.name), stepSeconds: model.card.stepSeconds });
      await engine.ready;
      log.info({ model: model.name, path: model.path, provider: model.provider, runsOn: engine.runsOn, mode: model.mode, layout: model.signature.layout, states: model.signature.states.length }, 'model loaded');
    }
    cfg.routes.forEach((r, i) => {
      if (r.decoder.type !== 'json' || !r.decoder.features) return;
      const known = new Set(r.models.flatMap((n) => routeModels.get(n)?.features ?? []));
      for (const f of Object.keys(r.decoder.features)) {
        if (!known.has(f)) problems.push(`routes[${i}].decoder.features.${f}: no model of this route has a feature "${f}" (features: ${[...known].join(', ')})`);
      }
    });
    if (problems.length > 0) throw new ConfigError(file, problems);
    let routes;
    try {
      routes = compileRoutes(cfg.routes, (r) => r.models.map((n) => routeModels.get(n)!), { maxSamplesPerStep: cfg.limits.maxSamplesPerStep });
    } catch (err) {
      throw new ConfigError(file, [(err as Error).message]);
    }
    const ingest = new Ingest({
      routes,
      maxPayloadBytes: cfg.mqtt.maxPayloadBytes,
      maxStreams: cfg.limits.maxStreams,
      maxFutureMs: cfg.limits.maxFutureS * 1000,
      deadLetters: { perMinute: cfg.limits.deadLettersPerMinute, perSourcePerMinute: cfg.limits.deadLettersPerSourcePerMinute, now: this.#opts.now },
      store,
      onAccepted: (route) => this.metrics.message(route),
      onRejected: (reason, stored) => this.metrics.deadLetter(reason, stored),
      onGap: (_stream, models) => models.forEach((m) => this.metrics.reset(m, 'gap')),
      onResidency: (action, n) => this.metrics.residency(action, n),
      onStateDiscarded: (stream, model) => store.addEvent({ at: this.#now(), stream, model, kind: 'state_discarded', detail: 'saved state belongs to another version of the model file' }),
      log,
    });
    this.#ingest = ingest;
    const intake = new Intake({ ingest, store, busy: () => this.#busy(), onHold: (reason) => this.metrics.held(reason), log });
    this.#intake = intake;
    store.onRecovered = () => intake.pump();

    const replayed = await this.#recover();

    if (cfg.routes.some((r) => r.resample.wallClock)) {
      // Live streams: close steps whose time has passed even if no later sample comes.
      this.#sweepTimer = setInterval(() => intake.tick(this.#now()), 1000).unref();
    }
    this.#checkpointTimer = setInterval(() => void this.checkpoint(), cfg.durability.checkpointIntervalS * 1000).unref();

    this.#pruneTimer = setInterval(() => void this.#prune(), cfg.store.pruneIntervalS * 1000).unref();

    this.#mqtt = new MqttConnection({
      config: cfg.mqtt,
      secrets: this.#opts.loaded.secrets,
      filters: ingest.filters,
      onMessage: (message, ack) => intake.offer(message, ack),
      onTakeover: () => this.metrics.sessionTakeover(),
      log: log.child({ component: 'mqtt' }),
      now: this.#opts.now,
    });
    if (cfg.http.enabled) {
      this.#http = new HttpService({
        host: cfg.http.host,
        port: cfg.http.port,
        metrics: this.metrics,
        readiness: () => this.readiness(),
        dashboard: {
          file: cfg.store.path,
          db: () => store.db,
          models: () => [...this.#engines.values()].map((e) => ({ name: e.model.name, provider: e.model.provider, mode: e.model.mode, path: e.model.path, card: e.model.card })),
          deltas: (stream, model) => this.#scores.get(model)?.deltasOf(stream) ?? [],
        },
        ...(this.#opts.loaded.secrets.httpToken !== undefined ? { token: this.#opts.loaded.secrets.httpToken } : {}),
        protectMetrics: cfg.http.protectMetrics,
        allowedHosts: cfg.http.allowedHosts,
        ratePerS: cfg.http.ratePerS,
        log: log.child({ component: 'http' }),
      });
      await this.#http.start();
      log.info({ url: `http://${this.#http.address!.host}:${this.#http.address!.port}` }, 'http endpoint listening');
    }
    if (cfg.mqtt.tls?.rejectUnauthorized === false) {
      log.warn({ url: redactUrl(cfg.mqtt.url) }, "TLS certificate checks are off (mqtt.tls.rejectUnauthorized: false): anyone on the network path can pose as the broker; give the broker's CA in mqtt.tls.caFile instead");
    }
    log.info({ url: redactUrl(cfg.mqtt.url), filters: ingest.filters }, 'connecting to broker');
    await this.#mqtt.start();
    const deferred = this.#deferred ?? [];
    this.#deferred = null;
    for (const [t, p, q, r] of deferred) this.#mqtt.publish(t, p, q, r);
    if (deferred.length > 0) log.info({ messages: deferred.length }, 'published what recovery replayed');
    // Only now that they are published may a checkpoint move past the replayed inputs (the log starts over).
    if (replayed > 0) await this.checkpoint();
    if (cfg.stats.intervalS > 0) {
      this.#statsTimer = setInterval(() => {
        this.#mqtt?.publish(cfg.stats.topic, JSON.stringify({ at: new Date().toISOString(), ...this.stats() }), 0, true);
      }, cfg.stats.intervalS * 1000).unref();
    }
    // A changed model file or card is picked up without a restart (debounced: a copy takes a moment).
    for (const name of this.#engines.keys()) {
      const e = this.#engines.get(name)!;
      for (const f of [e.model.path, e.model.cardPath].filter((x): x is string => x !== null)) {
        watchFile(f, { interval: 1000 }, (cur, prev) => {
          if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
          if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
          this.#reloadTimer = setTimeout(() => void this.reloadModels('file changed'), 500);
        });
        this.#watched.push(f);
      }
    }
    this.#ready = true;
    log.info({ routes: routes.length, models: [...this.#engines.keys()] }, 'ready');
  }

  stats(): DaemonStats {
    const engines = [...this.#engines.values()];
    return {
      messages: this.#mqtt?.received ?? 0,
      accepted: Object.fromEntries(this.#ingest?.accepted ?? []),
      deadLetters: Object.fromEntries(this.#ingest?.rejected ?? []),
      duplicates: this.#ingest?.duplicates ?? 0,
      steps: { ...(this.#ingest?.steps ?? { submitted: 0, skipped: 0, gapResets: 0 }) },
      predictions: this.#sink?.predictions ?? 0,
      resets: engines.reduce((n, e) => n + e.stats.resets, 0),
      streams: engines.reduce((n, e) => Math.max(n, e.streams), 0),
      queueDepth: engines.reduce((n, e) => n + e.queueDepth, 0),
      holding: this.#intake?.holding ?? null,
      seq: this.#intake?.lastSeq ?? 0,
      checkpointSeq: this.#checkpointSeq,
      recovery: { ...this.#recovery },
      residency: { resident: this.#ingest?.residentStreams ?? 0, ...(this.#ingest?.residency ?? { evicted: 0, restored: 0 }) },
    };
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  /** The pipeline's reason to hold the next message, or null. */
  #busy(): HoldReason | null {
    if (this.#swapping) return 'reload';
    // The writer thread has as many ops in hand as it should: wait for it as for a full engine queue.
    if (this.#store?.backlogged) return 'queue_full';
    const max = this.#opts.loaded.config.limits.maxQueuedSteps;
    for (const e of this.#engines.values()) if (e.queueDepth >= max) return 'queue_full';
    return null;
  }

  async #drainEngines(): Promise<void> {
    await Promise.all([...this.#engines.values()].map((e) => e.drain()));
  }

  /**
   * Crash recovery: bring back the wall-clock routes' streams that were in
   * memory at the last checkpoint (the others load on their next message,
   * from the same checkpoint) and replay every input logged after it
   * (predictions already stored are recomputed and skipped, not duplicated;
   * every recomputed forecast is published again once the broker connection
   * is up, and only then does a checkpoint move past them). Returns the
   * number of inputs replayed.
   */
  async #recover(): Promise<number> {
    const store = this.#store!;
    const ingest = this.#ingest!;
    const intake = this.#intake!;
    const started = performance.now();
    const from = store.checkpointSeq();
    this.#checkpointSeq = from;
    intake.lastSeq = from;
    let restored = 0;
    for (const row of store.residentStreams(ingest.eagerGroups)) if (ingest.restore(row)) restored++;
    let replayed = 0;
    this.#sink!.replaying = true;
    for (let page = store.inputAfter(from, 1000); page.length > 0; page = store.inputAfter(intake.lastSeq, 1000)) {
      for (const row of page) {
        ingest.replay(row.seq, row.kind, row.topic, row.payload, row.receivedAt, row.note);
        intake.lastSeq = row.seq;
        replayed++;
        // The same bound as live intake (limits.maxQueuedSteps): let the engines catch up.
        if (this.#busy() === 'queue_full') await this.#drainEngines();
      }
    }
    await this.#drainEngines();
    this.#sink!.replaying = false;
    // Every replayed batch committed (its forecasts handed to the publisher, deferred until the broker connection is up).
    await store.settled();
    this.metrics.replayed(replayed);
    this.#recovery = { restoredStreams: restored, replayedInputs: replayed, skippedInputs: ingest.replaySkipped, ms: Math.round(performance.now() - started) };
    if (replayed > 0 || restored > 0) this.#log.info({ checkpointSeq: from, ...this.#recovery }, 'recovered from checkpoint');
    return replayed;
  }

  /**
   * Hot reload (SIGHUP, or a watched model file or card changed): load each
   * model file again and, where it changed, swap it in between batches: new
   * messages are held, the engines finish what is queued, then the next batch
   * runs on the new session. Streams keep their state when the new graph's
   * state has the same shape, and start over (logged, an event per model)
   * when it does not. A file that fails to load, or whose features or step
   * differ, leaves the running model in place and says why.
   */
  reloadModels(reason = 'SIGHUP'): Promise<void> {
    this.#reloading ??= this.#reload(reason).finally(() => {
      this.#reloading = null;
      this.#intake?.pump();
    });
    return this.#reloading;
  }

  async #reload(reason: string): Promise<void> {
    const cfg = this.#opts.loaded.config;
    const log = this.#log;
    const store = this.#store;
    if (!store || this.#stopping) return;
    // The running model stays: counted, logged and stored as an event.
    const failed = (model: string, detail: string, logged: Record<string, unknown>, message: string): void => {
      this.metrics.reload(model, 'failed');
      log.error({ model, reason, ...logged }, message);
      store.addEvent({ at: this.#now(), stream: null, model, kind: 'model_reload_failed', detail });
    };
    for (const [name, engine] of this.#engines) {
      const m = cfg.models[name]!;
      const current = engine.model;
      // Neither file changed (one change event reloads every model): no new session to build.
      if (unchanged(current)) continue;
      let next;
      try {
        next = await loadModel(m.path!, loadOptionsFor(m, log));
      } catch (err) {
        const message = (err as Error).message;
        failed(current.name, message.slice(0, 500), { err: { message, code: (err as { code?: unknown }).code } }, 'model reload failed; the running model stays');
        continue;
      }
      if (next.fingerprint === current.fingerprint && JSON.stringify(next.card) === JSON.stringify(current.card)) {
        await next.session.release();
        continue;
      }
      const refuse = this.#incompatible(current, next);
      if (refuse) {
        await next.session.release();
        failed(current.name, refuse, { refused: refuse }, 'model reload refused; the running model stays (restart to change this)');
        continue;
      }
      this.#swapping = true;
      try {
        await this.#drainEngines();
        const { stateKept, streams } = await engine.replaceModel(next);
        this.#scalers.get(current.name)?.use(next.card!);
        this.#heads.get(current.name)?.use(next.card!);
        this.#scores.get(current.name)?.use(next.card!);
        this.#discovery?.forget(current.name);
        if (stateKept) {
          // Spilled streams' saved state fits the new file too.
          store.adoptFingerprint(current.name, current.fingerprint, next.fingerprint);
        }
        this.metrics.reload(current.name, stateKept ? 'kept_state' : 'reset_state');
        const detail = stateKept ? `${streams} streams kept their state` : `${streams} streams start over: the new graph's state has another shape`;
        store.addEvent({ at: this.#now(), stream: null, model: current.name, kind: stateKept ? 'model_reloaded' : 'model_reloaded_state_reset', detail });
        (stateKept ? log.info.bind(log) : log.warn.bind(log))({ model: current.name, reason, path: next.path, fingerprint: next.fingerprint, provider: next.provider, stateKept, streams }, 'model reloaded');
      } finally {
        this.#swapping = false;
      }
    }
    // The reload's events are stored by the time it returns.
    if (!store.failing) await store.settled();
  }

  /** Why a reloaded model cannot replace the running one in place, or null. */
  #incompatible(current: LoadedModel, next: LoadedModel): string | null {
    if (!next.card) return `${next.path} has no model card`;
    if (next.name !== current.name) return `the new card names the model "${next.name}", the running one is "${current.name}"`;
    const names = (c: LoadedModel): string => c.card!.features.map((f) => f.name).join(',');
    if (names(next) !== names(current)) return `the new card's features (${names(next)}) differ from the running model's (${names(current)})`;
    if (next.card.stepSeconds !== current.card!.stepSeconds) return `the new card's step (${next.card.stepSeconds} s) differs from the running model's (${current.card!.stepSeconds} s)`;
    return null;
  }

  /**
   * Write a checkpoint, incrementally, while messages flow: the streams
   * changed since the last one (and the idle ones, spilled) are captured a
   * chunk per turn of the event loop, each as soon as none of its steps waits
   * in an engine, with the log position its state reflects, and the writer
   * thread commits each chunk with the streams' error sums. Once every chunk
   * has committed, the checkpoint's record (the position recovery replays
   * from: where this one started) is written, the log trimmed up to it and
   * the spilled streams leave memory. Returns false when it could not (the
   * store is failing, or refused it): the log keeps everything, the next one
   * retries.
   */
  checkpoint(): Promise<boolean> {
    this.#checkpointing ??= this.#checkpoint().finally(() => {
      this.#checkpointing = null;
      this.#intake?.pump();
    });
    return this.#checkpointing;
  }

  async #checkpoint(): Promise<boolean> {
    const store = this.#store;
    const ingest = this.#ingest;
    const intake = this.#intake;
    if (!store || !ingest || !intake) return false;
    if (store.failing) {
      this.#log.warn({ err: store.failure?.message }, 'checkpoint postponed: the store cannot write');
      return false;
    }
    // Forecasts that recovery recomputed wait for the broker connection: a checkpoint past their
    // inputs would keep a crash meanwhile from publishing them again.
    if (this.#deferred !== null && this.#deferred.length > 0) return false;
    const started = performance.now();
    const from = intake.lastSeq;
    const books = [...this.#scores.values()];
    const ttl = this.#opts.loaded.config.limits.idleTtlS;
    const targets = ingest.checkpointTargets(ttl > 0 ? this.#now() - ttl * 1000 : -Infinity);
    const chunks: Array<{ rows: CheckpointedStream[]; written: Promise<void> }> = [];
    const chunk = this.#opts.checkpointChunk ?? CHECKPOINT_CHUNK;
    // Rounds' chunks, packed, wait here until CHECKPOINT_WRITE streams (or the end) make one transaction.
    let packs: PackedCheckpoint[] = [];
    let packed: CheckpointedStream[] = [];
    const post = (): void => {
      if (packs.length === 0) return;
      chunks.push({ rows: packed, written: store.writePacked(null, packs) });
      packs = [];
      packed = [];
    };
    let queue = targets;
    let head = 0;
    let retry: typeof targets = [];
    let longest = 0;
    let rounds = 0;
    for (;;) {
      if (head >= queue.length) {
        if (retry.length === 0) break;
        queue = retry;
        retry = [];
        head = 0;
      }
      const t0 = performance.now();
      const rows: StreamStateRow[] = [];
      // A chunk per turn: at most `chunk` streams, about CHECKPOINT_SLICE_MS of capturing.
      while (head < queue.length && rows.length < chunk && !(rows.length % 8 === 7 && performance.now() - t0 > CHECKPOINT_SLICE_MS)) {
        const t = queue[head++]!;
        const row = ingest.capture(t, intake.lastSeq);
        if (row === null) retry.push(t); // a step of it is in an engine: a later turn
        else if (row) rows.push(row);
      }
      if (rows.length > 0) {
        const streams = rows.map((r) => r.stream);
        packs.push(packCheckpoint(rows, books.flatMap((b) => b.take(streams))));
        // Packed, a row's copies of state are no longer needed: keep what the end of the checkpoint
        // reads (bench/memory, 100k streams: holding them all took RSS from 2.6 to 5.6 KB per stream).
        for (const r of rows) packed.push({ group: r.group, stream: r.stream, resident: r.resident });
        if (packed.length >= CHECKPOINT_WRITE) post();
      }
      longest = Math.max(longest, performance.now() - t0);
      // Capture no further ahead of the writer than CHECKPOINT_AHEAD transactions (messages flow meanwhile).
      const behind = chunks[chunks.length - 1 - CHECKPOINT_AHEAD];
      if (behind) await behind.written.catch(() => undefined); // its failure is handled below
      if (head >= queue.length && retry.length === 0) break;
      // Let messages in; a stream whose step runs now is quiet once its batch returns.
      if (++rounds % 64 === 0) await new Promise((r) => setTimeout(r, 1));
      else await new Promise((r) => setImmediate(r));
    }
    post();
    const failed: CheckpointedStream[] = [];
    let error: unknown = null;
    for (const c of chunks) {
      try {
        await c.written;
        for (const b of books) b.stored(c.rows.map((r) => r.stream));
      } catch (err) {
        error = err;
        for (const b of books) b.unstored(c.rows.map((r) => r.stream));
        failed.push(...c.rows);
      }
    }
    if (error === null) {
      try {
        await store.writeCheckpoint(from, []);
      } catch (err) {
        error = err;
      }
    }
    const rows = chunks.flatMap((c) => c.rows);
    if (error !== null) {
      // The chunks that committed hold their streams' states with their positions: still valid for a replay from the last record.
      ingest.unstored(failed);
      this.#log.warn({ err: error }, 'checkpoint failed; the input log keeps every message since the last one');
      return false;
    }
    ingest.checkpointed(rows);
    this.#checkpointSeq = from;
    const seconds = (performance.now() - started) / 1000;
    this.metrics.checkpoint(longest / 1000, seconds);
    this.#log.debug({ seq: from, streams: rows.length, chunks: chunks.length, rounds, longestMs: Math.round(longest * 10) / 10, ms: Math.round(seconds * 1000) }, 'checkpoint');
    return true;
  }

  /** Graceful stop; the drain is bounded by shutdown.drainTimeoutMs. Safe to call twice. */
  /**
   * Retention: rows older than store.retentionDays, dead letters past their
   * size cap, and streams idle (out of memory) past forgetStreamsAfterDays,
   * whose Home Assistant entities are removed.
   */
  async #prune(): Promise<void> {
    const { config: cfg } = this.#opts.loaded;
    const store = this.#store;
    if (!store) return;
    const log = this.#log;
    try {
      log.info({ deleted: await store.prune() }, 'retention pruning');
      const days = cfg.store.forgetStreamsAfterDays ?? cfg.store.retentionDays;
      const forgotten = await store.forget(this.#now() - days * 86_400_000);
      if (forgotten.length === 0) return;
      for (const f of forgotten) {
        for (const model of f.models) {
          const card = this.#engines.get(model)?.model.card;
          if (card) this.#discovery?.retract(f.stream, model, card);
        }
      }
      this.metrics.forgotten(forgotten.length);
      log.info({ streams: forgotten.length, idleDays: days, first: forgotten.slice(0, 5).map((f) => f.stream) }, 'forgot idle streams');
    } catch (err) {
      log.error({ err }, 'retention pruning failed');
    }
  }

  stop(deadlineMs = this.#opts.loaded.config.shutdown.drainTimeoutMs): Promise<void> {
    this.#stopping ??= this.#stop(deadlineMs);
    return this.#stopping;
  }

  async #stop(deadlineMs: number): Promise<void> {
    const log = this.#log;
    log.info('stopping: no new messages, draining');
    this.#mqtt?.pause();
    this.#intake?.stop();
    for (const f of this.#watched) unwatchFile(f);
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    this.#ready = false;
    const drained = this.#drainEngines().then(() => true);
    const deadline = new Promise<false>((r) => setTimeout(() => r(false), deadlineMs).unref());
    const inTime = await Promise.race([drained, deadline]);
    if (!inTime) log.error({ deadlineMs, queued: this.stats().queueDepth }, 'drain deadline passed; stopping with steps still queued (the input log replays them at the next start)');
    // A checkpoint waits on the writer: bounded by the same deadline (a full disk may never let it through).
    else if (this.#store && !(await Promise.race([this.checkpoint(), deadline]))) log.warn('no final checkpoint: the next start replays the input log');
    await this.#mqtt?.stop();
    await this.#http?.stop();
    for (const e of this.#engines.values()) await e.close(inTime ? Infinity : 0);
    await this.#store?.stop();
    this.#lock?.release();
    log.info(this.stats(), 'stopped');
  }
}

/** Whether a running model's file and card are as it loaded them (false when either cannot be read: loading says why). */
function unchanged(model: LoadedModel): boolean {
  try {
    return fingerprintOf(model.path) === model.fingerprint && model.cardPath !== null && JSON.stringify(readCard(model.cardPath)) === JSON.stringify(model.card);
  } catch {
    return false;
  }
}
