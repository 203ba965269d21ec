import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Store } from '../store/store.js';
import type { Residency } from '../streams/residency.js';
import type { StepDispatcher } from '../streams/step-dispatcher.js';
import type { ForecastSink } from './forecast-sink.js';

/** What the last start's recovery did; skippedInputs: replayed inputs a stream's state, checkpointed after the record, already reflected. */
export interface RecoveryStats {
  restoredStreams: number;
  replayedInputs: number;
  skippedInputs: number;
  ms: number;
}

export interface RecoveryOptions {
  store: Store;
  residency: Residency;
  dispatcher: StepDispatcher;
  sink: ForecastSink;
  /** Where the replay got to: the intake goes on from there. */
  position: { lastSeq: number };
  /** Whether the engines' queues are full (limits.maxQueuedSteps): the replay then waits for them. */
  queueFull(): boolean;
  /** Let every engine finish what is queued. */
  drain(): Promise<void>;
  metrics: Metrics;
  log: Logger;
}

/**
 * Crash recovery: bring back the wall-clock routes' streams that were in
 * memory at the last checkpoint (the others load on their next message,
 * from the same checkpoint) and replay every input logged after it
 * (predictions already stored are recomputed and skipped, not duplicated;
 * every recomputed forecast is published again once the broker connection
 * is up, and only then does a checkpoint move past them).
 */
export async function recover(o: RecoveryOptions): Promise<RecoveryStats & { checkpointSeq: number }> {
  const { store, residency, dispatcher, sink, position } = o;
  const started = performance.now();
  const from = store.checkpointSeq();
  position.lastSeq = from;
  let restored = 0;
  for (const row of store.residentStreams(residency.eagerGroups)) if (residency.restore(row)) restored++;
  let replayed = 0;
  sink.replaying = true;
  for (let page = store.inputAfter(from, 1000); page.length > 0; page = store.inputAfter(position.lastSeq, 1000)) {
    for (const row of page) {
      dispatcher.replay(row.seq, row.kind, row.topic, row.payload, row.receivedAt, row.note);
      position.lastSeq = row.seq;
      replayed++;
      // The same bound as live intake (limits.maxQueuedSteps): let the engines catch up.
      if (o.queueFull()) await o.drain();
    }
  }
  await o.drain();
  sink.replaying = false;
  // Every replayed batch committed (its forecasts handed to the publisher, deferred until the broker connection is up).
  await store.settled();
  o.metrics.replayed(replayed);
  const stats = { restoredStreams: restored, replayedInputs: replayed, skippedInputs: dispatcher.replaySkipped, ms: Math.round(performance.now() - started) };
  if (replayed > 0 || restored > 0) o.log.info({ checkpointSeq: from, ...stats }, 'recovered from checkpoint');
  return { ...stats, checkpointSeq: from };
}
