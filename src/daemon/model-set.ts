import type { TidecastConfig } from '../config/config.js';
import { ConfigError } from '../config/load-config.js';
import { InferenceEngine } from '../inference/engine.js';
import { loadModel, loadOptionsFor, type LoadedModel } from '../inference/model.js';
import { OutputHead } from '../inference/output-head.js';
import { CardScaler } from '../inference/scaler.js';
import type { StepResult } from '../inference/step-request.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { RouteModel } from '../streams/route-model.js';
import { compileRoutes, type CompiledRoute, type StepContext } from '../streams/routes.js';
import { AlertBook } from './alert-book.js';
import { ScoreBook } from './score-book.js';
import type { Service } from './service.js';

export interface ModelSetOptions {
  config: TidecastConfig;
  /** The next stage: every batch's results, in the order it ran. */
  sink: { handle(results: readonly StepResult<StepContext>[], model: LoadedModel): void };
  /** A batch finished (an engine's queue shrank). */
  onBatch?(): void;
  metrics: Metrics;
  log: Logger;
}

/**
 * The models the routes run, loaded once at start: per configured name its
 * engine, and per model name the scaler, output head and score book that
 * a hot reload switches to a new card. Stopping closes the engines, after
 * the queued steps ran when the drain made it in time.
 */
export class ModelSet implements Service {
  readonly name = 'models';
  /** Engines by configured name. */
  readonly engines = new Map<string, InferenceEngine<StepContext>>();
  /** By model name (the card's). */
  readonly scalers = new Map<string, CardScaler>();
  readonly heads = new Map<string, OutputHead>();
  readonly scores = new Map<string, ScoreBook>();
  /** Route models by configured name. */
  readonly routeModels = new Map<string, RouteModel>();
  /** Why some model cannot serve (no card): the caller refuses the configuration. */
  readonly problems: string[] = [];
  readonly #opts: ModelSetOptions;
  #drained = true;
  #lastBatches = -1;

  constructor(options: ModelSetOptions) {
    this.#opts = options;
  }

  /** Load every model a route names. */
  async start(): Promise<void> {
    const { config: cfg, log, metrics, sink } = this.#opts;
    for (const name of new Set(cfg.routes.flatMap((r) => r.models))) {
      const m = cfg.models[name]!;
      const model = await loadModel(m.path, loadOptionsFor(m, log));
      const card = model.card;
      if (!card) {
        this.problems.push(`models.${name}: ${m.path} has no model card; the daemon needs one for features, scaling, targets and horizons`);
        await model.session.release();
        continue;
      }
      const engine = new InferenceEngine<StepContext>(model, {
        maxBatch: cfg.batching.maxBatch,
        maxDelayMs: cfg.batching.maxDelayMs,
        thread: m.sessionThread,
        log,
        onBatch: (size, seconds) => {
          metrics.batch(model.name, size, seconds);
          this.#opts.onBatch?.();
        },
        onResults: (results, lm) => sink.handle(results, lm),
      });
      this.engines.set(name, engine);
      metrics.registerModel(model.name);
      const scaler = new CardScaler(card);
      const scores = new ScoreBook(card, (horizon, target) => metrics.rollingErrors(model.name, horizon, target), cfg.intervals, cfg.drift);
      scores.attachAlerts(new AlertBook(name, cfg.alerts, log), this.problems);
      this.scalers.set(model.name, scaler);
      this.heads.set(model.name, new OutputHead(card));
      this.scores.set(model.name, scores);
      this.routeModels.set(name, new RouteModel(engine, scaler, scores));
      await engine.ready;
      log.info({ model: model.name, path: model.path, provider: model.provider, runsOn: engine.runsOn, mode: model.mode, layout: model.signature.layout, states: model.signature.states.length }, 'model loaded');
    }
  }

  /**
   * The routes' runtime form over these models. A model without a card, or a
   * route naming a feature none of its models has, refuses the configuration
   * (`file`'s).
   */
  routes(cfg: TidecastConfig, file: string): CompiledRoute<RouteModel>[] {
    const problems = [...this.problems];
    cfg.routes.forEach((r, i) => {
      if (r.decoder.type !== 'json' || !r.decoder.features) return;
      const known = new Set(r.models.flatMap((n) => this.routeModels.get(n)?.features ?? []));
      for (const f of Object.keys(r.decoder.features)) {
        if (!known.has(f)) problems.push(`routes[${i}].decoder.features.${f}: no model of this route has a feature "${f}" (features: ${[...known].join(', ')})`);
      }
    });
    if (problems.length > 0) throw new ConfigError(file, problems);
    try {
      return compileRoutes(cfg.routes, (r) => r.models.map((n) => this.routeModels.get(n)!), { maxSamplesPerStep: cfg.limits.maxSamplesPerStep });
    } catch (err) {
      throw new ConfigError(file, [(err as Error).message]);
    }
  }

  /**
   * Whether the pipeline made progress since the last call: a batch completed,
   * or nothing is waiting or running. Drives the systemd watchdog, so a stuck
   * inference or store withholds the ping and systemd restarts the service.
   */
  progressed(): boolean {
    const engines = [...this.engines.values()];
    const batches = engines.reduce((n, e) => n + e.stats.batches, 0);
    const idle = engines.every((e) => e.queueDepth === 0 && !e.busy);
    const moved = batches !== this.#lastBatches;
    this.#lastBatches = batches;
    return moved || idle;
  }

  /** Steps queued over every engine. */
  get queueDepth(): number {
    let n = 0;
    for (const e of this.engines.values()) n += e.queueDepth;
    return n;
  }

  /** Whether some engine's queue holds `max` steps or more. */
  full(max: number): boolean {
    for (const e of this.engines.values()) if (e.queueDepth >= max) return true;
    return false;
  }

  /** Let every engine finish what is queued. */
  async drain(): Promise<void> {
    await Promise.all([...this.engines.values()].map((e) => e.drain()));
  }

  /** Stop closes the engines without waiting for queued steps (the input log replays them at the next start). */
  abandonQueued(): void {
    this.#drained = false;
  }

  async stop(): Promise<void> {
    for (const e of this.engines.values()) await e.close(this.#drained ? Infinity : 0);
  }
}
