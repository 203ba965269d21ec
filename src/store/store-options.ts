import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
/** How the store is opened (`Store`). */
export interface StoreOptions {
  /** SQLite file, or ':memory:'. */
  path: string;
  retentionDays: number;
  /** Dead letters kept at most (MiB, the oldest pruned first); 0 or absent: by age only. */
  deadLetterMaxMiB?: number;
  log: Logger;
  /**
   * Time and timers (default: the system clock): the rows' times, retention's
   * cutoff, the input log's group commit, the gathering of dead letters and
   * the retries of a failed write.
   */
  clock?: Clock;
  /**
   * `process` (default): synchronous=NORMAL, a commit survives the process
   * crashing; `power`: synchronous=FULL, a commit also survives power loss, at
   * one fsync per commit.
   */
  durability?: 'process' | 'power';
  /** Cap on the database size (0: only the disk limits it); reaching it behaves as a full disk. */
  maxSizeMiB?: number;
  /** `quick` (default): `PRAGMA quick_check` on the database and the input log at start; `off`: none. */
  integrityCheck?: 'quick' | 'off';
}
