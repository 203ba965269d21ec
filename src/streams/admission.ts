import type { Sample } from './decoder.js';
import { DecodeError, type DeadLetterReason } from './decoder.js';
import type { Logger } from '../log.js';
import type { DeadLetterRow } from '../store/store.js';
import type { Refusals, Verdict } from './refusals.js';
import type { CompiledRoute, RouteModelSpec } from './routes.js';

/** A message that passed every check that does not depend on stream state; it may be logged and applied. */
export interface Admitted<M extends RouteModelSpec = RouteModelSpec> {
  readonly ok: true;
  readonly route: CompiledRoute<M>;
  readonly stream: string;
  readonly params: Readonly<Record<string, string>>;
  readonly sample: Sample;
  readonly topic: string;
  readonly payload: Buffer;
  readonly receivedAt: number;
}

/** A message refused before it touched any state: its dead letter. */
export interface Refused {
  readonly ok: false;
  readonly reason: DeadLetterReason;
  readonly row: DeadLetterRow;
}

/** How many streams are in memory, and whether one is (the stream limit). */
export interface ResidentCount {
  readonly residentStreams: number;
  isResident(route: CompiledRoute, stream: string): boolean;
}

export interface AdmissionOptions<M extends RouteModelSpec> {
  routes: readonly CompiledRoute<M>[];
  maxPayloadBytes: number;
  /** Samples more than this ahead of their arrival are refused as bad_timestamp (default 1 h). */
  maxFutureMs?: number;
  /** Most streams held in memory, over all route groups; one beyond (new, or spilled and returning) is refused. Default: unbounded. */
  maxStreams?: number;
  /** The streams in memory (default: none, for admission without state). */
  residents?: ResidentCount;
  refusals: Refusals;
  log: Logger;
}

/** Longest stream id taken (ids become topic levels and primary keys). */
const MAX_STREAM_ID = 256;
// C0 and C1 control characters, DEL, and MQTT's wildcards: no place in a stream id that names topics.
// eslint-disable-next-line no-control-regex
const BAD_STREAM_CHARS = /[\u0000-\u001f\u007f-\u009f+#]/;

/**
 * The stateless half of taking a message: size, route, stream id, decoding,
 * clock skew and the stream limit. A refusal comes back as a dead letter for
 * the caller to store before it acknowledges the message; nothing a message
 * contains throws past `admit`.
 */
export class Admission<M extends RouteModelSpec = RouteModelSpec> {
  readonly #opts: AdmissionOptions<M>;
  readonly #log: Logger;

  constructor(options: AdmissionOptions<M>) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'admission' });
  }

  /** MQTT filters to subscribe. */
  get filters(): string[] {
    return [...new Set(this.#opts.routes.map((r) => r.pattern.filter))];
  }

  /** Route, stream id, decode and limits. `replay` skips the stream limit (the message was admitted when it was logged). */
  admit(topic: string, payload: Buffer, receivedAt: number, replay = false): Admitted<M> | Refused {
    let stream: string | undefined;
    try {
      if (payload.length > this.#opts.maxPayloadBytes) {
        throw new DecodeError('too_large', `payload of ${payload.length} bytes exceeds mqtt.maxPayloadBytes ${this.#opts.maxPayloadBytes}`);
      }
      let route: CompiledRoute<M> | undefined;
      let params: Record<string, string> | null = null;
      for (const r of this.#opts.routes) {
        params = r.pattern.match(topic);
        if (params) {
          route = r;
          break;
        }
      }
      if (!route || !params) throw new DecodeError('no_route', `no route matches topic "${topic.slice(0, 200)}"`);
      const id = route.streamId(params, topic);
      if (id === '' || /\{[^}]*\}/.test(id)) throw new DecodeError('bad_stream_id', `stream id template "${route.stream}" gave "${id.slice(0, 100)}"`);
      if (id.length > MAX_STREAM_ID) throw new DecodeError('bad_stream_id', `stream id of ${id.length} characters exceeds ${MAX_STREAM_ID}`);
      if (BAD_STREAM_CHARS.test(id)) throw new DecodeError('bad_stream_id', `stream id ${JSON.stringify(id.slice(0, 100))} contains a control character or an MQTT wildcard`);
      stream = id;
      const sample = route.decoder(payload, receivedAt, params);
      const maxFuture = this.#opts.maxFutureMs ?? 3_600_000;
      if (sample.ts > receivedAt + maxFuture) {
        throw new DecodeError('bad_timestamp', `event time ${new Date(sample.ts).toISOString()} is more than ${maxFuture / 1000} s ahead of its arrival (limits.maxFutureS)`);
      }
      const max = this.#opts.maxStreams ?? Infinity;
      const residents = this.#opts.residents;
      if (!replay && residents && residents.residentStreams >= max && !residents.isResident(route, id)) {
        throw new DecodeError('stream_limit', `${residents.residentStreams} streams are active, the limit (limits.maxStreams) is ${max}`);
      }
      return { ok: true, route, stream: id, params, sample, topic, payload, receivedAt };
    } catch (err) {
      const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
      return { ok: false, reason, row: this.#opts.refusals.row(stream, topic, payload, receivedAt, reason, (err as Error).message) };
    }
  }

  /**
   * Whether a refusal's dead letter is to be stored and the refusal logged
   * (per-minute caps, so that a flood fills neither the disk nor the
   * journal); asked once before the caller stores it.
   */
  judge(r: Refused): Verdict {
    return this.#opts.refusals.judge(r.row.stream ?? r.row.topic, r.reason);
  }

  /** Count and log (as judged) a refusal whose dead letter the caller has stored, or not (over the caps). */
  refused(r: Refused, verdict: Verdict): void {
    this.#opts.refusals.count(r.reason, verdict.store);
    if (verdict.log) this.#log.warn({ topic: r.row.topic.slice(0, 200), stream: r.row.stream, reason: r.reason, detail: r.row.detail, bytes: r.row.payloadBytes, stored: verdict.store }, 'message dead-lettered');
  }
}
