import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Intake, type HoldReason, type IntakeStore } from '../src/daemon/intake.js';
import { silentLogger } from '../src/log.js';
import type { Ack, IncomingMessage } from '../src/mqtt/mqtt-connection.js';
import { ManualClock } from './support/manual-clock.js';
import { messagePath } from './support/message-path.js';

const DAY = 86_400_000;

/** The real path behind the intake (admission, dispatch, the shipped LSTM, a SQLite store), on a manual clock. */
async function pipeline(opts: { wallClock?: boolean } = {}) {
  const clock = new ManualClock(Date.UTC(2024, 0, 1));
  const { store, dispatcher, refusals, admission, close: closePath } = await messagePath(clock, opts);
  // The store as the intake sees it, with faults to inject: `failures` appends throw, and `failing` says the store is down.
  const faults = { failures: 0, failing: false, appends: [] as number[] };
  const intakeStore: IntakeStore = {
    get failing() {
      return faults.failing || store.failing;
    },
    appendInput(kind, receivedAt, topic, payload, durable, redelivered) {
      faults.appends.push(clock.now());
      if (faults.failures > 0) {
        faults.failures--;
        throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
      }
      return store.appendInput(kind, receivedAt, topic, payload, durable, redelivered);
    },
    refuse: (row, durable) => store.refuse(row, durable),
    reportSuccess: () => store.reportSuccess(),
    reportFailure: () => undefined,
  };
  const state = { busy: null as HoldReason | null, holds: [] as HoldReason[] };
  const intake = new Intake({ admission, dispatcher, store: intakeStore, busy: () => state.busy, onHold: (r) => state.holds.push(r), sweepIntervalMs: 1000, clock, log: silentLogger });
  const close = async (): Promise<void> => {
    intake.stop();
    await closePath();
  };
  return { clock, store, dispatcher, refusals, intake, faults, state, close };
}

const reading = (station: string, at: number): IncomingMessage => ({
  topic: `w/${station}`,
  payload: Buffer.from(JSON.stringify({ precipitation: 0, temp_max: 12, temp_min: 4, wind: 3 })),
  qos: 1,
  receivedAt: at,
});

/** An ack that counts, and can go stale (its connection closed). */
function ackProbe(): Ack & { acks: number; close(): void } {
  let stale = false;
  return {
    acks: 0,
    get stale() {
      return stale;
    },
    ack() {
      if (!stale) this.acks++;
    },
    close() {
      stale = true;
    },
  };
}

describe('Intake', () => {
  let p: Awaited<ReturnType<typeof pipeline>>;
  before(async () => void (p = await pipeline()));
  after(async () => p.close());

  it('logs, applies and acknowledges an admitted message at once', () => {
    const ack = ackProbe();
    const seq = p.intake.lastSeq;
    p.intake.offer(reading('a', p.clock.now()), ack);
    assert.equal(ack.acks, 1);
    assert.equal(p.intake.lastSeq, seq + 1, 'logged before its acknowledgement');
    assert.equal(p.dispatcher.accepted.get('route0'), 1);
    assert.equal(p.intake.holding, null);
  });

  it('acknowledges a refused message once its dead letter is logged', () => {
    const ack = ackProbe();
    p.intake.offer({ ...reading('a', p.clock.now()), topic: 'nowhere' }, ack);
    assert.equal(ack.acks, 1);
    assert.equal(p.refusals.counts.get('no_route'), 1);
  });

  it('holds a message unacknowledged while the pipeline is busy, and lets it go within 5 ms of room', () => {
    const ack = ackProbe();
    p.state.busy = 'queue_full';
    p.intake.offer(reading('b', p.clock.now()), ack);
    assert.equal(ack.acks, 0);
    assert.equal(p.intake.holding, 'queue_full');
    assert.deepEqual(p.state.holds.slice(-1), ['queue_full']);
    p.clock.advance(50);
    assert.equal(ack.acks, 0, 'still busy: still held');
    p.state.busy = null;
    p.clock.advance(5);
    assert.equal(ack.acks, 1);
    assert.equal(p.intake.holding, null);
  });

  it('retries a message the store could not log with doubling delays (50 ms up to 2 s), then acknowledges it', () => {
    const ack = ackProbe();
    p.faults.appends.length = 0;
    p.faults.failures = 6;
    const t0 = p.clock.now();
    p.intake.offer(reading('c', t0), ack);
    assert.equal(p.intake.holding, 'store');
    p.clock.advance(5_000);
    assert.equal(ack.acks, 1);
    assert.deepEqual(p.faults.appends.map((t) => t - t0), [0, 50, 150, 350, 750, 1550, 3150]);
  });

  it('drops a held message whose connection closed: the broker redelivers it, it is not acknowledged twice', () => {
    const ack = ackProbe();
    p.state.busy = 'reload';
    p.intake.offer(reading('d', p.clock.now()), ack);
    ack.close();
    p.state.busy = null;
    const seq = p.intake.lastSeq;
    p.clock.advance(10);
    assert.equal(ack.acks, 0);
    assert.equal(p.intake.holding, null);
    assert.equal(p.intake.lastSeq, seq, 'nothing logged for it');
  });

  it('takes nothing once stopped: the message stays with the broker', () => {
    const q = ackProbe();
    p.intake.stop();
    p.intake.offer(reading('e', p.clock.now()), q);
    assert.equal(q.acks, 0);
  });
});

describe('the clock sweep', () => {
  it('closes a wall-clock stream\'s step once its time has passed, logging the tick first so a replay closes it at the same point', async () => {
    const p = await pipeline({ wallClock: true });
    try {
      p.intake.start();
      p.intake.offer(reading('s', p.clock.now()), ackProbe());
      const seq = p.intake.lastSeq;
      assert.equal(p.dispatcher.steps.submitted, 0, 'the day is still open');
      p.clock.advance(DAY - 2000);
      assert.equal(p.intake.lastSeq, seq, 'no tick logged while no step is due');
      p.clock.advance(2000);
      assert.equal(p.dispatcher.steps.submitted, 1, 'the tick closed the day');
      assert.equal(p.intake.lastSeq, seq + 1, 'the tick is in the input log');
      const logged = p.store.inputAfter(seq, 10);
      assert.deepEqual(logged.map((r) => r.kind), [1]);
      p.state.busy = 'queue_full';
      p.intake.offer(reading('s', p.clock.now()), ackProbe());
      p.clock.advance(2 * DAY);
      assert.equal(p.dispatcher.steps.submitted, 1, 'no tick while the pipeline is busy');
      p.state.busy = null;
      p.clock.advance(1000);
      assert.ok(p.dispatcher.steps.submitted > 1, 'the next tick catches up');
    } finally {
      await p.close();
    }
  });
});

describe('Intake: redeliveries', () => {
  it('takes a redelivered message (DUP) for a step long closed as a duplicate, not as late, and a replay of the log judges it the same', async () => {
    const live = await pipeline();
    const replayed = await pipeline();
    try {
      const t0 = live.clock.now();
      for (let d = 0; d < 20; d++) live.intake.offer(reading('r', t0 + d * DAY), ackProbe());
      const lateCount = (p: typeof live): number => (p.store.db.prepare("SELECT count(*) AS n FROM dead_letters WHERE reason = 'late'").get() as { n: number }).n;
      // Day 2 again, 17 steps behind: past the sample keys the assembler remembers (RECENT_BUCKETS).
      const ack = ackProbe();
      live.intake.offer({ ...reading('r', t0 + 2 * DAY), dup: true }, ack);
      assert.equal(ack.acks, 1);
      assert.equal(live.dispatcher.duplicates, 1, 'a duplicate');
      // The same message as a first delivery is late: a dead letter.
      live.intake.offer(reading('r', t0 + 2 * DAY), ackProbe());
      assert.equal(live.dispatcher.duplicates, 1);
      await live.store.settled();
      assert.equal(lateCount(live), 1, 'only the first delivery is dead-lettered');
      // Recovery replays the log: the redelivery keeps its mark, so the same verdicts.
      const rows = live.store.inputAfter(0, 1000);
      assert.deepEqual(rows.map((r) => r.note ?? null).filter((n) => n !== null), ['redelivered']);
      for (const r of rows) replayed.dispatcher.replay(r.seq, r.kind, r.topic, r.payload, r.receivedAt, r.note);
      await replayed.store.settled();
      assert.equal(replayed.dispatcher.duplicates, 1);
      assert.equal(lateCount(replayed), 1);
    } finally {
      await live.close();
      await replayed.close();
    }
  });
});
