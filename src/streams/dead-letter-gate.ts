import type { DeadLetterReason } from './decoder.js';

/** How much of a refused message a dead letter keeps: the first KiB of its payload, topic and detail. */
export const DEAD_LETTER_KEEP = 1024;

export interface DeadLetterGateOptions {
  /** Dead letters stored per minute in all (0: none). */
  perMinute: number;
  /** Dead letters stored per minute for one source: its stream, or its topic when it has none. */
  perSourcePerMinute: number;
  /** Refusals logged one by one per minute; the rest are summed up in one line. */
  warnPerMinute?: number;
  /** The summary of a minute in which some refusals went unstored or unlogged, once it is over. */
  onSummary?(summary: RefusalSummary): void;
  now?: () => number;
  /** Schedules the summary at the end of such a minute (default: an unref'd setTimeout). */
  setTimer?(fn: () => void, ms: number): void;
}

/** What one minute refused, for its summary line. */
export interface RefusalSummary {
  /** When the minute began (epoch ms). */
  readonly since: number;
  readonly refused: number;
  readonly unstored: number;
  readonly unlogged: number;
  readonly byReason: Readonly<Record<string, number>>;
}

const WINDOW_MS = 60_000;

/**
 * Which refused messages become dead letters, and which refusals are logged
 * line by line. A flood of bad messages must not fill the disk or the
 * journal: per fixed minute, at most `perSourcePerMinute` dead letters of one
 * source and `perMinute` in all are stored, and `warnPerMinute` refusals
 * logged; the rest are counted (metrics, and one summary line when the minute
 * is over). The sources map holds only sources stored this minute, so it is
 * bounded by `perMinute` whatever the flood's topics.
 */
export class DeadLetterGate {
  readonly #opts: DeadLetterGateOptions;
  readonly #now: () => number;
  readonly #warnPerMinute: number;
  #windowStart = -Infinity;
  #stored = 0;
  #logged = 0;
  #refused = 0;
  #unstored = 0;
  #unlogged = 0;
  #summaryDue = false;
  #byReason: Record<string, number> = {};
  readonly #perSource = new Map<string, number>();

  constructor(options: DeadLetterGateOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#warnPerMinute = options.warnPerMinute ?? 10;
  }

  /** A refusal from `source`: whether to store its dead letter, and whether to log it. */
  refuse(source: string, reason: DeadLetterReason): { store: boolean; log: boolean } {
    const now = this.#now();
    if (now - this.#windowStart >= WINDOW_MS) this.#roll(now);
    this.#refused++;
    this.#byReason[reason] = (this.#byReason[reason] ?? 0) + 1;
    let store = false;
    if (this.#stored < this.#opts.perMinute) {
      const n = this.#perSource.get(source) ?? 0;
      if (n < this.#opts.perSourcePerMinute) {
        this.#perSource.set(source, n + 1);
        this.#stored++;
        store = true;
      }
    }
    if (!store) this.#unstored++;
    const log = this.#logged < this.#warnPerMinute;
    if (log) this.#logged++;
    else this.#unlogged++;
    if ((!store || !log) && !this.#summaryDue) {
      // The minute's first refusal over a cap: its summary when the minute is over.
      this.#summaryDue = true;
      const window = this.#windowStart;
      const at = window + WINDOW_MS - now;
      const fire = (): void => {
        if (this.#windowStart === window) this.#roll(this.#now());
      };
      if (this.#opts.setTimer) this.#opts.setTimer(fire, at);
      else setTimeout(fire, at).unref();
    }
    return { store, log };
  }

  /** Close the minute now if it is over (its summary, when due, goes to onSummary). */
  tick(): void {
    if (this.#now() - this.#windowStart >= WINDOW_MS) this.#roll(this.#now());
  }

  #roll(now: number): void {
    if (this.#summaryDue) {
      this.#opts.onSummary?.({ since: this.#windowStart, refused: this.#refused, unstored: this.#unstored, unlogged: this.#unlogged, byReason: this.#byReason });
    }
    this.#summaryDue = false;
    this.#windowStart = now;
    this.#stored = this.#logged = this.#refused = this.#unstored = this.#unlogged = 0;
    this.#byReason = {};
    this.#perSource.clear();
  }
}

/** The first `DEAD_LETTER_KEEP` bytes of a payload (the same buffer when it is no longer). */
export function keptPayload(payload: Buffer): Buffer {
  return payload.length > DEAD_LETTER_KEEP ? payload.subarray(0, DEAD_LETTER_KEEP) : payload;
}

/** A string cut to `DEAD_LETTER_KEEP` characters, saying how long it was. */
export function keptText(text: string): string {
  return text.length > DEAD_LETTER_KEEP ? `${text.slice(0, DEAD_LETTER_KEEP)}… (${text.length} characters)` : text;
}
