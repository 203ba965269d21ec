import type Database from 'better-sqlite3';
import { boundsBlob, forecastJson, namesOnDemand, valuesJson, type PackedBatch } from './codec.js';
import type { Ids } from './ids.js';
import type { EventRow } from './rows.js';

/**
 * Wrap `body` in a write transaction that also writes the ids handed out since
 * the last one; they are marked written only once it commits (a rollback
 * leaves them for the retry).
 */
export function writeTransaction<A extends unknown[], R>(db: Database.Database, ids: Ids, body: (...args: A) => R): (...args: A) => R {
  const tx = db.transaction((...args: A) => {
    const result = body(...args);
    return { ids: ids.writeNew(), result };
  });
  return (...args: A) => {
    const written = tx(...args);
    ids.saved(written.ids);
    return written.result;
  };
}

/** One model's batch with its ids, as the writer commits it. */
export interface QueuedBatch {
  readonly mid: number;
  readonly lid: number;
  /** Per layout cell, the scale of its stored bounds (`boundScales`). */
  readonly scales: readonly number[];
  readonly batch: PackedBatch;
}

/**
 * The data path's writes (writer thread): one model's batch of steps,
 * forecasts and events. One `step_inputs` row per step (a step shared by the
 * models of a route is stored once) and one `forecasts` row per forecast.
 * Batches that wait together are committed in one transaction (`commitGroup`),
 * each in a savepoint of its own, so that a batch refused for a bug in its
 * rows leaves the others written.
 */
export class BatchWriter {
  readonly #group: (batches: readonly QueuedBatch[], transient: (err: unknown) => boolean) => Array<Uint8Array | Error>;

  /** `event`: the writer's insert of an event row (the same for a batch's events and for one on its own). */
  constructor(db: Database.Database, ids: Ids, now: () => number, event: (e: EventRow) => void) {
    const step = db.prepare('INSERT INTO step_inputs (sid, ts, received_at, fsid, inputs, filled) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    // ON CONFLICT (not OR IGNORE): a duplicate key is skipped, but a non-finite value
    // (JSON null) still fails the CHECK loudly.
    const forecast = db.prepare('INSERT INTO forecasts (sid, mid, issued_at, lid, created_at, vals, labels, bounds) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    // A savepoint inside the group's transaction: a batch that throws takes back only its own rows.
    const write = db.transaction((mid: number, lid: number, scales: readonly number[], b: PackedBatch): Uint8Array => {
      const at = now();
      const fsids = b.featureSets.map((names) => ids.featureSet(names));
      let v = 0;
      const stepStream = namesOnDemand(b.stepStreams, b.steps);
      for (let i = 0; i < b.steps; i++) {
        const n = b.featureSets[b.stepSet[i]!]!.length;
        const ts = b.stepNums[i * 3]!;
        const receivedAt = b.stepNums[i * 3 + 1]!;
        const sid = ids.streamAt(b.stepRefs[i * 2]!, b.stepRefs[i * 2 + 1]!, stepStream, i, b.routes[b.stepRoute[i]!]!, receivedAt);
        step.run(sid, ts, receivedAt, fsids[b.stepSet[i]!], valuesJson(b.stepValues, v, n), b.stepNums[i * 3 + 2]!);
        v += n;
      }
      for (const e of b.events) event(e);
      const forecastStream = namesOnDemand(b.forecastStreams, b.forecasts);
      const inserted = new Uint8Array(b.forecasts);
      for (let k = 0; k < b.forecasts; k++) {
        const issuedAt = b.issuedAt[k]!;
        const vals = forecastJson(b.forecastValues, k * b.cells, b.cells);
        const sid = ids.streamAt(b.forecastRefs[k * 2]!, b.forecastRefs[k * 2 + 1]!, forecastStream, k, '', issuedAt);
        const bounds = b.bounds ? boundsBlob(b.bounds, k * b.boundsPer, scales, b.boundsPer / b.cells) : null;
        inserted[k] = forecast.run(sid, mid, issuedAt, lid, at, vals, b.labels?.[k] ?? null, bounds).changes;
      }
      return inserted;
    });
    this.#group = writeTransaction(db, ids, (batches: readonly QueuedBatch[], transient: (err: unknown) => boolean) => {
      const out: Array<Uint8Array | Error> = [];
      for (const b of batches) {
        try {
          out.push(write(b.mid, b.lid, b.scales, b.batch));
        } catch (err) {
          if (transient(err)) throw err;
          out.push(err as Error);
        }
      }
      return out;
    });
  }

  /**
   * Commit batches in one transaction; returns, per batch, its per-forecast
   * "new" flags (1: inserted), or the error that refused it (a bug in its
   * rows: nothing of it written, the others are). Throws, with nothing
   * written, when the store cannot write (disk full, locked, I/O).
   */
  commitGroup(batches: readonly QueuedBatch[], transient: (err: unknown) => boolean): Array<Uint8Array | Error> {
    return this.#group(batches, transient);
  }
}
