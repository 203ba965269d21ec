import type Database from 'better-sqlite3';
import type { Ids } from './ids.js';
import type { InputLog } from './input-log.js';
import type { EventRow, ForecastRow, StepRow } from './rows.js';

/**
 * Wrap `body` in a write transaction that also writes the ids handed out and
 * the QoS 0 inputs pending since the last one; both are marked written only
 * once it commits (a rollback leaves them for the retry).
 */
export function writeTransaction<A extends unknown[]>(db: Database.Database, ids: Ids, log: InputLog, body: (...args: A) => void): (...args: A) => void {
  const tx = db.transaction((...args: A) => {
    const inputs = log.writePending();
    body(...args);
    return { ids: ids.writeNew(), inputs };
  });
  return (...args: A) => {
    const written = tx(...args);
    ids.saved(written.ids);
    log.written(written.inputs);
  };
}

/**
 * The data path's writes: one model's batch of steps, forecasts and events in
 * one transaction. One `step_inputs` row per step (a step shared by the models
 * of a route is stored once) and one `forecasts` row per forecast.
 */
export class BatchWriter {
  readonly #commit: (mid: number, lid: number, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[]) => void;
  #inserted: boolean[] = [];

  constructor(db: Database.Database, ids: Ids, log: InputLog, now: () => number) {
    const step = db.prepare('INSERT INTO step_inputs (sid, ts, received_at, fsid, inputs, filled) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    // ON CONFLICT (not OR IGNORE): a duplicate key is skipped, but a non-finite value
    // (JSON null) still fails the CHECK loudly.
    const forecast = db.prepare('INSERT INTO forecasts (sid, mid, issued_at, lid, created_at, vals, labels) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    // Rows with a seq come from the data path and are written once however often it is replayed.
    const event = db.prepare('INSERT OR IGNORE INTO events (at, stream, model, kind, detail, seq) VALUES (?, ?, ?, ?, ?, ?)');
    this.#commit = writeTransaction(db, ids, log, (mid: number, lid: number, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[]) => {
      const at = now();
      const inserted: boolean[] = [];
      for (const st of steps) step.run(ids.stream(st.stream, st.route, st.receivedAt), st.ts, st.receivedAt, ids.featureSet(st.features), inputsJson(st), filledMask(st));
      for (const e of events) event.run(e.at, e.stream, e.model, e.kind, e.detail, e.seq ?? null);
      for (const f of forecasts) {
        inserted.push(forecast.run(ids.stream(f.stream, '', f.issuedAt), mid, f.issuedAt, lid, at, JSON.stringify(f.values), f.labels ? JSON.stringify(f.labels) : null).changes === 1);
      }
      this.#inserted = inserted;
    });
  }

  /** Commit; returns, per forecast, whether it was new. Throws (nothing written) when the store cannot write. */
  commit(mid: number, lid: number, steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[]): boolean[] {
    this.#commit(mid, lid, steps, forecasts, events);
    return this.#inserted;
  }
}

/** The step's values as a JSON array in feature order (finite numbers: the decoder refuses others). */
function inputsJson(st: StepRow): string {
  let out = '[';
  for (let i = 0; i < st.features.length; i++) out += (i > 0 ? ',' : '') + JSON.stringify(st.values[st.features[i]!] ?? null);
  return out + ']';
}

/** Bit i set: the step's feature i (in `features` order) was forward-filled (exact for the first 53 features). */
function filledMask(st: StepRow): number {
  let mask = 0;
  for (const f of st.filled) {
    const i = st.features.indexOf(f);
    if (i >= 0 && i < 53) mask += 2 ** i;
  }
  return mask;
}
