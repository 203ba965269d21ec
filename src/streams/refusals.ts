import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { DeadLetterRow } from '../store/store.js';
import { DeadLetterGate, keptPayload, keptText } from './dead-letter-gate.js';
import type { DeadLetterReason } from './decoder.js';

/** What becomes of a refusal: its dead letter stored or not, the refusal logged or not (the per-minute caps). */
export interface Verdict {
  readonly store: boolean;
  readonly log: boolean;
}

const STORE_AND_LOG: Verdict = { store: true, log: true };

export interface RefusalsOptions {
  /** Per-minute caps on stored dead letters (default: store every one). */
  caps?: { perMinute: number; perSourcePerMinute: number; warnPerMinute?: number };
  /** A refusal counted (`stored`: false when its dead letter was over the caps), for metrics. */
  onRefused?(reason: DeadLetterReason, stored: boolean): void;
  clock?: Clock;
  log: Logger;
}

/**
 * Every refused message's accounting, whether admission refused it or its
 * stream did (a late sample): the dead letter it leaves, whether that is
 * stored and the refusal logged (DeadLetterGate's caps), and the counts.
 */
export class Refusals {
  readonly #opts: RefusalsOptions;
  readonly #gate: DeadLetterGate | null;
  /** Dead letters per reason, stored or not. */
  readonly counts = new Map<DeadLetterReason, number>();

  constructor(options: RefusalsOptions) {
    this.#opts = options;
    const log = options.log;
    const clock = options.clock;
    this.#gate = options.caps
      ? new DeadLetterGate({
          ...options.caps,
          ...(clock ? { now: () => clock.now(), setTimer: (fn: () => void, ms: number) => void clock.setTimeout(fn, ms) } : {}),
          onSummary: (s) =>
            log.warn(
              { since: new Date(s.since).toISOString(), refused: s.refused, unstored: s.unstored, unlogged: s.unlogged, byReason: s.byReason },
              `refused messages in the last minute: ${s.refused}; ${s.unstored} dead letters not stored (over limits.deadLettersPerMinute or deadLettersPerSourcePerMinute) and ${s.unlogged} refusals not logged one by one; tidecast_dead_letters_total counts them all`,
            ),
        })
      : null;
  }

  /** Whether a refusal of `source` (its stream, else its topic) is stored and logged; asked once per refusal. */
  judge(source: string, reason: DeadLetterReason): Verdict {
    return this.#gate?.refuse(source, reason) ?? STORE_AND_LOG;
  }

  /** Count a judged refusal. */
  count(reason: DeadLetterReason, stored: boolean): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.#opts.onRefused?.(reason, stored);
  }

  /** A refused message's dead letter: the first KiB of its payload, topic and detail (with their full sizes). */
  row(stream: string | undefined, topic: string, payload: Buffer, receivedAt: number, reason: DeadLetterReason, detail: string): DeadLetterRow {
    return { stream, receivedAt, topic: keptText(topic), reason, detail: keptText(detail), payload: keptPayload(payload), payloadBytes: payload.length };
  }
}
