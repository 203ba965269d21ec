import type { Store } from '../store/store.js';
import type { HttpService } from '../http/http-service.js';
import type { MqttConnection } from '../mqtt/mqtt-connection.js';
import type { Refusals } from '../streams/refusals.js';
import type { Residency } from '../streams/residency.js';
import type { RouteModel } from '../streams/route-model.js';
import type { CompiledRoute } from '../streams/routes.js';
import type { StepDispatcher } from '../streams/step-dispatcher.js';
import type { Checkpointer } from './checkpointer.js';
import type { ForecastSink } from './forecast-sink.js';
import type { HoldReason, Intake } from './intake.js';
import type { ModelReloader } from './model-reloader.js';
import type { ModelSet } from './model-set.js';
import type { RecoveryStats } from './recovery.js';

export interface DaemonStats {
  messages: number;
  accepted: Record<string, number>;
  deadLetters: Record<string, number>;
  duplicates: number;
  steps: { submitted: number; skipped: number; gapResets: number };
  predictions: number;
  resets: number;
  streams: number;
  queueDepth: number;
  /** Why a message is held unacknowledged right now (backpressure), or null. */
  holding: HoldReason | null;
  /** Input-log position of the last input applied, and of the last checkpoint. */
  seq: number;
  checkpointSeq: number;
  /** The last start's recovery. */
  recovery: RecoveryStats;
  residency: { resident: number; evicted: number; restored: number };
}

/** The parts of a started daemon that its stats, readiness and control read. */
export interface DaemonParts {
  store: Store;
  models: ModelSet;
  routes: readonly CompiledRoute<RouteModel>[];
  refusals: Refusals;
  residency: Residency;
  dispatcher: StepDispatcher;
  intake: Intake;
  sink: ForecastSink;
  checkpointer: Checkpointer;
  reloader: ModelReloader;
  mqtt: MqttConnection | null;
  http: HttpService | null;
}

/** The daemon's counters as `stats()` reports them (logged at stop, published on stats.topic). */
export function statsOf(p: Partial<DaemonParts>, recovery: RecoveryStats): DaemonStats {
  const engines = [...(p.models?.engines.values() ?? [])];
  return {
    messages: p.mqtt?.received ?? 0,
    accepted: Object.fromEntries(p.dispatcher?.accepted ?? []),
    deadLetters: Object.fromEntries(p.refusals?.counts ?? []),
    duplicates: p.dispatcher?.duplicates ?? 0,
    steps: { ...(p.dispatcher?.steps ?? { submitted: 0, skipped: 0, gapResets: 0 }) },
    predictions: p.sink?.predictions ?? 0,
    resets: engines.reduce((n, e) => n + e.stats.resets, 0),
    streams: engines.reduce((n, e) => Math.max(n, e.streams), 0),
    queueDepth: engines.reduce((n, e) => n + e.queueDepth, 0),
    holding: p.intake?.holding ?? null,
    seq: p.intake?.lastSeq ?? 0,
    checkpointSeq: p.checkpointer?.seq ?? 0,
    recovery: { ...recovery },
    residency: { resident: p.residency?.residentStreams ?? 0, ...(p.residency?.counts ?? { evicted: 0, restored: 0 }) },
  };
}
