import { clockWithNow, systemClock, type Clock } from '../clock.js';
import type { LoadedConfig } from '../config/config.js';
import { redactUrl } from '../config/redact.js';
import type { TidecastError } from '../errors.js';
import type { InferenceEngine } from '../inference/engine.js';
import type { Logger } from '../log.js';
import { HttpService } from '../http/http-service.js';
import { Metrics } from '../metrics/metrics.js';
import { DeferredPublisher } from '../mqtt/deferred-publisher.js';
import { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import { MqttConnection } from '../mqtt/mqtt-connection.js';
import { InstanceLock } from '../store/instance-lock.js';
import { Store } from '../store/store.js';
import { Admission } from '../streams/admission.js';
import { Refusals } from '../streams/refusals.js';
import { Residency } from '../streams/residency.js';
import { groupsOf, type StepContext } from '../streams/routes.js';
import { StepDispatcher } from '../streams/step-dispatcher.js';
import { Checkpointer } from './checkpointer.js';
import { ForecastSink, type ForecastMessage } from './forecast-sink.js';
import { Intake, type HoldReason } from './intake.js';
import { ModelReloader } from './model-reloader.js';
import { ModelSet } from './model-set.js';
import { statsOf, type DaemonParts, type DaemonStats } from './daemon-stats.js';
import { recover, type RecoveryStats } from './recovery.js';
import { Retention } from './retention.js';
import { ServiceGroup } from './service.js';
import { StatsReporter } from './stats-reporter.js';

export interface DaemonOptions {
  loaded: LoadedConfig;
  log: Logger;
  /** Each committed forecast (the demo's live view). */
  onForecast?(forecast: ForecastMessage, ctx: StepContext): void;
  /** Time and timers (default: the system clock). */
  clock?: Clock;
  /** Wall-clock time alone, with the system's timers (a test's fixed time); `clock` wins. */
  now?: () => number;
  /** Most streams a checkpoint captures per turn of the event loop (default CHECKPOINT_CHUNK; the kill test sets 1). */
  checkpointChunk?: number;
}

/**
 * The composition root: builds every component, hands each stage of the
 * message path the next one, and owns the lifecycle. Start: store → models →
 * routes → recovery → checkpointer, retention, intake → HTTP → MQTT → stats,
 * model reloader, then "ready"; each a Service in one ServiceGroup. Stop, in
 * two phases (fastify's close): stop taking messages and drain the engines
 * (every accepted message gets its predictions committed) and checkpoint,
 * then the group stops every service in reverse order.
 */
export class Daemon {
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #services: ServiceGroup;
  readonly #publisher = new DeferredPublisher();
  #parts: Partial<DaemonParts> = {};
  #lock: InstanceLock | null = null;
  #recovery: RecoveryStats = { restoredStreams: 0, replayedInputs: 0, skippedInputs: 0, ms: 0 };
  #ready = false;
  #stopping: Promise<void> | null = null;
  #fail: (err: TidecastError) => void = () => undefined;
  readonly metrics: Metrics;
  /**
   * Settles (never rejects) with the store's fatal error if its writer meets a
   * failure no retry fixes (a damaged database): the caller stops the daemon
   * and exits with the store's code. Nothing is trimmed from the input log
   * after it.
   */
  readonly failed: Promise<TidecastError> = new Promise((resolve) => (this.#fail = resolve));

  constructor(options: DaemonOptions) {
    this.#opts = options;
    this.#log = options.log;
    this.#clock = options.clock ?? (options.now ? clockWithNow(options.now) : systemClock);
    this.#services = new ServiceGroup(options.log);
    const p = (): Partial<DaemonParts> => this.#parts;
    this.metrics = new Metrics({
      models: () => [...this.engines.values()].map((e) => ({ name: e.model.name, provider: e.model.provider, queueDepth: e.queueDepth, streams: e.streams })),
      brokerConnected: () => this.connected,
      alerts: () => [...(p().models?.scores ?? [])].flatMap(([model, book]) => book.alerts?.onCounts().map(([alert, on]) => ({ model, alert, on })) ?? []),
      drift: () => [...(p().models?.scores ?? [])].flatMap(([model, book]) => book.drift.onCounts().map(([target, on]) => ({ model, target, on }))),
      reliability: () => ({
        holding: p().intake?.holding ?? null,
        storeFailing: p().store?.failing ?? false,
        residentStreams: p().residency?.residentStreams ?? 0,
        logBacklog: Math.max(0, (p().intake?.lastSeq ?? 0) - (p().checkpointer?.seq ?? 0)),
      }),
    });
  }

  /** The HTTP endpoint's address once started (port 0 picks one). */
  get httpAddress(): { host: string; port: number } | null {
    return this.#parts.http?.address ?? null;
  }

  get store(): Store | null {
    return this.#parts.store ?? null;
  }

  /** The loaded models' engines, by configured name. */
  get engines(): ReadonlyMap<string, InferenceEngine<StepContext>> {
    return this.#parts.models?.engines ?? new Map();
  }

  /** Whether the broker connection is up right now. */
  get connected(): boolean {
    return this.#parts.mqtt?.connected ?? false;
  }

  /** What /readyz reports: every check must hold. */
  readiness(): { ready: boolean; checks: Record<string, boolean> } {
    const store = this.#parts.store;
    const checks = { started: this.#ready, brokerConnected: this.connected, storeWritable: store !== undefined && !store.failing && store.writable(), modelsLoaded: this.engines.size > 0 };
    return { ready: Object.values(checks).every(Boolean), checks };
  }

  /** Whether the pipeline made progress since the last call (drives the systemd watchdog): see ModelSet.progressed. */
  progressed(): boolean {
    return this.#parts.models?.progressed() ?? true;
  }

  stats(): DaemonStats {
    return statsOf(this.#parts, this.#recovery);
  }

  /** Write a checkpoint now (see Checkpointer); false when it could not. */
  checkpoint(): Promise<boolean> {
    return this.#parts.checkpointer?.checkpoint() ?? Promise.resolve(false);
  }

  /** Hot reload (SIGHUP, or a watched model file or card changed): see ModelReloader. */
  reloadModels(reason = 'SIGHUP'): Promise<void> {
    const reloader = this.#parts.reloader;
    if (!reloader || this.#stopping) return Promise.resolve();
    return reloader.reload(reason);
  }

  async start(): Promise<void> {
    // Before anything touches the database: a second daemon on it stops here (exit 75).
    this.#lock = InstanceLock.acquire(this.#opts.loaded.config.store.path);
    try {
      await this.#start();
    } catch (err) {
      // What started is stopped here; a later stop() has nothing to drain or checkpoint.
      this.#stopping ??= this.#services.stop().then(() => {
        this.#lock?.release();
        this.#lock = null;
      });
      await this.#stopping;
      throw err;
    }
  }

  async #start(): Promise<void> {
    const { config: cfg, file, secrets } = this.#opts.loaded;
    const log = this.#log;
    const clock = this.#clock;
    const metrics = this.metrics;
    const services = this.#services;
    const now = (): number => clock.now();
    const p = this.#parts;

    const store = new Store({ path: cfg.store.path, retentionDays: cfg.store.retentionDays, deadLetterMaxMiB: cfg.store.deadLetterMaxMiB, durability: cfg.durability.level, maxSizeMiB: cfg.store.maxSizeMiB, integrityCheck: cfg.store.integrityCheck, log: log.child({ component: 'store' }), clock });
    store.onFatal = (err) => this.#fail(err);
    store.onDropped = () => metrics.storeDropped();
    await services.start({ name: 'store', start: () => store.start(), stop: () => store.stop() });
    p.store = store;
    log.info({ path: cfg.store.path }, 'store open');

    // Forecasts that recovery replays wait in the deferred publisher until the broker connection is up.
    const publisher = this.#publisher;
    const discovery = cfg.homeAssistant.discovery
      ? new HomeAssistantDiscovery({ prefix: cfg.homeAssistant.prefix, availabilityTopic: cfg.mqtt.availabilityTopic, maxEntities: cfg.homeAssistant.maxEntities, alerts: cfg.alerts, publish: (t, m, q, r) => publisher.publish(t, m, q, r), log: log.child({ component: 'home-assistant' }) })
      : undefined;
    // The message path's last stages first: each stage is handed the next one.
    let intake: Intake | undefined;
    const models = new ModelSet({ config: cfg, sink: { handle: (results, model) => sink.handle(results, model) }, onBatch: () => {
      // The queue just shrank: a message held for backpressure may go on.
      if (intake?.holding) queueMicrotask(() => intake?.pump());
    }, metrics, log });
    const sink = new ForecastSink({ store, publish: cfg.publish, driftTopic: cfg.drift.topic, publisher, heads: models.heads, scores: models.scores, log, metrics, discovery, now, onForecast: this.#opts.onForecast });
    p.sink = sink;
    await services.start(models);
    p.models = models;
    const routes = models.routes(cfg, file);
    p.routes = routes;

    const refusals = new Refusals({ caps: { perMinute: cfg.limits.deadLettersPerMinute, perSourcePerMinute: cfg.limits.deadLettersPerSourcePerMinute }, onRefused: (reason, stored) => metrics.deadLetter(reason, stored), clock, log });
    const residency = new Residency({
      groups: groupsOf(routes),
      loadStream: (group, stream) => store.loadStream(group, stream),
      onResidency: (action, n) => metrics.residency(action, n),
      onStateDiscarded: (stream, model) => store.addEvent({ at: clock.now(), stream, model, kind: 'state_discarded', detail: 'saved state belongs to another version of the model file' }),
      log,
    });
    const admission = new Admission({ routes, maxPayloadBytes: cfg.mqtt.maxPayloadBytes, maxStreams: cfg.limits.maxStreams, maxFutureMs: cfg.limits.maxFutureS * 1000, residents: residency, refusals, log });
    const dispatcher = new StepDispatcher({
      routes,
      admission,
      residency,
      refusals,
      store,
      onAccepted: (route) => metrics.message(route),
      onGap: (_stream, names) => names.forEach((m) => metrics.reset(m, 'gap')),
      log,
    });
    // Live streams: close steps whose time has passed even if no later sample comes.
    const sweepIntervalMs = cfg.routes.some((r) => r.resample.wallClock) ? 1000 : 0;
    intake = new Intake({ admission, dispatcher, store, busy: () => this.#busy(), onHold: (reason) => metrics.held(reason), sweepIntervalMs, clock, log });
    const pump = (): void => intake?.pump();
    store.onRecovered = pump;
    const checkpointer = new Checkpointer({ store, streams: residency, position: () => intake.lastSeq, scores: models.scores, unpublished: () => publisher.waiting, intervalS: cfg.durability.checkpointIntervalS, idleTtlS: cfg.limits.idleTtlS, chunk: this.#opts.checkpointChunk, onDone: pump, clock, metrics, log });
    const reloader = new ModelReloader({ engines: models.engines, models: cfg.models, scalers: models.scalers, heads: models.heads, scores: models.scores, discovery, store, drain: () => models.drain(), onDone: pump, clock, metrics, log });
    Object.assign(p, { refusals, residency, dispatcher, intake, checkpointer, reloader });

    const recovered = await recover({ store, residency, dispatcher, sink, position: intake, queueFull: () => this.#busy() === 'queue_full', drain: () => models.drain(), metrics, log });
    checkpointer.seq = recovered.checkpointSeq;
    this.#recovery = { restoredStreams: recovered.restoredStreams, replayedInputs: recovered.replayedInputs, skippedInputs: recovered.skippedInputs, ms: recovered.ms };

    await services.start(checkpointer);
    const forgetAfterDays = cfg.store.forgetStreamsAfterDays;
    await services.start(new Retention({ store, pruneIntervalS: cfg.store.pruneIntervalS, forgetAfterDays, cardOf: (m) => models.engines.get(m)?.model.card, discovery, clock, metrics, log }));
    await services.start(intake);
    if (cfg.http.enabled) {
      const http = new HttpService({
        host: cfg.http.host,
        port: cfg.http.port,
        metrics,
        readiness: () => this.readiness(),
        dashboard: {
          file: cfg.store.path,
          db: () => store.db,
          models: () => [...models.engines.values()].map((e) => ({ name: e.model.name, provider: e.model.provider, mode: e.model.mode, path: e.model.path, card: e.model.card })),
          deltas: (stream, model) => models.scores.get(model)?.deltasOf(stream) ?? [],
        },
        ...(secrets.httpToken !== undefined ? { token: secrets.httpToken } : {}),
        protectMetrics: cfg.http.protectMetrics,
        allowedHosts: cfg.http.allowedHosts,
        ratePerS: cfg.http.ratePerS,
        log: log.child({ component: 'http' }),
      });
      await services.start({ name: 'http', start: () => http.start(), stop: () => http.stop() });
      p.http = http;
      log.info({ url: `http://${http.address!.host}:${http.address!.port}` }, 'http endpoint listening');
    }
    if (cfg.mqtt.tls?.rejectUnauthorized === false) {
      log.warn({ url: redactUrl(cfg.mqtt.url) }, "TLS certificate checks are off (mqtt.tls.rejectUnauthorized: false): anyone on the network path can pose as the broker; give the broker's CA in mqtt.tls.caFile instead");
    }
    const mqtt = new MqttConnection({ config: cfg.mqtt, secrets, filters: admission.filters, onMessage: (message, ack) => intake.offer(message, ack), onTakeover: () => metrics.sessionTakeover(), log: log.child({ component: 'mqtt' }), now });
    p.mqtt = mqtt;
    log.info({ url: redactUrl(cfg.mqtt.url), filters: admission.filters }, 'connecting to broker');
    await services.start({ name: 'mqtt', start: () => mqtt.start(), stop: () => mqtt.stop() });
    const waited = publisher.connect(mqtt);
    if (waited > 0) log.info({ messages: waited }, 'published what recovery replayed');
    // Only now that they are published may a checkpoint move past the replayed inputs (the log starts over).
    if (recovered.replayedInputs > 0) await checkpointer.checkpoint();
    await services.start(new StatsReporter({ topic: cfg.stats.topic, intervalS: cfg.stats.intervalS, stats: () => this.stats(), publisher: mqtt, clock }));
    // A changed model file or card is picked up without a restart.
    await services.start(reloader);
    this.#ready = true;
    log.info({ routes: routes.length, models: [...models.engines.keys()] }, 'ready');
  }

  /** The pipeline's reason to hold the next message, or null. */
  #busy(): HoldReason | null {
    const p = this.#parts;
    if (p.reloader?.swapping) return 'reload';
    // The writer thread has as many ops in hand as it should: wait for it as for a full engine queue.
    if (p.store?.backlogged) return 'queue_full';
    if (p.models?.full(this.#opts.loaded.config.limits.maxQueuedSteps)) return 'queue_full';
    return null;
  }

  /** Graceful stop; the drain is bounded by shutdown.drainTimeoutMs. Safe to call twice. */
  stop(deadlineMs = this.#opts.loaded.config.shutdown.drainTimeoutMs): Promise<void> {
    this.#stopping ??= this.#stop(deadlineMs);
    return this.#stopping;
  }

  async #stop(deadlineMs: number): Promise<void> {
    const log = this.#log;
    const p = this.#parts;
    log.info('stopping: no new messages, draining');
    // Phase one: take no more messages, ticks, reloads or periodic checkpoints...
    p.mqtt?.pause();
    p.intake?.stop();
    p.reloader?.stop();
    p.checkpointer?.stop();
    this.#ready = false;
    // ...let what was taken through, and checkpoint it.
    const drained = (p.models?.drain() ?? Promise.resolve()).then(() => true);
    const deadline = new Promise<false>((r) => setTimeout(() => r(false), deadlineMs).unref());
    const inTime = await Promise.race([drained, deadline]);
    if (!inTime) {
      log.error({ deadlineMs, queued: this.stats().queueDepth }, 'drain deadline passed; stopping with steps still queued (the input log replays them at the next start)');
      p.models?.abandonQueued();
    } else if (p.checkpointer && !(await Promise.race([p.checkpointer.checkpoint(), deadline]))) {
      // A checkpoint waits on the writer: bounded by the same deadline (a full disk may never let it through).
      log.warn('no final checkpoint: the next start replays the input log');
    }
    // Phase two: release everything, in reverse order of start.
    await this.#services.stop();
    this.#lock?.release();
    log.info(this.stats(), 'stopped');
  }
}
