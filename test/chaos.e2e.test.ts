import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { defaultCardPath } from '../src/inference/card.js';
import { modelPath } from './support/models.js';
import { prng } from './support/prng.js';
import { logged, waitReady, type Child } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { withBroker } from './support/test-bed.js';
import { STATIONS_ROUTE, type ConfigInput } from './support/test-config.js';

/**
 * The kill test: a publisher sends K QoS 1 messages over M streams while the
 * daemon is SIGKILLed at random moments (during start, recovery and steady
 * flow) and restarted. At the end the predictions table must equal that of an
 * uninterrupted run on the same input: same rows, values within 1e-5 and
 * prediction interval bounds within one unit of their resolution, no
 * duplicates, no gaps, every input stored; and every stored forecast has been
 * published at least once (recovery publishes what it replays).
 *
 * `npm test` runs a short form; `npm run test:chaos` (CHAOS=long)
 * runs more streams, more messages and more kills.
 */
const LONG = process.env.CHAOS === 'long';
const STREAMS = LONG ? 40 : 12;
const STEPS = LONG ? 250 : 100;
const KILLS = LONG ? 15 : 5;
const SEED = Number(process.env.CHAOS_SEED ?? 20261127);
/** Frequent checkpoints, so kills land between them and restarts replay the log. */
const CHECKPOINTS = { checkpointIntervalS: 1 };


interface Pred { stream: string; model: string; issued_at: number; horizon: number; target: string; value: number; bounds: string | null }

function readDb(file: string): { preds: Pred[]; alerts: string[]; drift: string[]; unit: number; steps: number; distinctSteps: number; deadLetters: Array<{ reason: string; detail: string; n: number }> } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      preds: db.prepare('SELECT stream, model, issued_at, horizon, target, value, bounds FROM predictions ORDER BY stream, model, issued_at, horizon, target').all() as Pred[],
      // Alert changes: when and to which state (the probability's last digits follow the bounds').
      alerts: (db.prepare("SELECT stream, at, kind, json_extract(detail, '$.state') state FROM events WHERE kind LIKE 'alert:%' ORDER BY stream, at, kind").all() as Array<{ stream: string; at: number; kind: string; state: string }>).map(
        (e) => `${e.stream} ${e.at} ${e.kind} ${e.state}`,
      ),
      // Drift changes: when, which target, to which state.
      drift: (db.prepare("SELECT stream, at, detail FROM events WHERE kind = 'model_drift' ORDER BY stream, at").all() as Array<{ stream: string; at: number; detail: string }>).flatMap((e) =>
        (JSON.parse(e.detail) as Array<{ target: string; state: string }>).map((d) => `${e.stream} ${e.at} ${d.target} ${d.state}`),
      ),
      // The coarsest resolution of stored bounds (1 / the layouts' smallest scale).
      unit: 1 / (db.prepare("SELECT min(json_extract(c.value, '$[4]')) s FROM forecast_layouts, json_each(cells) c").get() as { s: number }).s,
      steps: (db.prepare('SELECT count(*) n FROM steps').get() as { n: number }).n,
      distinctSteps: (db.prepare('SELECT count(DISTINCT stream || \'@\' || ts) n FROM steps').get() as { n: number }).n,
      deadLetters: db.prepare('SELECT reason, detail, count(*) n FROM dead_letters GROUP BY reason, detail').all() as Array<{ reason: string; detail: string; n: number }>,
    };
  } finally {
    db.close();
  }
}

function predictionCount(file: string): number {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT count(*) n FROM predictions').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0; // not created yet, or mid-migration
  }
}

/** Publish every message at QoS 1, in order, paced over `spreadMs`. */
async function publishAll(url: string, msgs: ReturnType<typeof telemetry>, spreadMs: number): Promise<void> {
  const pub = await mqtt.connectAsync(url, { clientId: `chaos-pub-${Math.random().toString(16).slice(2)}` });
  const chunk = 50;
  const pause = spreadMs / Math.ceil(msgs.length / chunk);
  for (let i = 0; i < msgs.length; i += chunk) {
    await Promise.all(msgs.slice(i, i + chunk).map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })));
    await sleep(pause);
  }
  await pub.endAsync();
}

/** How a variant of the kill test configures the daemon and shapes its input. */
interface Variant {
  /** The daemon's models and routes (default: testConfig's). */
  models?(dir: string): ConfigInput['models'];
  routes?: ConfigInput['routes'];
  messages(): ReturnType<typeof telemetry>;
  /** Wall-clock routes restore their streams at start: at least one restart must have. */
  eager?: boolean;
  /**
   * Kill in flow only while the writer thread holds a checkpoint transaction
   * open (fault injection: TIDECAST_FAULT_CHECKPOINT_HOLD_MS makes it wait
   * there and say so).
   */
  inCheckpoint?: boolean;
  /** Environment of the daemon (fault injection). */
  env?: Record<string, string>;
  /** At least one restart must have skipped replayed inputs that a stream's state, checkpointed after the record, reflected. */
  skips?: boolean;
}

const HOLDING = 'fault injection: holding a checkpoint transaction open';

function killTest(variant: Variant): Promise<void> {
  return withBroker(async ({ dir, url, writeConfig, spawn }) => {
    const children: Child[] = [];
    // Interleave the streams, each in its own order, as live sensors would.
    const msgs = variant.messages().sort((a, b) => a.ts - b.ts);
    // A threshold alert whose state changes often on these streams: its state is checkpointed and replayed too.
    const alerts = [{ name: 'warm', model: 'weather-lstm', target: 'temp_max', above: 12, probability: 0.5 }];
    // Drift tests set to turn on and off often on them too (any bias beyond 0, a fast miss rate of the 80% interval).
    const drift = { allowance: 0, threshold: 1.5, coverageBand: 0.05, coverageSteps: 5 };
    const shape = { models: variant.models?.(dir), routes: variant.routes, alerts, drift };
    const expected = msgs.length * 6;

    // Reference: one uninterrupted run.
    const refFile = writeConfig({ mqtt: { clientId: 'reference' }, http: { enabled: false }, publish: { enabled: false }, durability: CHECKPOINTS, ...shape }, 'reference');
    const ref = spawn(['run', '--config', refFile]);
    children.push(ref);
    await waitReady(ref);
    await publishAll(url, msgs, 0);
    await waitFor(() => predictionCount(path.join(dir, 'reference.db')) === expected, 120_000, 'the reference run to finish');
    ref.proc.kill('SIGTERM');
    assert.equal(await ref.exit, 0, ref.stderr());

    // Chaos: the same input while the daemon is killed and restarted.
    const chaosFile = writeConfig({ mqtt: { clientId: 'chaos' }, http: { enabled: false }, durability: CHECKPOINTS, ...shape }, 'chaos');
    // A persistent subscriber to the forecasts: the broker keeps them for it across the daemon's kills.
    const published = new Set<string>();
    const listener = await mqtt.connectAsync(url, { clientId: 'chaos-listener', clean: false });
    listener.on('message', (_t, p) => {
      const f = JSON.parse(p.toString()) as { stream: string; model: string; issued_at: string };
      published.add(`${f.stream}|${f.model}|${Date.parse(f.issued_at)}`);
    });
    await listener.subscribeAsync('forecast/#', { qos: 1 });
    const chaosDb = path.join(dir, 'chaos.db');
    const rand = prng(SEED);
    const env = { ...variant.env, ...(variant.inCheckpoint ? { TIDECAST_FAULT_CHECKPOINT_HOLD_MS: '1500' } : {}) };
    let child = spawn(['run', '--config', chaosFile], env);
    children.push(child);
    await waitReady(child); // the persistent session exists before the first message
    const publishing = publishAll(url, msgs, LONG ? 20_000 : 6_000);
    const killedAt: number[] = [];
    let inCheckpoint = 0;
    for (let k = 0; k < KILLS; k++) {
      if (k % 2 === 1) {
        await sleep(rand() * 600); // during start-up or recovery
      } else if (variant.inCheckpoint) {
        // In flow, with a checkpoint transaction open in the writer thread.
        await waitReady(child, 30_000);
        const c = child;
        await waitFor(() => logged(c, HOLDING) !== undefined, 30_000, 'a checkpoint transaction held open');
        await sleep(rand() * 500);
        inCheckpoint++;
      } else {
        // In flow: ready, taking messages, with inputs logged since the last checkpoint.
        await waitReady(child, 30_000);
        await sleep(100 + rand() * 800);
      }
      killedAt.push(predictionCount(chaosDb));
      child.proc.kill('SIGKILL');
      await child.exit;
      if (rand() < 0.5) await sleep(rand() * 400); // messages pile up at the broker meanwhile
      child = spawn(['run', '--config', chaosFile], env);
      children.push(child);
    }
    await publishing;
    await waitReady(child, 30_000);
    await waitFor(() => predictionCount(chaosDb) >= expected, 120_000, `all ${expected} predictions after ${KILLS} kills`);
    child.proc.kill('SIGTERM');
    assert.equal(await child.exit, 0, child.stderr());
    assert.ok(killedAt.some((n) => n > 0 && n < expected), `at least one kill landed mid-stream (predictions at each kill: ${killedAt.join(', ')})`);
    if (variant.inCheckpoint) assert.ok(inCheckpoint >= 2, `kills inside a checkpoint transaction: ${inCheckpoint}`);
    const replays = children.map((c) => Number(logged(c, 'recovered from checkpoint')?.replayedInputs ?? 0));
    assert.ok(replays.some((n) => n > 0), `at least one restart replayed the input log (inputs replayed per start: ${replays.join(', ')})`);
    if (variant.skips) {
      const skipped = children.map((c) => Number(logged(c, 'recovered from checkpoint')?.skippedInputs ?? 0));
      assert.ok(skipped.some((n) => n > 0), `at least one restart skipped inputs its streams' states reflected (per start: ${skipped.join(', ')})`);
    }
    if (variant.eager) {
      const restored = children.map((c) => Number(logged(c, 'recovered from checkpoint')?.restoredStreams ?? 0));
      assert.ok(restored.some((n) => n > 0), `at least one restart restored streams up front (per start: ${restored.join(', ')})`);
    }

    const want = readDb(path.join(dir, 'reference.db'));
    const got = readDb(chaosDb);
    assert.equal(want.preds.length, expected);
    assert.equal(got.preds.length, expected, 'no prediction missing, none twice (the key is unique, so equal counts mean the same rows)');
    let worst = 0;
    let worstBound = 0;
    for (let i = 0; i < expected; i++) {
      const a = want.preds[i]!;
      const b = got.preds[i]!;
      assert.deepEqual([b.stream, b.model, b.issued_at, b.horizon, b.target], [a.stream, a.model, a.issued_at, a.horizon, a.target], `row ${i}`);
      worst = Math.max(worst, Math.abs(a.value - b.value));
      // The prediction intervals too: their state is checkpointed and replayed with the stream's. A bound is
      // rounded to its resolution, so a difference in the last float bit can move it by one unit.
      assert.ok(a.bounds !== null && b.bounds !== null, `row ${i}: intervals stored`);
      const [x, y] = [JSON.parse(a.bounds) as number[], JSON.parse(b.bounds) as number[]];
      assert.equal(y.length, x.length);
      x.forEach((v, k) => (worstBound = Math.max(worstBound, Math.abs(v - y[k]!))));
    }
    assert.ok(worst <= 1e-5, `values match the uninterrupted run within 1e-5 (worst ${worst})`);
    assert.ok(worstBound <= want.unit * 1.000001, `interval bounds match within one unit, ${want.unit} (worst ${worstBound})`);
    assert.ok(want.alerts.length > 0, 'the alert changed state in the reference run');
    assert.deepEqual(got.alerts, want.alerts, 'the same alert changes, each once');
    assert.ok(want.drift.length > 0, 'drift changed state in the reference run');
    assert.deepEqual(got.drift, want.drift, 'the same drift changes, each once');
    assert.equal(got.distinctSteps, msgs.length, 'every input is stored as a step');
    assert.equal(got.steps, msgs.length, 'and only once');
    assert.deepEqual(got.deadLetters, [], 'redeliveries are duplicates, not dead letters');
    const stored = new Set(got.preds.map((p) => `${p.stream}|${p.model}|${p.issued_at}`));
    await waitFor(() => [...stored].every((k) => published.has(k)), 10_000, 'every stored forecast published');
    await listener.endAsync();
  });
}

describe(`kill test (${LONG ? 'long' : 'short'} form: ${STREAMS} streams × ${STEPS} messages, ${KILLS} SIGKILLs)`, () => {
  it('a daemon killed at random moments ends with exactly the predictions of an uninterrupted run', { timeout: LONG ? 600_000 : 180_000 }, () =>
    killTest({ messages: () => telemetry(STREAMS, STEPS) }));

  // SIGKILL while the writer thread is inside a checkpoint transaction: the checkpoint is not there
  // at the next start, the previous one is, and the log (trimmed only after a commit) replays from it.
  it('the same when killed inside a checkpoint transaction of the writer thread', { timeout: LONG ? 600_000 : 180_000 }, () =>
    killTest({ messages: () => telemetry(STREAMS, STEPS), inCheckpoint: true }));

  // Checkpoints written one stream per turn of the event loop while messages flow: each stream's state is
  // stored at its own log position, after the record, and a replay skips what each one already reflects.
  it('the same with incremental checkpoints, one stream per chunk', { timeout: LONG ? 600_000 : 180_000 }, () =>
    killTest({ messages: () => telemetry(STREAMS, STEPS), env: { TIDECAST_FAULT_CHECKPOINT_CHUNK: '1' }, skips: true }));

  // A wall-clock route restores its streams up front at every start and logs clock ticks: the same promise holds.
  // One-second steps (weather-lstm under a card that says so) with event times of the last minutes, and a lateness
  // that keeps the clock from closing a step before its message arrives, so the run is deterministic.
  it('the same on a wall-clock route', { timeout: LONG ? 600_000 : 180_000 }, () =>
    killTest({
      models: (dir) => {
        const card = JSON.parse(readFileSync(defaultCardPath(modelPath('weather-lstm')), 'utf8')) as Record<string, unknown>;
        const file = path.join(dir, 'weather-lstm-1s.card.json');
        writeFileSync(file, JSON.stringify({ ...card, stepSeconds: 1 }));
        return { 'weather-lstm': { path: modelPath('weather-lstm'), card: file } };
      },
      eager: true,
      // Incremental checkpoints here too: a replayed clock tick skips the streams whose state already reflects it.
      env: { TIDECAST_FAULT_CHECKPOINT_CHUNK: '1' },
      routes: [{ ...STATIONS_ROUTE, resample: { emit: 'complete', wallClock: true, latenessMs: 600000 } }],
      messages: () => {
        const base = Math.floor(Date.now() / 1000) - STEPS - 5;
        return telemetry(STREAMS, STEPS).map((m) => {
          const t = Math.round((m.ts - Date.UTC(2015, 0, 1)) / 86_400_000);
          const body = JSON.parse(m.payload) as Record<string, number>;
          return { ...m, ts: (base + t) * 1000, payload: JSON.stringify({ ...body, ts: base + t }) };
        });
      },
    }));
});

