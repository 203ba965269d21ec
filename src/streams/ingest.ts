import type { RouteConfig } from '../config/config.js';
import type { InferenceEngine } from '../inference/engine.js';
import type { CardScaler } from '../inference/scaler.js';
import type { Logger } from '../log.js';
import { TopicPattern, fillTemplate } from '../mqtt/topic-pattern.js';
import type { DeadLetterRow } from '../store/store.js';
import { DecodeError, createDecoder, type DeadLetterReason, type Decoder, type Sample } from './decoder.js';

/** A model as a route uses it. */
export interface RouteModel {
  readonly name: string;
  readonly engine: InferenceEngine;
  readonly scaler: CardScaler;
  /** Feature names in the model's input order (from its card). */
  readonly features: readonly string[];
}

/** What travels with a step through the engine to the result sink. */
export interface StepContext {
  readonly route: string;
  readonly topic: string;
  readonly params: Readonly<Record<string, string>>;
  readonly sample: Sample;
  readonly receivedAt: number;
}

interface CompiledRoute {
  readonly name: string;
  readonly pattern: TopicPattern;
  readonly stream: string;
  readonly decoder: Decoder;
  readonly models: readonly RouteModel[];
}

/** Payload kept for a too-large message: enough to see what it was. */
const TOO_LARGE_KEEP = 1024;

/** Build a route's runtime form; the decoder reads the union of its models' features. */
export function compileRoute(cfg: RouteConfig, index: number, models: readonly RouteModel[]): CompiledRoute {
  const features = [...new Set(models.flatMap((m) => m.features))];
  return {
    name: cfg.name ?? `route${index}`,
    pattern: new TopicPattern(cfg.topic),
    stream: cfg.stream,
    decoder: createDecoder(cfg.decoder, features),
    models,
  };
}

export interface IngestOptions {
  routes: readonly CompiledRoute[];
  maxPayloadBytes: number;
  deadLetter(row: DeadLetterRow): void;
  /** Whether a step of this stream at this event time was already consumed (the store's steps table). */
  hasStep(stream: string, ts: number): boolean;
  log: Logger;
}

/**
 * Message → sample → one engine step per model. Every failure is caught here,
 * at the stream boundary: logged with its reason, counted, dead-lettered with
 * the payload. Nothing a message contains can throw past `handle`.
 */
export class Ingest {
  readonly #opts: IngestOptions;
  readonly #log: Logger;
  /** Accepted messages per route. */
  readonly accepted = new Map<string, number>();
  /** Dead letters per reason. */
  readonly rejected = new Map<DeadLetterReason, number>();
  /** Redelivered or repeated samples that were ignored. */
  duplicates = 0;
  /** Event time of the last step submitted per stream. */
  readonly #lastTs = new Map<string, number>();

  constructor(options: IngestOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'ingest' });
  }

  /** MQTT filters to subscribe. */
  get filters(): string[] {
    return [...new Set(this.#opts.routes.map((r) => r.pattern.filter))];
  }

  handle(topic: string, payload: Buffer, receivedAt: number): void {
    try {
      this.#handle(topic, payload, receivedAt);
    } catch (err) {
      const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
      this.#reject(topic, payload, receivedAt, reason, (err as Error).message);
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
    const sample = route.decoder(payload, receivedAt);
    // A stream's steps must advance in time: a repeat of a consumed step (a QoS 1
    // redelivery, a publisher retry) would advance the recurrent state twice.
    const last = this.#lastTs.get(stream);
    if (last !== undefined && sample.ts <= last) {
      if (sample.ts === last || this.#opts.hasStep(stream, sample.ts)) {
        this.duplicates++;
        this.#log.debug({ stream, ts: sample.ts, topic }, 'duplicate sample ignored');
        return;
      }
      throw new DecodeError('out_of_order', `sample at ${new Date(sample.ts).toISOString()} is older than the stream's last step ${new Date(last).toISOString()}`);
    }
    this.#lastTs.set(stream, sample.ts);
    const context: StepContext = { route: route.name, topic, params, sample, receivedAt };
    for (const m of route.models) {
      const raw = m.features.map((f) => sample.values[f]!);
      m.engine.submit(stream, m.scaler.scaleFeatures(raw), context);
    }
    this.accepted.set(route.name, (this.accepted.get(route.name) ?? 0) + 1);
  }

  #reject(topic: string, payload: Buffer, receivedAt: number, reason: DeadLetterReason, detail: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    this.#log.warn({ topic, reason, detail, bytes: payload.length }, 'message dead-lettered');
    try {
      this.#opts.deadLetter({
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
