import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Checkpointer, type CheckpointStore } from '../src/daemon/checkpointer.js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics/metrics.js';
import { ManualClock } from './support/manual-clock.js';
import { messagePath } from './support/message-path.js';

const DAY = 86_400_000;

/** Streams of the shipped LSTM in a real store, checkpointed on a manual clock; `faults.failing` makes the store refuse writes. */
async function setup(idleTtlS = 0) {
  const clock = new ManualClock(Date.UTC(2024, 0, 1));
  const { store, engine, scores, routeModel: rm, residency, admission, dispatcher, close: closePath } = await messagePath(clock);
  let seq = 0;
  /** A day of one station: logged, then applied, as the intake does. */
  const feed = async (station: string, day: number): Promise<void> => {
    const payload = Buffer.from(JSON.stringify({ precipitation: 1, temp_max: 10, temp_min: 2, wind: 4, date: new Date(Date.UTC(2024, 0, 1) + day * DAY).toISOString() }));
    seq = store.appendInput(0, clock.now(), `w/${station}`, payload);
    const a = admission.admit(`w/${station}`, payload, clock.now());
    assert.ok(a.ok);
    dispatcher.apply(a, seq);
    await engine.drain();
  };
  const faults = { failing: false, unpublished: 0 };
  const checkpointStore: CheckpointStore = {
    get failing() {
      return faults.failing;
    },
    get failure() {
      return faults.failing ? new Error('disk full') : null;
    },
    writePacked: (at, packs) => store.writePacked(at, packs),
    writeCheckpoint: (from, rows) => store.writeCheckpoint(from, rows),
  };
  const checkpointer = new Checkpointer({
    store: checkpointStore,
    streams: residency,
    position: () => seq,
    scores: new Map([[rm.name, scores]]),
    unpublished: () => faults.unpublished,
    intervalS: 30,
    idleTtlS,
    clock,
    metrics: new Metrics({ models: () => [], brokerConnected: () => true, reliability: () => ({ holding: null, storeFailing: false, residentStreams: 0, logBacklog: 0 }) }),
    log: silentLogger,
  });
  const close = async (): Promise<void> => {
    checkpointer.stop();
    await closePath();
  };
  return { clock, store, residency, feed, faults, checkpointer, close, seq: () => seq };
}

/** Let a checkpoint started by a timer finish (it yields to the event loop between chunks, and waits on the writer). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

describe('Checkpointer', () => {
  it('checkpoints every intervalS on its clock, at the log position of the last input applied', async () => {
    const t = await setup();
    try {
      await t.feed('a', 0);
      await t.feed('b', 0);
      t.checkpointer.start();
      t.clock.advance(29_999);
      await settle();
      assert.equal(t.store.checkpointSeq(), 0, 'not before the interval');
      t.clock.advance(1);
      await settle();
      assert.equal(t.store.checkpointSeq(), t.seq());
      assert.equal(t.checkpointer.seq, t.seq());
      assert.deepEqual([...t.store.residentStreams(['weather-lstm'])].map((r) => r.stream).sort(), ['a', 'b'], 'both streams written resident');
    } finally {
      await t.close();
    }
  });

  it('is postponed while the store cannot write, and while forecasts recovery recomputed wait for the broker', async () => {
    const t = await setup();
    try {
      await t.feed('a', 0);
      t.faults.failing = true;
      assert.equal(await t.checkpointer.checkpoint(), false);
      t.faults.failing = false;
      t.faults.unpublished = 3;
      assert.equal(await t.checkpointer.checkpoint(), false);
      assert.equal(t.store.checkpointSeq(), 0, 'the input log keeps everything');
      t.faults.unpublished = 0;
      assert.equal(await t.checkpointer.checkpoint(), true);
      assert.equal(t.store.checkpointSeq(), t.seq());
    } finally {
      await t.close();
    }
  });

  it('spills streams idle past limits.idleTtlS: written, then out of memory; a busy one stays', async () => {
    const t = await setup(60);
    try {
      await t.feed('idle', 0);
      t.clock.advance(61_000);
      await t.feed('busy', 1);
      assert.equal(await t.checkpointer.checkpoint(), true);
      assert.equal(t.residency.residentStreams, 2, 'changed since the last checkpoint: written resident first');
      await t.feed('busy', 2);
      assert.equal(await t.checkpointer.checkpoint(), true);
      assert.equal(t.residency.residentStreams, 1);
      assert.equal(t.residency.counts.evicted, 1);
      assert.ok(t.store.loadStream('weather-lstm', 'idle'), 'its state is in the store');
    } finally {
      await t.close();
    }
  });

  it('joins a checkpoint already running instead of starting a second', async () => {
    const t = await setup();
    try {
      await t.feed('a', 0);
      const first = t.checkpointer.checkpoint();
      assert.equal(t.checkpointer.checkpoint(), first);
      assert.equal(await first, true);
    } finally {
      await t.close();
    }
  });
});
