import { systemClock, type Clock } from '../clock.js';
import type { DeadLetterRow } from './rows.js';
import type { WriterClient } from './writer-client.js';

/** How long, and up to how many, dead letters are gathered into one write. */
const DEAD_LETTER_GATHER_MS = 50;
const DEAD_LETTER_GATHER_ROWS = 256;

/**
 * Gathers dead letters for up to DEAD_LETTER_GATHER_MS (or
 * DEAD_LETTER_GATHER_ROWS) and hands them to the writer as one op, one
 * transaction: one at a time, a flood of refused messages wrote several pages
 * of WAL for each. The store flushes them ahead of any other op, so the
 * writer sees every op in the order it was made.
 */
export class DeadLetterGatherer {
  /** The writer they go to (none before the store starts: they stay gathered). */
  readonly #writer: () => WriterClient | null;
  #rows: DeadLetterRow[] = [];
  readonly #clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>;
  #timer: unknown = null;

  constructor(writer: () => WriterClient | null, clock: Pick<Clock, 'setTimeout' | 'clearTimeout'> = systemClock) {
    this.#writer = writer;
    this.#clock = clock;
  }

  /** Dead letters gathered and not yet handed on. */
  get pending(): number {
    return this.#rows.length;
  }

  add(row: DeadLetterRow): void {
    // Its own copy of the payload: a slice of the connection's read buffer would carry the whole buffer across.
    this.#rows.push({ ...row, payload: Buffer.from(row.payload) });
    if (this.#rows.length >= DEAD_LETTER_GATHER_ROWS) this.flush();
    else this.#timer ??= this.#clock.setTimeout(() => this.flush(), DEAD_LETTER_GATHER_MS);
  }

  /** The gathered dead letters, to the writer as one op (one transaction). */
  flush(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    const rows = this.#rows;
    const writer = this.#writer();
    if (rows.length === 0 || !writer) return;
    this.#rows = [];
    void writer.send({ op: 'deadLetters', rows });
  }
}
