import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../src/log.js';
import { openDatabase } from '../src/store/database.js';
import { WriterCore } from '../src/store/writer.js';
import type { WriterReply } from '../src/store/writer-messages.js';
import { ManualClock } from './support/manual-clock.js';

/** Ops taken together run on the writer's next turn (setImmediate), not on a timer. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

const deadLetter = (n: number) => ({ receivedAt: n, topic: `t/${n}`, reason: 'bad_json', detail: 'x', payload: Buffer.alloc(64 * 1024, n), payloadBytes: 64 * 1024 });

/** A writer on a real SQLite database whose disk is full: it may not grow by a page (a real SQLITE_FULL). */
function fullDisk() {
  const db = openDatabase({ path: ':memory:', log: silentLogger });
  const clock = new ManualClock();
  const replies: WriterReply[] = [];
  const writer = new WriterCore(db, (r) => replies.push(r), { clock });
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  const deadLetters = (): number => (db.prepare('SELECT count(*) AS n FROM dead_letters').get() as { n: number }).n;
  return { db, clock, replies, writer, deadLetters, makeRoom: () => db.pragma('max_page_count = 1073741823') };
}

describe('the writer queue (WriterCore)', () => {
  it('keeps an op that meets a full disk and every op after it, in order, says failing once, and writes them all once there is room', async () => {
    const w = fullDisk();
    w.writer.receive({ id: 1, op: 'deadLetters', rows: [deadLetter(1)] });
    w.writer.receive({ id: 2, op: 'event', row: { at: 2, stream: 's', model: null, kind: 'gap_reset', detail: 'after the full one' } });
    await turn();
    assert.deepEqual(w.replies.map((r) => r.kind), ['failing']);
    assert.match(JSON.stringify(w.replies[0]), /SQLITE_FULL/);
    w.clock.advance(30_000);
    assert.deepEqual(w.replies.map((r) => r.kind), ['failing'], 'retried meanwhile, still full: nothing more to say');
    assert.equal(w.deadLetters(), 0);
    w.makeRoom();
    w.clock.advance(5_000);
    assert.deepEqual(w.replies.map((r) => r.kind), ['failing', 'done', 'done', 'recovered']);
    assert.deepEqual(w.replies.filter((r) => r.kind === 'done').map((r) => (r as { id: number }).id), [1, 2], 'in the order they came');
    assert.equal(w.deadLetters(), 1);
    w.db.close();
  });

  it('retries after 100, 200, 400 … ms, at most 5 s apart, and from 100 ms again after a recovery', async () => {
    const w = fullDisk();
    w.writer.receive({ id: 1, op: 'deadLetters', rows: [deadLetter(1)] });
    await turn();
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const d = w.clock.nextDue! - w.clock.now();
      delays.push(d);
      w.clock.advance(d);
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    w.makeRoom();
    w.clock.advance(5000);
    assert.equal(w.clock.pending, 0, 'written: no retry waits');
    w.db.pragma(`max_page_count = ${w.db.pragma('page_count', { simple: true }) as number}`);
    w.writer.receive({ id: 2, op: 'deadLetters', rows: [deadLetter(2)] });
    await turn();
    assert.equal(w.clock.nextDue! - w.clock.now(), 100);
    w.db.close();
  });

  it('answers a stop with the ops it could not write (the input log replays their inputs at the next start)', async () => {
    const w = fullDisk();
    w.writer.receive({ id: 1, op: 'deadLetters', rows: [deadLetter(1)] });
    w.writer.receive({ id: 2, op: 'deadLetters', rows: [deadLetter(2)] });
    await turn();
    w.writer.receive({ id: 3, op: 'stop' });
    assert.deepEqual(w.replies.at(-1), { kind: 'done', id: 3, result: 2 });
    assert.equal(w.clock.pending, 0, 'no retry left behind');
    w.db.close();
  });
});
