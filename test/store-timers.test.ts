import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { silentLogger } from '../src/log.js';
import { InputLog } from '../src/store/input-log.js';
import { Store } from '../src/store/store.js';
import { ManualClock } from './support/manual-clock.js';

/** The inline writer (':memory:') takes ops on its next turn (setImmediate), not on a timer. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('the store\'s timers on an injected clock', () => {
  it('commits a QoS 0 group after groupMs, not before, and at once when it reaches groupMax', () => {
    const db = new Database(':memory:');
    const clock = new ManualClock();
    const log = new InputLog(db, { lastSeq: 0, groupMs: 5, groupMax: 4, onGroupFailure: (err) => assert.fail(err), clock });
    const groups = (): number[][] => db.prepare('SELECT first_seq, last_seq FROM input_groups ORDER BY first_seq').raw().all() as number[][];
    log.append(0, 1, 'a', Buffer.from('1'), false);
    clock.advance(2);
    log.append(0, 2, 'a', Buffer.from('2'), false);
    assert.equal(clock.pending, 1, 'one timer for the group, from its first input');
    clock.advance(2);
    assert.deepEqual(groups(), [], 'nothing written before 5 ms');
    clock.advance(1);
    assert.deepEqual(groups(), [[1, 2]]);
    assert.equal(log.pending, 0);
    assert.equal(clock.pending, 0);
    for (let i = 3; i <= 6; i++) log.append(0, i, 'a', Buffer.from(String(i)), false);
    assert.deepEqual(groups(), [[1, 2], [3, 6]], 'a full group is written without waiting');
    assert.equal(clock.pending, 0, 'and its timer is cleared');
    // A durable input takes the pending group with it, and clears its timer.
    log.append(0, 7, 'a', Buffer.from('7'), false);
    log.append(0, 8, 'a', Buffer.from('8'), true);
    assert.deepEqual(groups(), [[1, 2], [3, 6], [7, 7]]);
    assert.equal(clock.pending, 0);
    db.close();
  });

  it('gathers dead letters for 50 ms into one write, or hands 256 on at once', async () => {
    const clock = new ManualClock();
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger, clock });
    s.start();
    const count = (): number => (s.db.prepare('SELECT count(*) AS n FROM dead_letters').get() as { n: number }).n;
    const row = (i: number) => ({ receivedAt: i, topic: `t/${i}`, reason: 'bad_json', detail: 'x', payload: Buffer.from('{'), payloadBytes: 1 });
    for (let i = 0; i < 3; i++) s.addDeadLetter(row(i));
    clock.advance(49);
    await turn();
    await turn();
    assert.equal(count(), 0, 'still gathering at 49 ms');
    clock.advance(1);
    await turn();
    await turn();
    assert.equal(count(), 3, 'written at 50 ms, with no other op to push them');
    for (let i = 3; i < 3 + 256; i++) s.addDeadLetter(row(i));
    await turn();
    await turn();
    assert.equal(count(), 259, 'a full gathering goes without its timer');
    assert.equal(clock.pending, 0);
    await s.stop();
  });
});
