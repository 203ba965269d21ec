import type { RouteConfig } from '../config/config.js';
import type { InferenceEngine } from '../inference/engine.js';
import type { CardScaler } from '../inference/scaler.js';
import type { Logger } from '../log.js';
import { TopicPattern, compileTemplate } from '../mqtt/topic-pattern.js';
import type { ScoreBook } from '../daemon/score-book.js';
import type { CheckpointedStream, DeadLetterRow, EventRow, StreamStateRow } from '../store/store.js';
import { DeadLetterGate, keptPayload, keptText } from './dead-letter-gate.js';
import { DecodeError, createDecoder, type DeadLetterReason, type Decoder, type Sample } from './decoder.js';
import { StepAssembler, type AssembledEvent, type AssembledStep } from './step-assembler.js';
import { Slab, type SlotIndex } from '../slots.js';
import { ErrorCodes, TidecastError } from '../errors.js';

/** A model as a route uses it. */
export interface RouteModel {
  readonly name: string;
  readonly engine: InferenceEngine;
  readonly scaler: CardScaler;
  /** The model's open forecasts (checkpointed with its state). */
  readonly scores: ScoreBook;
  /** Feature names in the model's input order (from its card). */
  readonly features: readonly string[];
  readonly stepSeconds: number;
}

/** The message (or clock tick) that released a step: one object for every step it released. */
export interface StepOrigin {
  readonly route: string;
  /** The topic of the message that completed the step. */
  readonly topic: string;
  readonly params: Readonly<Record<string, string>>;
  readonly receivedAt: number;
  /** Input-log position of the message (or tick) that released the step. */
  readonly seq: number;
}

/** What every step of a route group shares. */
export interface StepGroup {
  /** The route group's features, in the order the store keeps a step's values. */
  readonly features: readonly string[];
  /** The group's slot index: the engines and score books that share it take a step's slot without a lookup. */
  readonly slots: SlotIndex;
}

/**
 * What travels with a step through the engine to the result sink: three
 * references, the step's own data being the assembler's event (a context
 * waits in the engine's queue, long enough for the young-generation GC to
 * copy it).
 */
export interface StepContext {
  readonly origin: StepOrigin;
  readonly group: StepGroup;
  /** The step: its stream and slot, the start of its bucket (the forecasts' issue time, ms), every feature's value in physical units (filled ones included), and the features forward-filled from an earlier step. */
  readonly step: AssembledStep;
}

/**
 * A stream held in memory is one its group's assembler knows; its record in
 * the group's `residency` slab (by assembler slot) holds when it last had
 * data, whether it changed since the last checkpoint (1/0), and the log
 * position its restored state reflects (a replay skips the inputs up to it).
 */
const LAST_ACTIVE = 0;
const DIRTY = 1;
const FLOOR = 2;
const RESIDENCY = 3;

/**
 * Routes that run the same models share one group: one assembler, so the
 * features of a stream may arrive on several topics and join into one step.
 */
interface RouteGroup {
  /** The models' names joined with '+': the group's name in checkpoints. */
  readonly key: string;
  readonly models: readonly RouteModel[];
  /** What its step contexts share: every feature of its models in one order, and the assembler's slot index. */
  readonly shared: StepGroup;
  readonly assembler: StepAssembler;
  readonly residency: Slab<Float64Array>;
}

export interface CompiledRoute {
  readonly name: string;
  readonly pattern: TopicPattern;
  readonly stream: string;
  /** `stream` compiled: the stream id from the topic's named wildcards (and `topic`). */
  readonly streamId: (values: Readonly<Record<string, string>>, topic: string) => string;
  readonly decoder: Decoder;
  readonly group: RouteGroup;
}

/** Submit option of a step that follows a gap. */
const RESET = { resetBefore: true } as const;

/** Payload kept for a too-large message: enough to see what it was. */
/** Longest stream id taken (ids become topic levels and primary keys). */
const MAX_STREAM_ID = 256;
// C0 and C1 control characters, DEL, and MQTT's wildcards: no place in a stream id that names topics.
// eslint-disable-next-line no-control-regex
const BAD_STREAM_CHARS = /[\u0000-\u001f\u007f-\u009f+#]/;

/** Build the routes' runtime form; routes with the same models share an assembler. */
export function compileRoutes(
  configs: readonly RouteConfig[],
  modelsOf: (route: RouteConfig) => readonly RouteModel[],
  limits: { maxSamplesPerStep?: number } = {},
): CompiledRoute[] {
  const groups = new Map<string, RouteGroup>();
  const compiled = configs.map((cfg, i) => {
    const models = modelsOf(cfg);
    const features = [...new Set(models.flatMap((m) => m.features))];
    const key = [...cfg.models].sort().join('+');
    let group = groups.get(key);
    if (!group) {
      const steps = new Set(models.map((m) => m.stepSeconds));
      if (steps.size !== 1) throw new TidecastError(ErrorCodes.CONFIG, `routes[${i}]: models ${cfg.models.join(', ')} have different step intervals (${[...steps].join(', ')} s)`);
      const r = cfg.resample;
      const assembler = new StepAssembler({
        features,
        stepMs: [...steps][0]! * 1000,
        aggregate: (f) => r.aggregate[f] ?? r.aggregate.default ?? 'mean',
        latenessMs: r.latenessMs,
        emit: r.emit,
        wallClock: r.wallClock,
        maxFillSteps: r.maxFillSteps,
        maxGapSteps: r.maxGapSteps,
        maxSamplesPerStep: limits.maxSamplesPerStep,
      });
      group = { key, models, shared: { features, slots: assembler.slots }, residency: new Slab(RESIDENCY, (n) => new Float64Array(n)), assembler };
      groups.set(key, group);
    }
    return { name: cfg.name ?? `route${i}`, pattern: new TopicPattern(cfg.topic), stream: cfg.stream, streamId: compileTemplate(cfg.stream), decoder: createDecoder(cfg.decoder, features), group };
  });
  shareSlots([...groups.values()]);
  return compiled;
}

/**
 * A model that only one route group runs keys its state and open forecasts
 * by the group assembler's slots: one map entry per stream for all three
 * tables. A model of several groups keeps its own (a stream name then means
 * one stream across the groups, as it always did).
 */
function shareSlots(groups: readonly RouteGroup[]): void {
  const groupsOf = new Map<RouteModel, RouteGroup[]>();
  for (const g of groups) for (const m of g.models) groupsOf.set(m, [...(groupsOf.get(m) ?? []), g]);
  for (const [m, gs] of groupsOf) {
    // Routes compiled for admission alone (tests) have no engine or book.
    if (gs.length !== 1 || !m.engine || !m.scores) continue;
    m.engine.shareSlots(gs[0]!.assembler.slots);
    m.scores.shareSlots(gs[0]!.assembler.slots);
  }
}

/** Where ingest keeps what it produces besides steps. */
export interface IngestStore {
  /** Store a dead letter (rows from the data path carry their seq, and are written once however often it is replayed); retried while the store fails. */
  addDeadLetter(row: DeadLetterRow): void;
  /** Store an event (the same way). */
  addEvent(row: EventRow): void;
  /** A stream's spilled or checkpointed state. */
  loadStream(group: string, stream: string): StreamStateRow | undefined;
}

export interface IngestOptions {
  routes: readonly CompiledRoute[];
  maxPayloadBytes: number;
  /** Most streams held in memory, over all route groups; one beyond (new, or spilled and returning) is refused. Default: unbounded. */
  maxStreams?: number;
  /** Samples more than this ahead of their arrival are refused as bad_timestamp (default 1 h). */
  maxFutureMs?: number;
  store: IngestStore;
  /** Per-minute caps on stored dead letters (default: store every one). */
  deadLetters?: { perMinute: number; perSourcePerMinute: number; warnPerMinute?: number; now?: () => number };
  /** Counters for metrics (`stored`: false when a dead letter was over the caps). */
  onAccepted?(route: string): void;
  onRejected?(reason: DeadLetterReason, stored: boolean): void;
  onGap?(stream: string, models: readonly string[]): void;
  /** Streams spilled and evicted (at a checkpoint) or restored (on their return), for metrics. */
  onResidency?(action: 'evicted' | 'restored', streams: number): void;
  /** A restored state did not fit its model (the file changed): that stream starts over. */
  onStateDiscarded?(stream: string, model: string): void;
  log: Logger;
}

/** A message that passed every check that does not depend on stream state; it may be logged and applied. */
export interface Admitted {
  readonly ok: true;
  readonly route: CompiledRoute;
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

const STORE_AND_LOG: Verdict = { store: true, log: true };

/** What becomes of a refusal: its dead letter stored or not, the refusal logged or not (the per-minute caps). */
export interface Verdict {
  readonly store: boolean;
  readonly log: boolean;
}

/** A stream a checkpoint must write: changed since the last one, or idle (spilled, then evicted). */
export interface CheckpointTarget {
  readonly group: RouteGroup;
  readonly stream: string;
  readonly idle: boolean;
}

/**
 * Message → samples → assembled steps → one engine step per model, in two
 * halves around the input log:
 *
 * - `admit` does every check that needs no stream state (size, route, stream
 *   id, decoding, clock skew, the stream limit). A refusal is returned as a
 *   dead letter for the caller to store before it acknowledges the message.
 * - `apply` feeds an admitted and logged message to its stream's assembler and
 *   the engines. It is deterministic given the state and the log, which is what
 *   lets recovery replay the log after a checkpoint and land on the same state.
 *
 * It also owns stream residency: which streams are in memory, which changed
 * since the last checkpoint, spilling idle ones and restoring them when they
 * return. Nothing a message contains can throw past `admit` or `apply`.
 */
export class Ingest {
  readonly #opts: IngestOptions;
  readonly #log: Logger;
  readonly #groups: readonly RouteGroup[];
  #residents = 0;
  readonly #gate: DeadLetterGate | null;
  /** Accepted messages per route. */
  readonly accepted = new Map<string, number>();
  /** Dead letters per reason. */
  readonly rejected = new Map<DeadLetterReason, number>();
  /** Steps submitted, skipped (a feature could not be filled) and gaps that reset a stream. */
  readonly steps = { submitted: 0, skipped: 0, gapResets: 0 };
  /** Replayed inputs skipped: the stream's restored state already reflected them. */
  replaySkipped = 0;
  /** Streams spilled after idling, and restored on their return. */
  readonly residency = { evicted: 0, restored: 0 };

  constructor(options: IngestOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'ingest' });
    this.#groups = [...new Set(options.routes.map((r) => r.group))];
    const log = this.#log;
    this.#gate = options.deadLetters
      ? new DeadLetterGate({
          ...options.deadLetters,
          onSummary: (s) =>
            log.warn(
              { since: new Date(s.since).toISOString(), refused: s.refused, unstored: s.unstored, unlogged: s.unlogged, byReason: s.byReason },
              `refused messages in the last minute: ${s.refused}; ${s.unstored} dead letters not stored (over limits.deadLettersPerMinute or deadLettersPerSourcePerMinute) and ${s.unlogged} refusals not logged one by one; tidecast_dead_letters_total counts them all`,
            ),
        })
      : null;
  }

  /** MQTT filters to subscribe. */
  get filters(): string[] {
    return [...new Set(this.#opts.routes.map((r) => r.pattern.filter))];
  }

  /** Samples ignored because they repeated one already taken. */
  get duplicates(): number {
    return this.#groups.reduce((n, g) => n + g.assembler.duplicates, 0);
  }

  /** Streams held in memory, over all route groups. */
  get residentStreams(): number {
    return this.#residents;
  }

  /**
   * The stateless half: route, stream id, decode and limits. `replay` skips the
   * stream limit (the message was admitted when it was logged).
   */
  admit(topic: string, payload: Buffer, receivedAt: number, replay = false): Admitted | Refused {
    let stream: string | undefined;
    try {
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
      if (!replay && this.#residents >= max && route.group.assembler.slotOf(id) === undefined) {
        throw new DecodeError('stream_limit', `${this.#residents} streams are active, the limit (limits.maxStreams) is ${max}`);
      }
      return { ok: true, route, stream: id, params, sample, topic, payload, receivedAt };
    } catch (err) {
      const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
      return { ok: false, reason, row: this.#deadLetter(stream, topic, payload, receivedAt, reason, (err as Error).message) };
    }
  }

  /**
   * Whether a refusal's dead letter is to be stored and the refusal logged
   * (per-minute caps, so that a flood fills neither the disk nor the
   * journal); asked once before the caller stores it.
   */
  judge(r: Refused): Verdict {
    return this.#judge(r.row.stream ?? r.row.topic, r.reason);
  }

  /** Count and log (as judged) a refusal whose dead letter the caller has stored, or not (over the caps). */
  refused(r: Refused, verdict: Verdict): void {
    this.#count(r.reason, verdict.store);
    if (verdict.log) this.#log.warn({ topic: r.row.topic.slice(0, 200), stream: r.row.stream, reason: r.reason, detail: r.row.detail, bytes: r.row.payloadBytes, stored: verdict.store }, 'message dead-lettered');
  }

  /** The stateful half: feed an admitted message, logged at `seq`, to its stream. */
  apply(a: Admitted, seq: number): void {
    const group = a.route.group;
    const origin: StepOrigin = { route: a.route.name, topic: a.topic, params: a.params, receivedAt: a.receivedAt, seq };
    const events: AssembledEvent[] = [];
    try {
      // A replayed input that the stream's restored state already reflects (an incremental checkpoint wrote it later than the record).
      const slot = this.#touch(group, a.stream, a.receivedAt);
      // The stream's name as the assembler holds it: the engines' and score books' maps then find it by identity.
      const stream = group.assembler.nameOf(slot)!;
      if (seq <= group.residency.chunk(slot)[group.residency.offset(slot) + FLOOR]!) {
        this.replaySkipped++;
        return;
      }
      if (this.#log.isLevelEnabled('debug')) this.#log.debug({ topic: a.topic, stream: a.stream, ts: a.sample.ts, features: Object.keys(a.sample.values) }, 'sample accepted');
      const values = a.sample.values;
      for (const feature in values) {
        const released = group.assembler.addAt(slot, stream, feature, a.sample.ts, values[feature]!);
        for (const e of released) events.push(e);
      }
      this.accepted.set(a.route.name, (this.accepted.get(a.route.name) ?? 0) + 1);
      this.#opts.onAccepted?.(a.route.name);
    } catch (err) {
      // late, too_many_samples: the message is in the log; its dead letter carries the seq so a replay stores it once.
      const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
      const row = { ...this.#deadLetter(a.stream, a.topic, a.payload, a.receivedAt, reason, (err as Error).message), seq };
      const verdict = this.#judge(a.stream, reason);
      this.#count(reason, verdict.store);
      if (verdict.log) this.#log.warn({ topic: a.topic.slice(0, 200), stream: a.stream, reason, detail: row.detail, stored: verdict.store }, 'sample dead-lettered');
      if (verdict.store) this.#write('dead letter', () => this.#opts.store.addDeadLetter(row));
    }
    // Steps an earlier feature of the message released still go on.
    try {
      this.#dispatch(group, events, origin);
    } catch (err) {
      this.#log.error({ err, stream: a.stream }, 'could not submit a step');
    }
  }

  /** Replay one logged input at recovery (`note`: a refused message's dead letter). */
  replay(seq: number, kind: 0 | 1 | 2, topic: string, payload: Buffer, receivedAt: number, note?: string | null): void {
    if (kind === 1) {
      this.sweep(receivedAt, seq);
      return;
    }
    if (kind === 2) {
      // Refused before its acknowledgement: its dead letter again (stored once, by seq).
      const d = JSON.parse(note ?? '{}') as { reason?: string; detail?: string; stream?: string | null; payloadBytes?: number };
      const row: DeadLetterRow = { stream: d.stream ?? undefined, receivedAt, topic, reason: d.reason ?? 'internal', detail: d.detail ?? '', payload, payloadBytes: d.payloadBytes ?? payload.length, seq };
      this.#write('dead letter', () => this.#opts.store.addDeadLetter(row));
      return;
    }
    const a = this.admit(topic, payload, receivedAt, true);
    if (a.ok) {
      this.apply(a, seq);
      return;
    }
    // Logged when it passed, refused now: the configuration changed across the restart.
    const verdict = this.judge(a);
    this.refused(a, verdict);
    const row = { ...a.row, seq };
    if (verdict.store) this.#write('dead letter', () => this.#opts.store.addDeadLetter(row));
  }

  /** Whether a wall-clock sweep now would close some step (the caller logs a tick first). */
  sweepDue(now: number): boolean {
    return this.#groups.some((g) => g.assembler.due(now));
  }

  /** Close buckets the clock has passed (routes with `wallClock`); `seq` is the tick's log position. */
  sweep(now: number, seq: number): void {
    for (const g of this.#groups) {
      try {
        // A stream whose restored state already reflects this tick is left alone (a replay).
        const events = g.assembler.sweep(now, (stream) => this.#field(g, stream, FLOOR) >= seq);
        for (const e of events) this.#markDirty(g, e.stream);
        this.#dispatch(g, events, { route: '(clock)', topic: '', params: {}, receivedAt: now, seq });
      } catch (err) {
        this.#log.error({ err }, 'clock sweep failed');
      }
    }
  }

  /**
   * Route groups whose streams must be in memory from the start: a wall-clock
   * tick closes steps of every stream it knows, so a replay must know the same
   * streams. Other streams come back from the store on their next message.
   */
  get eagerGroups(): string[] {
    return this.#groups.filter((g) => g.assembler.wallClock).map((g) => g.key);
  }

  /** Put a checkpointed stream back in memory (at start, for streams resident at the checkpoint). */
  restore(row: StreamStateRow): boolean {
    const group = this.#groupOf(row.group);
    if (!group || group.assembler.slotOf(row.stream) !== undefined) return false;
    this.#import(group, row);
    const slot = group.assembler.join(row.stream);
    group.residency.write(slot, [row.lastActive, 0, row.seq ?? 0]);
    this.#residents++;
    return true;
  }

  /**
   * The streams a checkpoint must write: every one changed since the last
   * checkpoint, and those idle since `idleBefore` (spilled, then evicted by
   * `checkpointed`). The checkpoint then captures them one by one with
   * `capture`, as each is quiet, while messages flow.
   */
  checkpointTargets(idleBefore: number): CheckpointTarget[] {
    const out: CheckpointTarget[] = [];
    for (const g of this.#groups) {
      const m = g.residency;
      for (const [stream, slot] of g.assembler.streams()) {
        const c = m.chunk(slot);
        const o = m.offset(slot);
        const idle = c[o + LAST_ACTIVE]! < idleBefore;
        if (c[o + DIRTY] === 1 || idle) out.push({ group: g, stream, idle });
      }
    }
    return out;
  }

  /**
   * A target's state as it stands after the input at `seq` (the last one
   * applied), or null while one of its steps waits or runs in an engine (try
   * again later). Captured, the stream counts as clean (a change marks it
   * dirty again); undefined when it left memory meanwhile.
   */
  capture(t: CheckpointTarget, seq: number): StreamStateRow | null | undefined {
    const g = t.group;
    const slot = g.assembler.slotOf(t.stream);
    if (slot === undefined) return undefined;
    for (const m of g.models) if (!m.engine.quiet(t.stream)) return null;
    const assembler = g.assembler.exportStream(t.stream);
    if (assembler === undefined) return undefined;
    const models = [];
    for (const m of g.models) {
      const st = m.engine.exportStream(t.stream);
      if (st) models.push({ model: m.name, fingerprint: m.engine.model.fingerprint, state: Buffer.from(st.state.buffer, st.state.byteOffset, st.state.byteLength), filled: st.filled, pending: m.scores.exportStream(t.stream) ?? null });
    }
    // Idle, and nothing arrived since the list was made: spilled.
    const c = g.residency.chunk(slot);
    const o = g.residency.offset(slot);
    const idle = t.idle && c[o + DIRTY] === 0;
    c[o + DIRTY] = 0;
    return { group: g.key, stream: t.stream, resident: !idle, lastActive: c[o + LAST_ACTIVE]!, assembler, models, seq };
  }

  /** A checkpoint with these rows failed: their streams are dirty again, for the next one. */
  unstored(rows: readonly CheckpointedStream[]): void {
    for (const row of rows) {
      const group = this.#groupOf(row.group);
      if (group) this.#markDirty(group, row.stream);
    }
  }

  /**
   * The checkpoint with these rows is committed: the spilled streams leave
   * memory, unless a message (or the clock) changed them meanwhile (they stay,
   * dirty, and the next checkpoint writes them resident again).
   */
  checkpointed(rows: readonly CheckpointedStream[]): void {
    let evicted = 0;
    for (const row of rows) {
      if (row.resident) continue;
      const group = this.#groupOf(row.group);
      if (!group || this.#field(group, row.stream, DIRTY) !== 0) continue;
      evicted++;
      this.#residents--;
      // The engines and score books first: those that share the assembler's slot index find the stream by it.
      for (const m of group.models) {
        m.engine.releaseStream(row.stream);
        m.scores.release(row.stream);
      }
      group.assembler.release(row.stream);
      this.residency.evicted++;
    }
    if (evicted > 0) this.#opts.onResidency?.('evicted', evicted);
  }

  /** The route group a checkpoint row names. */
  #groupOf(key: string): RouteGroup | undefined {
    return this.#groups.find((g) => g.key === key);
  }

  /** Bring a stream into memory (restoring its spilled state) and mark it changed; returns its slot (the assembler's). */
  #touch(group: RouteGroup, stream: string, at: number): number {
    const m = group.residency;
    let slot = group.assembler.slotOf(stream);
    if (slot === undefined) {
      const row = this.#opts.store.loadStream(group.key, stream);
      if (row) {
        this.#import(group, row);
        this.residency.restored++;
        this.#opts.onResidency?.('restored', 1);
      }
      slot = group.assembler.join(stream);
      m.write(slot, [at, 1, row?.seq ?? 0]);
      this.#residents++;
    }
    const c = m.chunk(slot);
    const o = m.offset(slot);
    if (at > c[o + LAST_ACTIVE]!) c[o + LAST_ACTIVE] = at;
    c[o + DIRTY] = 1;
    return slot;
  }

  /** A resident stream's residency field (NaN when it is not resident). */
  #field(group: RouteGroup, stream: string, field: number): number {
    const slot = group.assembler.slotOf(stream);
    return slot === undefined ? NaN : group.residency.chunk(slot)[group.residency.offset(slot) + field]!;
  }

  /** Mark a resident stream changed since the last checkpoint. */
  #markDirty(group: RouteGroup, stream: string): void {
    const slot = group.assembler.slotOf(stream);
    if (slot !== undefined) group.residency.chunk(slot)[group.residency.offset(slot) + DIRTY] = 1;
  }

  #import(group: RouteGroup, row: StreamStateRow): void {
    try {
      group.assembler.importStream(row.stream, row.assembler);
    } catch (err) {
      // The route's features changed across the restart: the stream's steps start over (its model state still loads).
      this.#log.warn({ stream: row.stream, err: (err as Error).message }, 'saved step assembly does not fit the route: the stream starts a new step');
    }
    // Known to the assembler either way: the engines and score books that share its slot index hold the stream by it.
    group.assembler.join(row.stream);
    for (const m of group.models) {
      const saved = row.models.find((x) => x.model === m.name);
      if (!saved) continue;
      m.scores.importStream(row.stream, saved.pending);
      const state = new Float32Array(saved.state.buffer.slice(saved.state.byteOffset, saved.state.byteOffset + saved.state.byteLength));
      if (saved.fingerprint === m.engine.model.fingerprint && m.engine.importStream(row.stream, state, saved.filled)) continue;
      this.#log.warn({ stream: row.stream, model: m.name }, 'saved state belongs to another version of the model file: the stream starts from zero state');
      this.#opts.onStateDiscarded?.(row.stream, m.name);
    }
  }

  #dispatch(group: RouteGroup, events: readonly AssembledEvent[], origin: StepOrigin): void {
    let resetNext: Set<string> | null = null;
    for (const e of events) {
      if (e.kind === 'gap') {
        this.steps.gapResets++;
        this.#opts.onGap?.(e.stream, group.models.map((m) => m.name));
        (resetNext ??= new Set()).add(e.stream);
        this.#log.warn({ stream: e.stream, missedSteps: e.steps, at: new Date(e.ts).toISOString() }, 'gap longer than maxGapSteps: stream state reset');
        const row: EventRow = { at: e.ts, stream: e.stream, model: null, kind: 'gap_reset', detail: `${e.steps} steps without data`, seq: origin.seq };
        this.#write('event', () => this.#opts.store.addEvent(row));
      } else if (e.kind === 'skip') {
        this.steps.skipped++;
        if (this.#log.isLevelEnabled('debug')) this.#log.debug({ stream: e.stream, at: new Date(e.ts).toISOString(), missing: e.missing }, 'step skipped: features missing beyond maxFillSteps');
        const row: EventRow = { at: e.ts, stream: e.stream, model: null, kind: 'step_skipped', detail: `missing ${e.missing.join(', ')}`, seq: origin.seq };
        this.#write('event', () => this.#opts.store.addEvent(row));
      } else {
        const slots = group.shared.slots;
        const context: StepContext = { origin, group: group.shared, step: e };
        const resetBefore = resetNext?.delete(e.stream) ?? false;
        for (const m of group.models) m.engine.submitRead(e.stream, e.values, m.scaler.readerFor(m.features), context, resetBefore ? RESET : undefined, e.slot, slots);
        this.steps.submitted++;
      }
    }
  }

  #write(what: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.#log.error({ err, write: what }, 'could not hand a write to the store');
    }
  }

  #count(reason: DeadLetterReason, stored: boolean): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    this.#opts.onRejected?.(reason, stored);
  }

  #judge(source: string, reason: DeadLetterReason): Verdict {
    return this.#gate?.refuse(source, reason) ?? STORE_AND_LOG;
  }

  /** A refused message's dead letter: the first KiB of its payload, topic and detail (with their full sizes). */
  #deadLetter(stream: string | undefined, topic: string, payload: Buffer, receivedAt: number, reason: DeadLetterReason, detail: string): DeadLetterRow {
    return { stream, receivedAt, topic: keptText(topic), reason, detail: keptText(detail), payload: keptPayload(payload), payloadBytes: payload.length };
  }
}
