import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { silentLogger } from '../src/log.js';
import { Store, latestPredictions } from '../src/store/store.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { tempDir } from './helpers.js';

const DAY = 86_400_000;

describe('SQLite store', () => {
  it('migrates to the latest user_version once, in WAL mode', () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 't.db');
    const a = new Store({ path: file, retentionDays: 30, log: silentLogger });
    a.start();
    assert.equal(a.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.equal(a.db.pragma('journal_mode', { simple: true }), 'wal');
    a.stop();
    a.stop(); // idempotent
    const b = new Store({ path: file, retentionDays: 30, log: silentLogger });
    b.start(); // no migration re-run on an up-to-date file
    assert.equal(b.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    b.stop();
    tmp.remove();
  });

  it('commits steps and predictions in one batch; a step shared by two models is stored once', () => {
    let now = 10 * DAY;
    const s = new Store({ path: ':memory:', retentionDays: 2, log: silentLogger, now: () => now });
    s.start();
    const step = { stream: 'a', route: 'r', ts: 9 * DAY, receivedAt: 9 * DAY, topic: 't/a', values: { x: 1 }, filled: [] };
    const pred = (model: string, issuedAt: number, value: number) => ({ stream: 'a', model, issuedAt, horizon: 1, target: 'x', targetTime: issuedAt + DAY, value });
    s.commit('m1', [step], [pred('m1', 9 * DAY, 1.5)]);
    s.commit('m2', [step], [pred('m2', 9 * DAY, 2.5)]);
    s.commit('m1', [{ ...step, ts: 5 * DAY }], [pred('m1', 5 * DAY, 0.5)]);
    assert.equal((s.db.prepare('SELECT count(*) n FROM steps').get() as { n: number }).n, 2);
    assert.equal((s.db.prepare('SELECT steps FROM streams').get() as { steps: number }).steps, 2);
    assert.deepEqual(latestPredictions(s.db, { stream: 'a', limit: 2 }).map((p) => [p.model, p.value]), [['m1', 1.5], ['m2', 2.5]]);
    // The schema refuses a non-finite value even if one slipped past the engine.
    assert.throws(() => s.commit('m1', [], [pred('m1', 8 * DAY, NaN)]), /NOT NULL/);
    assert.throws(() => s.commit('m1', [], [pred('m1', 8 * DAY, Infinity)]), /CHECK/);
    now = 10 * DAY;
    assert.deepEqual(s.prune(), { predictions: 1, forecast_errors: 0, steps: 1, events: 0, dead_letters: 0 });
    s.stop();
  });

  it('answers "latest N predictions of a stream" from an index', () => {
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger });
    s.start();
    const plan = s.db
      .prepare('EXPLAIN QUERY PLAN SELECT * FROM predictions WHERE stream = ? ORDER BY issued_at DESC LIMIT 10')
      .all('a') as Array<{ detail: string }>;
    const text = plan.map((p) => p.detail).join('; ');
    assert.match(text, /USING INDEX predictions_by_stream_time/);
    assert.doesNotMatch(text, /TEMP B-TREE/);
    s.stop();
  });
});
