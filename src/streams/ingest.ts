import type { RouteConfig } from '../config/config.js';
import type { InferenceEngine } from '../inference/engine.js';
import type { CardScaler } from '../inference/scaler.js';
import type { Logger } from '../log.js';
import { TopicPattern, fillTemplate } from '../mqtt/topic-pattern.js';
import type { DeadLetterRow, EventRow } from '../store/store.js';
import { DecodeError, createDecoder, type DeadLetterReason, type Decoder } from './decoder.js';
import { StepAssembler, type AssembledEvent } from './step-assembler.js';

/** A model as a route uses it. */
export interface RouteModel {
  readonly name: string;
  readonly engine: InferenceEngine;
  readonly scaler: CardScaler;
  /** Feature names in the model's input order (from its card). */
  readonly features: readonly string[];
  readonly stepSeconds: number;
}

/** What travels with a step through the engine to the result sink. */
export interface StepContext {
  readonly route: string;
  /** The topic of the message that completed the step. */
  readonly topic: string;
  readonly params: Readonly<Record<string, string>>;
  /** Start of the step's bucket: the forecasts' issue time, ms. */
  readonly ts: number;
  /** Every feature's value for the step, physical units (filled ones included). */
  readonly values: Readonly<Record<string, number>>;
  /** Features forward-filled from an earlier step. */
  readonly filled: readonly string[];
  readonly receivedAt: number;
}

/**
 * Routes that run the same models share one group: one assembler, so the
 * features of a stream may arrive on several topics and join into one step.
 */
interface RouteGroup {
  readonly models: readonly RouteModel[];
  readonly assembler: StepAssembler;
}

export interface CompiledRoute {
  readonly name: string;
  readonly pattern: TopicPattern;
  readonly stream: string;
  readonly decoder: Decoder;
  readonly group: RouteGroup;
}

/** Payload kept for a too-large message: enough to see what it was. */
const TOO_LARGE_KEEP = 1024;

/** Build the routes' runtime form; routes with the same models share an assembler. */
export function compileRoutes(configs: readonly RouteConfig[], modelsOf: (route: RouteConfig) => readonly RouteModel[]): CompiledRoute[] {
  const groups = new Map<string, RouteGroup>();
  return configs.map((cfg, i) => {
    const models = modelsOf(cfg);
    const features = [...new Set(models.flatMap((m) => m.features))];
    const key = [...cfg.models].sort().join('+');
    let group = groups.get(key);
    if (!group) {
      const steps = new Set(models.map((m) => m.stepSeconds));
      if (steps.size !== 1) throw new Error(`routes[${i}]: models ${cfg.models.join(', ')} have different step intervals (${[...steps].join(', ')} s)`);
      const r = cfg.resample;
      group = {
        models,
        assembler: new StepAssembler({
          features,
          stepMs: [...steps][0]! * 1000,
          aggregate: (f) => r.aggregate[f] ?? r.aggregate.default ?? 'mean',
          latenessMs: r.latenessMs,
          emit: r.emit,
          wallClock: r.wallClock,
          maxFillSteps: r.maxFillSteps,
          maxGapSteps: r.maxGapSteps,
        }),
      };
      groups.set(key, group);
    }
    return { name: cfg.name ?? `route${i}`, pattern: new TopicPattern(cfg.topic), stream: cfg.stream, decoder: createDecoder(cfg.decoder, features), group };
  });
}

export interface IngestOptions {
  routes: readonly CompiledRoute[];
  maxPayloadBytes: number;
  deadLetter(row: DeadLetterRow): void;
  event(row: EventRow): void;
  /** Counters for metrics. */
  onAccepted?(route: string): void;
  onRejected?(reason: DeadLetterReason): void;
  onGap?(stream: string, models: readonly string[]): void;
  log: Logger;
}

/**
 * Message → samples → assembled steps → one engine step per model. Every
 * failure is caught here, at the stream boundary: logged with its reason,
 * counted, dead-lettered with the payload. Nothing a message contains can
 * throw past `handle`.
 */
export class Ingest {
  readonly #opts: IngestOptions;
  readonly #log: Logger;
  readonly #groups: readonly RouteGroup[];
  /** Accepted messages per route. */
  readonly accepted = new Map<string, number>();
  /** Dead letters per reason. */
  readonly rejected = new Map<DeadLetterReason, number>();
  /** Steps submitted, skipped (a feature could not be filled) and gaps that reset a stream. */
  readonly steps = { submitted: 0, skipped: 0, gapResets: 0 };

  constructor(options: IngestOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'ingest' });
    this.#groups = [...new Set(options.routes.map((r) => r.group))];
  }

  /** MQTT filters to subscribe. */
  get filters(): string[] {
    return [...new Set(this.#opts.routes.map((r) => r.pattern.filter))];
  }

  /** Samples ignored because they repeated one already taken. */
  get duplicates(): number {
    return this.#groups.reduce((n, g) => n + g.assembler.duplicates, 0);
  }

  handle(topic: string, payload: Buffer, receivedAt: number): void {
    this.#stream = undefined;
    try {
      this.#handle(topic, payload, receivedAt);
    } catch (err) {
      const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
      this.#reject(topic, payload, receivedAt, reason, (err as Error).message);
    }
  }

  /** The stream of the message being handled, once known (for its dead letter). */
  #stream: string | undefined;

  /** Close buckets the clock has passed (routes with `wallClock`); the daemon calls this periodically. */
  sweep(now: number): void {
    for (const g of this.#groups) {
      try {
        this.#dispatch(g, g.assembler.sweep(now), { route: '(clock)', topic: '', params: {}, receivedAt: now });
      } catch (err) {
        this.#log.error({ err }, 'clock sweep failed');
      }
    }
  }

  #handle(topic: string, payload: Buffer, receivedAt: number): void {
    if (payload.length > this.#opts.maxPayloadBytes) {
      throw new DecodeError('too_large', `payload of ${payload.length} bytes exceeds mqtt.maxPayloadBytes ${this.#opts.maxPayloadBytes}`);
    }
    let route: CompiledRoute | undefined;
    let params: Record<string, string> | null = null;
    for (const r of this.#opts.routes) {
      params = r.pattern.match(topic);
      if (params) {
        route = r;
        break;
      }
    }
    if (!route || !params) throw new DecodeError('no_route', `no route matches topic "${topic}"`);
    const stream = fillTemplate(route.stream, { ...params, topic });
    if (stream === '' || /\{[^}]*\}/.test(stream)) throw new DecodeError('bad_stream_id', `stream id template "${route.stream}" gave "${stream}"`);
    this.#stream = stream;
    const sample = route.decoder(payload, receivedAt, params);
    this.#log.debug({ topic, stream, ts: sample.ts, features: Object.keys(sample.values) }, 'sample accepted');
    const events: AssembledEvent[] = [];
    for (const [feature, value] of Object.entries(sample.values)) events.push(...route.group.assembler.add(stream, feature, sample.ts, value));
    this.accepted.set(route.name, (this.accepted.get(route.name) ?? 0) + 1);
    this.#opts.onAccepted?.(route.name);
    this.#dispatch(route.group, events, { route: route.name, topic, params, receivedAt });
  }

  #dispatch(group: RouteGroup, events: readonly AssembledEvent[], origin: Pick<StepContext, 'route' | 'topic' | 'params' | 'receivedAt'>): void {
    const resetNext = new Set<string>();
    for (const e of events) {
      if (e.kind === 'gap') {
        this.steps.gapResets++;
        this.#opts.onGap?.(e.stream, group.models.map((m) => m.name));
        resetNext.add(e.stream);
        this.#log.warn({ stream: e.stream, missedSteps: e.steps, at: new Date(e.ts).toISOString() }, 'gap longer than maxGapSteps: stream state reset');
        this.#opts.event({ at: e.ts, stream: e.stream, model: null, kind: 'gap_reset', detail: `${e.steps} steps without data` });
      } else if (e.kind === 'skip') {
        this.steps.skipped++;
        this.#log.debug({ stream: e.stream, at: new Date(e.ts).toISOString(), missing: e.missing }, 'step skipped: features missing beyond maxFillSteps');
        this.#opts.event({ at: e.ts, stream: e.stream, model: null, kind: 'step_skipped', detail: `missing ${e.missing.join(', ')}` });
      } else {
        const context: StepContext = { ...origin, ts: e.ts, values: e.values, filled: e.filled };
        const resetBefore = resetNext.has(e.stream);
        for (const m of group.models) {
          const raw = m.features.map((f) => e.values[f]!);
          m.engine.submit(e.stream, m.scaler.scaleFeatures(raw), context, { resetBefore });
        }
        resetNext.delete(e.stream);
        this.steps.submitted++;
      }
    }
  }

  #reject(topic: string, payload: Buffer, receivedAt: number, reason: DeadLetterReason, detail: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    this.#opts.onRejected?.(reason);
    this.#log.warn({ topic, stream: this.#stream, reason, detail, bytes: payload.length }, 'message dead-lettered');
    try {
      this.#opts.deadLetter({
        stream: this.#stream,
        receivedAt,
        topic,
        reason,
        detail,
        payload: reason === 'too_large' ? payload.subarray(0, TOO_LARGE_KEEP) : payload,
        payloadBytes: payload.length,
      });
    } catch (err) {
      this.#log.error({ err, topic, reason }, 'could not store dead letter');
    }
  }
}
