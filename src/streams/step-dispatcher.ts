import type { Logger } from '../log.js';
import { REDELIVERED_NOTE } from '../store/input-log.js';
import type { DeadLetterRow, EventRow } from '../store/store.js';
import type { Admission, Admitted } from './admission.js';
import { DecodeError, type DeadLetterReason } from './decoder.js';
import type { Refusals } from './refusals.js';
import type { Residency } from './residency.js';
import type { RouteModel } from './route-model.js';
import { groupsOf, type CompiledRoute, type RouteGroup, type StepContext, type StepOrigin } from './routes.js';
import type { AssembledEvent } from './step-assembler.js';

/** A step's event time, for the calendar inputs of a model's card. */
const stepTime = (ctx: StepContext | undefined): number => ctx!.step.ts;

/** Where the message path keeps what it produces besides steps. */
export interface DispatchStore {
  /** Store a dead letter (rows from the data path carry their seq, and are written once however often it is replayed); retried while the store fails. */
  addDeadLetter(row: DeadLetterRow): void;
  /** Store an event (the same way). */
  addEvent(row: EventRow): void;
}

export interface StepDispatcherOptions {
  routes: readonly CompiledRoute<RouteModel>[];
  admission: Admission<RouteModel>;
  residency: Residency;
  refusals: Refusals;
  store: DispatchStore;
  /** Counters for metrics. */
  onAccepted?(route: string): void;
  onGap?(stream: string, models: readonly string[]): void;
  log: Logger;
}

/** Submit option of a step that follows a gap. */
const RESET = { resetBefore: true } as const;

/**
 * The stateful half of taking a message: an admitted, logged message's
 * samples go to its stream's step assembler, and every step they release goes
 * to each of the route's engines (a gap first resets the stream). It is
 * deterministic given the state and the log, which is what lets recovery
 * replay the log after a checkpoint and land on the same state. Nothing a
 * message contains throws past `apply`.
 */
export class StepDispatcher {
  readonly #opts: StepDispatcherOptions;
  readonly #log: Logger;
  readonly #groups: readonly RouteGroup<RouteModel>[];
  /** Accepted messages per route. */
  readonly accepted = new Map<string, number>();
  /** Steps submitted, skipped (a feature could not be filled) and gaps that reset a stream. */
  readonly steps = { submitted: 0, skipped: 0, gapResets: 0 };
  /** Replayed inputs skipped: the stream's restored state already reflected them. */
  replaySkipped = 0;
  /** Redelivered messages for steps already closed: taken before, their PUBACK lost with the connection. */
  redelivered = 0;

  constructor(options: StepDispatcherOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'ingest' });
    this.#groups = groupsOf(options.routes);
  }

  /** Samples ignored because they repeated one already taken (or their message was a redelivery of one taken). */
  get duplicates(): number {
    return this.#groups.reduce((n, g) => n + g.assembler.duplicates, this.redelivered);
  }

  /**
   * Feed an admitted message, logged at `seq`, to its stream. `redelivered`:
   * the broker sent it before (DUP). Such a message for a step already closed
   * is a duplicate, however far behind: the broker delivers in order and the
   * daemon takes messages in order, so the stream moved past it only by
   * taking what came after it, which came after it was taken. (A SIGKILL can
   * lose a whole read's PUBACKs, hundreds of messages, while the assembler
   * remembers the sample keys of the last RECENT_BUCKETS steps only.)
   */
  apply(a: Admitted<RouteModel>, seq: number, redelivered = false): void {
    const group = a.route.group;
    const origin: StepOrigin = { route: a.route.name, topic: a.topic, params: a.params, receivedAt: a.receivedAt, seq };
    const events: AssembledEvent[] = [];
    try {
      const slot = this.#opts.residency.touch(group, a.stream, a.receivedAt);
      // The stream's name as the assembler holds it: the engines' and score books' maps then find it by identity.
      const stream = group.assembler.nameOf(slot)!;
      // A replayed input that the stream's restored state already reflects (an incremental checkpoint wrote it later than the record).
      if (seq <= this.#opts.residency.floorAt(group, slot)) {
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
      if (redelivered && err instanceof DecodeError && err.reason === 'late') this.redelivered++;
      else this.#refuse(a, seq, err);
    }
    // Steps an earlier feature of the message released still go on.
    try {
      this.#dispatch(group, events, origin);
    } catch (err) {
      this.#log.error({ err, stream: a.stream }, 'could not submit a step');
    }
  }

  /** A sample the stream could not take (late, too_many_samples): the message is in the log; its dead letter carries the seq so a replay stores it once. */
  #refuse(a: Admitted<RouteModel>, seq: number, err: unknown): void {
    const refusals = this.#opts.refusals;
    const reason: DeadLetterReason = err instanceof DecodeError ? err.reason : 'internal';
    const row = { ...refusals.row(a.stream, a.topic, a.payload, a.receivedAt, reason, (err as Error).message), seq };
    const verdict = refusals.judge(a.stream, reason);
    refusals.count(reason, verdict.store);
    if (verdict.log) this.#log.warn({ topic: a.topic.slice(0, 200), stream: a.stream, reason, detail: row.detail, stored: verdict.store }, 'sample dead-lettered');
    if (verdict.store) this.#write('dead letter', () => this.#opts.store.addDeadLetter(row));
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
    const admission = this.#opts.admission;
    const a = admission.admit(topic, payload, receivedAt, true);
    if (a.ok) {
      this.apply(a, seq, note === REDELIVERED_NOTE);
      return;
    }
    // Logged when it passed, refused now: the configuration changed across the restart.
    const verdict = admission.judge(a);
    admission.refused(a, verdict);
    const row = { ...a.row, seq };
    if (verdict.store) this.#write('dead letter', () => this.#opts.store.addDeadLetter(row));
  }

  /** Whether a wall-clock sweep now would close some step (the caller logs a tick first). */
  sweepDue(now: number): boolean {
    return this.#groups.some((g) => g.assembler.due(now));
  }

  /** Close buckets the clock has passed (routes with `wallClock`); `seq` is the tick's log position. */
  sweep(now: number, seq: number): void {
    const residency = this.#opts.residency;
    for (const g of this.#groups) {
      try {
        // A stream whose restored state already reflects this tick is left alone (a replay).
        const events = g.assembler.sweep(now, (stream) => residency.floor(g, stream) >= seq);
        for (const e of events) residency.markDirty(g, e.stream);
        this.#dispatch(g, events, { route: '(clock)', topic: '', params: {}, receivedAt: now, seq });
      } catch (err) {
        this.#log.error({ err }, 'clock sweep failed');
      }
    }
  }

  #dispatch(group: RouteGroup<RouteModel>, events: readonly AssembledEvent[], origin: StepOrigin): void {
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
        for (const m of group.models) m.engine.submitRead(e.stream, e.values, m.scaler.readerFor(m.features, stepTime), context, resetBefore ? RESET : undefined, e.slot, slots);
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
}
