import { Repeating, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Ack, IncomingMessage } from '../mqtt/mqtt-connection.js';
import type { DeadLetterRow } from '../store/store.js';
import type { Admission } from '../streams/admission.js';
import type { RouteModel } from '../streams/route-model.js';
import type { StepDispatcher } from '../streams/step-dispatcher.js';
import type { Service } from './service.js';

/** Why the intake cannot take a message right now. */
export type HoldReason = 'queue_full' | 'checkpoint' | 'reload' | 'store';

/** What the intake needs of the store: the input log, and whether it can write. */
export interface IntakeStore {
  readonly failing: boolean;
  /** Log an input (kind 0: a message; 1: a clock tick), `durable` (the default) before it returns, `redelivered` marked; returns its log position. */
  appendInput(kind: 0 | 1, receivedAt: number, topic: string, payload: Buffer, durable?: boolean, redelivered?: boolean): number;
  /** Log a refused message with its dead letter (`durable` as above). */
  refuse(row: DeadLetterRow, durable: boolean): void;
  reportSuccess(): void;
  reportFailure(err: Error, what: string): void;
}

export interface IntakeOptions {
  admission: Admission<RouteModel>;
  dispatcher: StepDispatcher;
  store: IntakeStore;
  /** The pipeline's own reason to hold (a full engine queue or writer backlog, a model swap), or null. */
  busy(): HoldReason | null;
  onHold?(reason: HoldReason): void;
  /** Wall-clock routes: how often a tick closes steps whose time has passed (0: no ticks). */
  sweepIntervalMs?: number;
  clock: Clock;
  log: Logger;
}

/** Retry delays for a held message while the store fails. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

/**
 * The acknowledgement path. Each message is admitted (stateless checks), then
 * logged (a QoS 1/2 message durably, before its acknowledgement; a QoS 0 one
 * in a group commit), a refused one with its dead letter; an admitted message
 * is then applied to its stream. One autocommit insert per QoS 1/2 message
 * keeps the connection flowing (mqtt.js handles one packet at a time), while
 * inference batches and the writer thread commits on their own schedules.
 *
 * When the pipeline is busy (an engine queue or the store's writer full, a model swap) or the
 * store cannot write (disk full, locked), the message is held unacknowledged:
 * mqtt.js then reads nothing more and the broker keeps the rest. `pump()`
 * retries it when the condition clears; a held message whose connection has
 * closed is dropped, since the broker redelivers it on the next connection.
 */
export class Intake implements Service {
  readonly name = 'intake';
  readonly #opts: IntakeOptions;
  readonly #log: Logger;
  #held: { msg: IncomingMessage; ack: Ack; since: number } | null = null;
  #timer: unknown = null;
  readonly #sweep: Repeating;
  #retryMs = RETRY_MIN_MS;
  #holdReason: HoldReason | null = null;
  #stopped = false;
  /** Log position of the last input applied. */
  lastSeq = 0;

  constructor(options: IntakeOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'intake' });
    this.#sweep = new Repeating(options.clock, options.sweepIntervalMs ?? 0, () => this.tick(options.clock.now()));
  }

  /** Start the wall-clock ticks (live streams: close steps whose time has passed even if no later sample comes). */
  start(): void {
    this.#sweep.start();
  }

  /** Why a message is held right now, or null. */
  get holding(): HoldReason | null {
    return this.#held ? this.#holdReason : null;
  }

  /** The MQTT connection's message handler. Never throws. */
  offer(msg: IncomingMessage, ack: Ack): void {
    if (this.#stopped) return; // unacknowledged: the broker keeps it
    if (this.#held) {
      // mqtt.js sends the next message only after an ack; a new one means the
      // held one's connection closed and the broker will redeliver it.
      this.#held = null;
    }
    const reason = this.#take(msg);
    if (reason === null) {
      ack.ack();
      return;
    }
    this.#hold(msg, ack, reason);
  }

  /** Try the held message again (a batch finished, the store recovered, a swap or checkpoint ended). */
  pump(): void {
    const held = this.#held;
    if (!held || this.#stopped) return;
    if (held.ack.stale) {
      this.#held = null;
      this.#clearTimer();
      return;
    }
    const reason = this.#take(held.msg);
    if (reason !== null) {
      this.#holdReason = reason;
      this.#schedule();
      return;
    }
    this.#held = null;
    this.#clearTimer();
    this.#retryMs = RETRY_MIN_MS;
    const heldMs = this.#opts.clock.now() - held.since;
    if (heldMs > 1000) this.#log.info({ heldMs }, 'intake resumed');
    held.ack.ack();
  }

  /**
   * A wall-clock tick: when it would close a step, log it first so a replay
   * closes the same steps at the same point. Skipped while holding (the next
   * tick catches up).
   */
  tick(now: number): void {
    if (this.#stopped || this.#held || this.#opts.busy() !== null || this.#opts.store.failing) return;
    if (!this.#opts.dispatcher.sweepDue(now)) return;
    let seq: number;
    try {
      seq = this.#opts.store.appendInput(1, now, '', Buffer.alloc(0));
      this.#opts.store.reportSuccess();
    } catch (err) {
      this.#opts.store.reportFailure(err as Error, 'input log (tick)');
      return;
    }
    this.lastSeq = seq;
    this.#opts.dispatcher.sweep(now, seq);
  }

  /** Stop taking messages and ticks; a held message stays with the broker. */
  stop(): void {
    this.#stopped = true;
    this.#held = null;
    this.#clearTimer();
    this.#sweep.stop();
  }

  /** Process a message now; returns why it must wait instead, or null when it is safe to acknowledge. */
  #take(msg: IncomingMessage): HoldReason | null {
    const { admission, dispatcher, store } = this.#opts;
    if (store.failing) return 'store';
    const busy = this.#opts.busy();
    if (busy !== null) return busy;
    const a = admission.admit(msg.topic, msg.payload, msg.receivedAt);
    try {
      if (!a.ok) {
        const verdict = admission.judge(a);
        if (verdict.store) {
          // QoS 1/2: the refusal is logged before the PUBACK, so its dead letter is stored whatever comes next.
          store.refuse(a.row, msg.qos > 0);
          store.reportSuccess();
        }
        admission.refused(a, verdict);
        return null;
      }
      // QoS 1/2: logged before the PUBACK. QoS 0 has no acknowledgement to hold: group commit.
      const redelivered = msg.dup === true;
      const seq = store.appendInput(0, msg.receivedAt, msg.topic, msg.payload, msg.qos > 0, redelivered);
      store.reportSuccess();
      this.lastSeq = seq;
      dispatcher.apply(a, seq, redelivered);
      return null;
    } catch (err) {
      // Nothing was applied: the message waits, unacknowledged, until the store writes again.
      store.reportFailure(err as Error, a.ok ? 'input log' : 'dead letter');
      return 'store';
    }
  }

  #hold(msg: IncomingMessage, ack: Ack, reason: HoldReason): void {
    this.#held = { msg, ack, since: this.#opts.clock.now() };
    this.#holdReason = reason;
    this.#opts.onHold?.(reason);
    this.#log.debug({ reason, topic: msg.topic }, 'holding a message unacknowledged');
    this.#schedule();
  }

  /** Poll while holding: pipeline conditions clear on their own schedule, store failures back off. */
  #schedule(): void {
    if (this.#timer !== null) return;
    const ms = this.#holdReason === 'store' ? this.#retryMs : 5;
    if (this.#holdReason === 'store') this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    this.#timer = this.#opts.clock.setTimeout(() => {
      this.#timer = null;
      this.pump();
    }, ms);
  }

  #clearTimer(): void {
    if (this.#timer !== null) this.#opts.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
