import { unwatchFile, watchFile } from 'node:fs';
import type { Clock } from '../clock.js';
import type { ModelConfig } from '../config/config.js';
import { readCard } from '../inference/card.js';
import type { InferenceEngine } from '../inference/engine.js';
import { fingerprintOf, loadModel, loadOptionsFor, type LoadedModel } from '../inference/model.js';
import type { OutputHead } from '../inference/output-head.js';
import type { CardScaler } from '../inference/scaler.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HomeAssistantDiscovery } from '../mqtt/ha-discovery.js';
import type { Store } from '../store/store.js';
import type { ScoreBook } from './score-book.js';
import type { Service } from './service.js';

export interface ModelReloaderOptions {
  /** The running engines, by configured name. */
  engines: ReadonlyMap<string, InferenceEngine<unknown>>;
  models: Readonly<Record<string, ModelConfig>>;
  /** Per model name: what reads its inputs and outputs and scores it, switched to a reloaded card. */
  scalers: ReadonlyMap<string, CardScaler>;
  heads: ReadonlyMap<string, OutputHead>;
  scores: ReadonlyMap<string, ScoreBook>;
  discovery?: HomeAssistantDiscovery;
  store: Store;
  /** Let every engine finish what is queued (a swap happens between batches). */
  drain(): Promise<void>;
  /** A reload ended (a message held for it may go on). */
  onDone?(): void;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
}

/** How long a changed file must be left alone before it is loaded (a copy takes a moment), ms. */
const SETTLE_MS = 500;

/**
 * Hot reload (SIGHUP, or a watched model file or card changed): load each
 * model file again and, where it changed, swap it in between batches: new
 * messages are held, the engines finish what is queued, then the next batch
 * runs on the new session. Streams keep their state when the new graph's
 * state has the same shape, and start over (logged, an event per model)
 * when it does not. A file that fails to load, or whose features or step
 * differ, leaves the running model in place and says why.
 */
export class ModelReloader implements Service {
  readonly name = 'model-reloader';
  readonly #opts: ModelReloaderOptions;
  readonly #watched: string[] = [];
  #timer: unknown = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  /** True while a new model is being swapped in: the intake holds messages. */
  swapping = false;

  constructor(options: ModelReloaderOptions) {
    this.#opts = options;
  }

  /** Watch every model file and card. */
  start(): void {
    for (const e of this.#opts.engines.values()) {
      for (const f of [e.model.path, e.model.cardPath].filter((x): x is string => x !== null)) {
        watchFile(f, { interval: 1000 }, (cur, prev) => {
          if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
          if (this.#timer !== null) this.#opts.clock.clearTimeout(this.#timer);
          this.#timer = this.#opts.clock.setTimeout(() => {
            this.#timer = null;
            void this.reload('file changed');
          }, SETTLE_MS);
        });
        this.#watched.push(f);
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const f of this.#watched.splice(0)) unwatchFile(f);
    if (this.#timer !== null) this.#opts.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Reload now; a reload already running is joined. */
  reload(reason = 'SIGHUP'): Promise<void> {
    this.#running ??= this.#reload(reason).finally(() => {
      this.#running = null;
      this.#opts.onDone?.();
    });
    return this.#running;
  }

  async #reload(reason: string): Promise<void> {
    const { store, log, metrics, clock } = this.#opts;
    if (this.#stopped) return;
    // The running model stays: counted, logged and stored as an event.
    const failed = (model: string, detail: string, logged: Record<string, unknown>, message: string): void => {
      metrics.reload(model, 'failed');
      log.error({ model, reason, ...logged }, message);
      store.addEvent({ at: clock.now(), stream: null, model, kind: 'model_reload_failed', detail });
    };
    for (const [name, engine] of this.#opts.engines) {
      const m = this.#opts.models[name]!;
      const current = engine.model;
      // Neither file changed (one change event reloads every model): no new session to build.
      if (unchanged(current)) continue;
      let next;
      try {
        next = await loadModel(m.path, loadOptionsFor(m, log));
      } catch (err) {
        const message = (err as Error).message;
        failed(current.name, message.slice(0, 500), { err: { message, code: (err as { code?: unknown }).code } }, 'model reload failed; the running model stays');
        continue;
      }
      if (next.fingerprint === current.fingerprint && JSON.stringify(next.card) === JSON.stringify(current.card)) {
        await next.session.release();
        continue;
      }
      const refuse = incompatible(current, next);
      if (refuse || !next.card) {
        await next.session.release();
        failed(current.name, refuse ?? 'no card', { refused: refuse }, 'model reload refused; the running model stays (restart to change this)');
        continue;
      }
      const card = next.card;
      this.swapping = true;
      try {
        await this.#opts.drain();
        const { stateKept, streams } = await engine.replaceModel(next);
        this.#opts.scalers.get(current.name)?.use(card);
        this.#opts.heads.get(current.name)?.use(card);
        this.#opts.scores.get(current.name)?.use(card);
        this.#opts.discovery?.forget(current.name);
        // Spilled streams' saved state fits the new file too.
        if (stateKept) store.adoptFingerprint(current.name, current.fingerprint, next.fingerprint);
        metrics.reload(current.name, stateKept ? 'kept_state' : 'reset_state');
        const detail = stateKept ? `${streams} streams kept their state` : `${streams} streams start over: the new graph's state has another shape`;
        store.addEvent({ at: clock.now(), stream: null, model: current.name, kind: stateKept ? 'model_reloaded' : 'model_reloaded_state_reset', detail });
        (stateKept ? log.info.bind(log) : log.warn.bind(log))({ model: current.name, reason, path: next.path, fingerprint: next.fingerprint, provider: next.provider, stateKept, streams }, 'model reloaded');
      } finally {
        this.swapping = false;
      }
    }
    // The reload's events are stored by the time it returns.
    if (!store.failing) await store.settled();
  }
}

/** Why a reloaded model cannot replace the running one in place, or null. */
function incompatible(current: LoadedModel, next: LoadedModel): string | null {
  if (!next.card || !current.card) return `${next.path} has no model card`;
  if (next.name !== current.name) return `the new card names the model "${next.name}", the running one is "${current.name}"`;
  const names = (c: NonNullable<LoadedModel['card']>): string => c.features.map((f) => f.name).join(',');
  if (names(next.card) !== names(current.card)) return `the new card's features (${names(next.card)}) differ from the running model's (${names(current.card)})`;
  if (next.card.stepSeconds !== current.card.stepSeconds) return `the new card's step (${next.card.stepSeconds} s) differs from the running model's (${current.card.stepSeconds} s)`;
  return null;
}

/** Whether a running model's file and card are as it loaded them (false when either cannot be read: loading says why). */
function unchanged(model: LoadedModel): boolean {
  try {
    return fingerprintOf(model.path) === model.fingerprint && model.cardPath !== null && JSON.stringify(readCard(model.cardPath)) === JSON.stringify(model.card);
  } catch {
    return false;
  }
}
