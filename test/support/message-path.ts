import { ScoreBook } from '../../src/daemon/score-book.js';
import { InferenceEngine } from '../../src/inference/engine.js';
import { loadModel } from '../../src/inference/model.js';
import { CardScaler } from '../../src/inference/scaler.js';
import { silentLogger } from '../../src/log.js';
import { Store } from '../../src/store/store.js';
import { Admission } from '../../src/streams/admission.js';
import { Refusals } from '../../src/streams/refusals.js';
import { Residency } from '../../src/streams/residency.js';
import { RouteModel } from '../../src/streams/route-model.js';
import { compileRoutes, groupsOf, type StepContext } from '../../src/streams/routes.js';
import { StepDispatcher } from '../../src/streams/step-dispatcher.js';
import type { ManualClock } from './manual-clock.js';
import { modelPath } from './models.js';

/**
 * The real message path behind the intake, for unit tests of the parts around
 * it: a SQLite store in memory, the shipped weather-lstm with its card, one
 * route `w/+station` → stream `{station}`, admission, residency and dispatch,
 * on a manual clock. `wallClock`: the route closes steps on the clock
 * (`emit: close`); otherwise each step goes once every feature is in.
 */
export async function messagePath(clock: ManualClock, o: { wallClock?: boolean } = {}) {
  const store = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger, clock });
  store.start();
  const model = await loadModel(modelPath('weather-lstm'));
  const card = model.card!;
  const engine = new InferenceEngine<StepContext>(model, { maxDelayMs: 0, onResults: () => undefined });
  const scores = new ScoreBook(card);
  const routeModel = new RouteModel(engine, new CardScaler(card), scores);
  const wallClock = o.wallClock ?? false;
  const routes = compileRoutes(
    [{ topic: 'w/+station', stream: '{station}', models: ['weather-lstm'], decoder: { type: 'json', partial: false }, resample: { aggregate: {}, latenessMs: 0, emit: wallClock ? 'close' : 'complete', wallClock, maxFillSteps: 0, maxGapSteps: 0 } }],
    () => [routeModel],
  );
  const refusals = new Refusals({ log: silentLogger, clock });
  const residency = new Residency({ groups: groupsOf(routes), loadStream: (g, s) => store.loadStream(g, s), log: silentLogger });
  const admission = new Admission({ routes, maxPayloadBytes: 10_000, residents: residency, refusals, log: silentLogger });
  const dispatcher = new StepDispatcher({ routes, admission, residency, refusals, store, log: silentLogger });
  const close = async (): Promise<void> => {
    await engine.close();
    await store.stop();
  };
  return { store, engine, scores, routeModel, refusals, residency, admission, dispatcher, close };
}
