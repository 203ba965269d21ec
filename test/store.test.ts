import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { clockWithNow } from '../src/clock.js';
import { silentLogger } from '../src/log.js';
import { Store, latestPredictions, type ForecastLayout, type ForecastRow, type StoredPrediction } from '../src/store/store.js';
import { STREAM_LOOKUP_SQL } from '../src/http/dashboard-api.js';
import { rollingAccuracySql } from '../src/store/accuracy.js';
import { LATEST_OF_STREAM_SQL, LATEST_SQL } from '../src/store/queries.js';
import { PRUNE_SQL } from '../src/store/retention.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { COMPACT_VIEWS } from '../src/store/schema-7.js';
import { INTERVAL_VIEWS, INTERVAL_VIEW_NAMES } from '../src/store/schema-11.js';
import { float32Text, packBoundInts } from '../src/store/codec.js';
import { InputLog, type InputRow } from '../src/store/input-log.js';
import { tempDir } from './support/temp-dir.js';

const DAY = 86_400_000;
const LAYOUT: ForecastLayout = { stepMs: DAY, cells: [[1, 'x', 0]] };
const FEATURES = ['x', 'y'];

describe('SQLite store', () => {
  it('gathers dead letters into one write, in order with other writes, and prunes the oldest past store.deadLetterMaxMiB', async () => {
    const tmp = tempDir();
    const s = new Store({ path: path.join(tmp.dir, 'dl.db'), retentionDays: 30, deadLetterMaxMiB: 0.5, log: silentLogger, clock: clockWithNow(() => 1000) });
    s.start();
    const payload = Buffer.alloc(1024, 0x7b);
    for (let i = 0; i < 2000; i++) s.addDeadLetter({ stream: `s${i % 7}`, receivedAt: 1000 + i, topic: `t/${i}`, reason: 'bad_json', detail: 'Unexpected token', payload, payloadBytes: 60_000 });
    await s.settled();
    const count = (): number => (s.db.prepare('SELECT count(*) n FROM dead_letters').get() as { n: number }).n;
    assert.equal(count(), 2000, 'all written before the barrier that followed them');
    // Each row's size, as the cap counts it: its columns and about 64 bytes of record and index.
    const rowBytes = 1024 + 't/1999'.length + 'Unexpected token'.length + 's0'.length + 64;
    const pruned = await s.prune();
    const kept = count();
    assert.equal(pruned.dead_letters, 2000 - kept);
    assert.ok(kept * rowBytes <= 0.5 * 1024 * 1024 && (kept + 1) * (rowBytes - 1) > 0.5 * 1024 * 1024, `kept ${kept} of 2000 rows of about ${rowBytes} bytes under 0.5 MiB`);
    const oldest = (s.db.prepare('SELECT min(received_at) t, max(received_at) u FROM dead_letters').get() as { t: number; u: number });
    assert.deepEqual(oldest, { t: 1000 + 2000 - kept, u: 2999 }, 'the newest are kept');
    await s.stop();
    tmp.remove();
  });

  it('forecast_errors finds both of a forecast cell\'s steps by primary key (no automatic index: the persistence join through one was quadratic)', async () => {
    const tmp = tempDir();
    const s = new Store({ path: path.join(tmp.dir, 't.db'), retentionDays: 30, log: silentLogger });
    s.start();
    const plan = (s.db.prepare('EXPLAIN QUERY PLAN SELECT * FROM forecast_errors').all() as Array<{ detail: string }>).map((r) => r.detail);
    assert.equal(plan.filter((d) => /SEARCH i USING PRIMARY KEY \(ts=\? AND sid=\?\)/.test(d)).length, 2, plan.join('\n'));
    assert.ok(!plan.some((d) => /AUTOMATIC/.test(d)), plan.join('\n'));
    await s.stop();
    tmp.remove();
  });

  it('migrates to the latest user_version once, in WAL mode', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 't.db');
    const a = new Store({ path: file, retentionDays: 30, log: silentLogger });
    a.start();
    assert.equal(a.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.equal(a.db.pragma('journal_mode', { simple: true }), 'wal');
    await a.stop();
    await a.stop(); // idempotent
    const b = new Store({ path: file, retentionDays: 30, log: silentLogger });
    b.start(); // no migration re-run on an up-to-date file
    assert.equal(b.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    await b.stop();
    tmp.remove();
  });

  it('commits steps and forecasts in one batch, one row each; a step shared by two models is stored once; the views show them as before', async () => {
    let now = 10 * DAY;
    const s = new Store({ path: ':memory:', retentionDays: 2, log: silentLogger, clock: clockWithNow(() => now) });
    s.start();
    const step = { stream: 'a', route: 'r', ts: 9 * DAY, receivedAt: 9 * DAY, features: FEATURES, values: { x: 1, y: 2 }, filled: ['y'] };
    const fc = (issuedAt: number, value: number) => ({ stream: 'a', issuedAt, values: [value], labels: null });
    assert.deepEqual(await s.commit('m1', LAYOUT, [step], [fc(9 * DAY, 1.5)]), [true]);
    assert.deepEqual(await s.commit('m2', LAYOUT, [step], [fc(9 * DAY, 2.5)]), [true]);
    assert.deepEqual(await s.commit('m1', LAYOUT, [{ ...step, ts: 5 * DAY, filled: [] }], [fc(5 * DAY, 0.5)]), [true]);
    assert.deepEqual(await s.commit('m1', LAYOUT, [], [fc(9 * DAY, 7)]), [false], 'a replayed forecast is not stored twice');
    assert.equal((s.db.prepare('SELECT count(*) n FROM step_inputs').get() as { n: number }).n, 2);
    assert.equal((s.db.prepare('SELECT count(*) n FROM forecasts').get() as { n: number }).n, 3);
    assert.deepEqual(s.db.prepare('SELECT id, route, steps, last_seen FROM streams').all(), [{ id: 'a', route: 'r', steps: 2, last_seen: 9 * DAY }]);
    assert.deepEqual(s.db.prepare('SELECT stream, ts, values_json, filled FROM steps ORDER BY ts').all(), [
      { stream: 'a', ts: 5 * DAY, values_json: '{"x":1,"y":2}', filled: '' },
      { stream: 'a', ts: 9 * DAY, values_json: '{"x":1,"y":2}', filled: 'y' },
    ]);
    assert.deepEqual(latestPredictions(s.db, { stream: 'a', limit: 2 }).map((p) => [p.model, p.value, p.targetTime]), [['m1', 1.5, 10 * DAY], ['m2', 2.5, 10 * DAY]]);
    // forecast_errors joins a forecast with the actual at its target time (m1's day-5 forecast of day 6: no step, no error).
    await s.commit('m1', LAYOUT, [{ ...step, ts: 6 * DAY, filled: [] }], []);
    assert.deepEqual(s.db.prepare('SELECT model, issued_at, predicted, actual, persistence FROM forecast_errors').all(), [{ model: 'm1', issued_at: 5 * DAY, predicted: 0.5, actual: 1, persistence: 1 }]);
    // The schema refuses a non-finite value even if one slipped past the engine: the batch is refused, nothing of it stored, and counted.
    let dropped = 0;
    s.onDropped = () => dropped++;
    assert.equal(await s.commit('m1', LAYOUT, [{ ...step, ts: 8 * DAY }], [fc(8 * DAY, NaN)]), null);
    assert.equal(await s.commit('m1', LAYOUT, [], [fc(8 * DAY, Infinity)]), null);
    assert.equal(dropped, 2, 'each refused batch reported (tidecast_store_dropped_total)');
    assert.equal((s.db.prepare('SELECT count(*) n FROM forecasts').get() as { n: number }).n, 3);
    assert.equal((s.db.prepare('SELECT count(*) n FROM step_inputs').get() as { n: number }).n, 3, 'the refused batch\'s step neither');
    now = 10 * DAY;
    assert.deepEqual(await s.prune(), { forecasts: 1, steps: 2, accuracy: 0, events: 0, dead_letters: 0 });
    await s.stop();
  });

  it('packs bound integers as Buffer.writeInt16LE / writeInt32LE would, the width the widest needs; its Buffer is written over by the next call', () => {
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 30);
      const wide = trial % 3 === 0;
      const ints = Float64Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * (wide ? 2 ** 31 - 1 : 2 ** 15 - 1)) - (rand() < 0.05 ? 1 : 0));
      const width = ints.every((x) => x >= -0x8000 && x <= 0x7fff) ? 2 : 4;
      const want = Buffer.alloc(1 + n * width);
      want[0] = width;
      ints.forEach((x, i) => (width === 2 ? want.writeInt16LE(x, 1 + 2 * i) : want.writeInt32LE(x, 1 + 4 * i)));
      assert.deepEqual(Buffer.from(packBoundInts(ints, n)!), want, `trial ${trial}: ${Array.from(ints).join(',')}`);
    }
    const first = packBoundInts(Float64Array.from([1, -1]), 2)!;
    const copy = Buffer.from(first);
    packBoundInts(Float64Array.from([-32768, 32767]), 2);
    assert.notDeepEqual(Buffer.from(first), copy, 'the same Buffer, written over');
    assert.equal(packBoundInts(Float64Array.from([1, NaN]), 2), null);
    assert.equal(packBoundInts(Float64Array.from([2 ** 31]), 1), null);
  });

  it('stores interval bounds as integers at their cell\'s scale; the views divide them back; a cell without intervals is null, a non-finite bound leaves the forecast without', async () => {
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger, clock: clockWithNow(() => DAY) });
    s.start();
    // Two numeric cells at different scales and a classification cell (no intervals).
    const layout: ForecastLayout = { stepMs: DAY, cells: [[1, 'x', 0, [0.8, 0.95], 100], [1, 'y', 0, [0.8, 0.95], 1], [1, 'c', 1]] };
    const step = { stream: 'a', route: 'r', ts: 0, receivedAt: 0, features: FEATURES, values: { x: 1, y: 2 }, filled: [] };
    const labels: ForecastRow['labels'] = [null, null, ['wet', { wet: 0.75, dry: 0.25 }]];
    const bounds = Float64Array.from([-1.25, 3.5, -20000.07, 1e6, -12, 40, -100, 123457, NaN, NaN, NaN, NaN]);
    assert.deepEqual(await s.commit('m', layout, [step], [{ stream: 'a', issuedAt: 0, values: [1, 2, 0.75], labels, bounds }]), [true]);
    // Four bytes a bound (-2000007 does not fit in two), little-endian, per cell and level; zeros for the classification cell.
    const stored = (s.db.prepare('SELECT bounds FROM forecasts').get() as { bounds: Buffer }).bounds;
    const ints = [-125, 350, -2000007, 100000000, -12, 40, -100, 123457, 0, 0, 0, 0];
    assert.deepEqual(stored, Buffer.concat([Buffer.from([4]), ...ints.map((x) => { const b = Buffer.alloc(4); b.writeInt32LE(x); return b; })]));
    const rows = s.db.prepare('SELECT target, level, lower, upper FROM prediction_intervals ORDER BY target, level').all();
    assert.deepEqual(rows, [
      { target: 'x', level: 0.8, lower: -1.25, upper: 3.5 },
      { target: 'x', level: 0.95, lower: -20000.07, upper: 1e6 },
      { target: 'y', level: 0.8, lower: -12, upper: 40 },
      { target: 'y', level: 0.95, lower: -100, upper: 123457 },
    ]);
    assert.deepEqual(s.db.prepare("SELECT bounds FROM predictions WHERE target = 'c'").get(), { bounds: null });
    // Two bytes a bound when every one fits.
    const narrow = Float64Array.from([-1.25, 3.5, -327.68, 327.67, -12, 40, -32768, 32767, NaN, NaN, NaN, NaN]);
    assert.deepEqual(await s.commit('m', layout, [{ ...step, ts: 2 * DAY }], [{ stream: 'a', issuedAt: 2 * DAY, values: [1, 2, 0.75], labels, bounds: narrow }]), [true]);
    assert.equal((s.db.prepare('SELECT bounds FROM forecasts WHERE issued_at = ?').get(2 * DAY) as { bounds: Buffer }).bounds.length, 1 + 12 * 2);
    assert.deepEqual(s.db.prepare("SELECT json_extract(bounds, '$') AS b FROM predictions WHERE issued_at = ? AND target != 'c' ORDER BY target").all(2 * DAY), [{ b: '[-1.25,3.5,-327.68,327.67]' }, { b: '[-12.0,40.0,-32768.0,32767.0]' }]);
    // A bound that is not finite is never stored as a number: that forecast is stored without intervals.
    const broken = Float64Array.from([1, Infinity, 0, 2, 0, 1, 0, 2, NaN, NaN, NaN, NaN]);
    assert.deepEqual(await s.commit('m', layout, [{ ...step, ts: DAY }], [{ stream: 'a', issuedAt: DAY, values: [1, 2, 0.75], labels, bounds: broken }]), [true]);
    assert.deepEqual(s.db.prepare('SELECT bounds FROM forecasts WHERE issued_at = ?').get(DAY), { bounds: null });
    await s.stop();
  });

  it('a forecast layout crosses to the writer thread once, under a number: an equal layout (a reload builds one) takes its number, another layout its own, each batch stored by its own', async () => {
    const tmp = tempDir();
    const s = new Store({ path: path.join(tmp.dir, 'layouts.db'), retentionDays: 30, log: silentLogger, clock: clockWithNow(() => DAY) });
    s.start();
    try {
      const cells = (scale: number): ForecastLayout['cells'] => [[1, 'x', 0, [0.8], scale]];
      const [a, again, other] = [{ stepMs: DAY, cells: cells(100) }, { stepMs: DAY, cells: cells(100) }, { stepMs: DAY, cells: cells(1) }];
      const bounds = Float64Array.from([-1.25, 3.5]);
      const commit = (layout: ForecastLayout, day: number): Promise<boolean[] | null> =>
        s.commit('m', layout, [{ stream: 'a', route: 'r', ts: day * DAY, receivedAt: 0, features: FEATURES, values: { x: 1 }, filled: [] }], [{ stream: 'a', issuedAt: day * DAY, values: [1], labels: null, bounds }]);
      for (const [layout, day] of [[a, 0], [again, 1], [other, 2], [a, 3], [again, 4], [other, 5]] as const) assert.deepEqual(await commit(layout, day), [true], `day ${day}`);
      const rows = s.db.prepare('SELECT issued_at / ? AS day, lid, lower, upper FROM forecasts JOIN prediction_intervals USING (issued_at) ORDER BY day').all(DAY) as Array<{ day: number; lid: number; lower: number; upper: number }>;
      assert.deepEqual(rows.map((r) => [r.day, r.lower, r.upper]), [[0, -1.25, 3.5], [1, -1.25, 3.5], [2, -1, 4], [3, -1.25, 3.5], [4, -1.25, 3.5], [5, -1, 4]], 'each at its layout\'s scale (1/100, then whole units)');
      assert.equal(new Set(rows.filter((r) => r.day % 3 !== 2).map((r) => r.lid)).size, 1, 'equal layouts: one id');
      assert.equal((s.db.prepare('SELECT count(*) n FROM forecast_layouts').get() as { n: number }).n, 2);
    } finally {
      await s.stop();
      tmp.remove();
    }
  });

  it("finds a stream's id by the main thread's slot and its generation: by name only for a slot generation it has not seen", async () => {
    const s = new Store({ path: ':memory:', retentionDays: 36500, log: silentLogger });
    s.start();
    const { streamRef } = await import('../src/store/rows.js');
    const ref = streamRef(3, 7);
    const step = (stream: string, ts: number, gen: number) => ({ stream, ref, gen, route: 'r', ts, receivedAt: ts, features: FEATURES, values: { x: 1, y: 2 }, filled: [] });
    const fc = (stream: string, issuedAt: number, gen: number, value = 1) => ({ stream, ref, gen, issuedAt, values: [value], labels: null });
    await s.commit('m1', LAYOUT, [step('a', DAY, 1)], [fc('a', DAY, 1)]);
    // The same slot generation: the rows go to stream a whatever name they carry (the name is not read).
    await s.commit('m1', LAYOUT, [step('not-a', 2 * DAY, 1)], [fc('not-a', 2 * DAY, 1)]);
    // The slot released and taken by stream b (generation 2): found by name, a new stream.
    await s.commit('m1', LAYOUT, [step('b', 3 * DAY, 2)], [fc('b', 3 * DAY, 2)]);
    // A refused batch that brings stream c: its id is still written by the next transaction, for the rows that use it.
    assert.equal(await s.commit('m1', LAYOUT, [step('c', 4 * DAY, 3)], [fc('c', 4 * DAY, 3, NaN)]), null);
    await s.commit('m1', LAYOUT, [step('c', 5 * DAY, 3)], [fc('c', 5 * DAY, 3)]);
    // Rows without a slot are found by name: stream a again.
    await s.commit('m1', LAYOUT, [{ ...step('a', 6 * DAY, 0), ref: undefined, gen: undefined }], []);
    assert.deepEqual(s.db.prepare('SELECT stream, ts FROM steps ORDER BY ts').all(), [
      { stream: 'a', ts: DAY },
      { stream: 'a', ts: 2 * DAY },
      { stream: 'b', ts: 3 * DAY },
      { stream: 'c', ts: 5 * DAY },
      { stream: 'a', ts: 6 * DAY },
    ]);
    assert.deepEqual(s.db.prepare('SELECT name FROM stream_ids ORDER BY sid').pluck().all(), ['a', 'b', 'c'], 'no stream named not-a');
    await s.stop();
  });

  it('commits batches handed over together as a group; one refused for its rows leaves the others written', async () => {
    const s = new Store({ path: ':memory:', retentionDays: 36500, log: silentLogger });
    s.start();
    const step = (d: number) => ({ stream: 'a', route: 'r', ts: d * DAY, receivedAt: d * DAY, features: FEATURES, values: { x: d, y: 2 }, filled: [] });
    const fc = (d: number, value: number) => ({ stream: 'a', issuedAt: d * DAY, values: [value], labels: null });
    // Handed over in one turn: the writer takes them as one group.
    const results = await Promise.all([s.commit('m', LAYOUT, [step(1)], [fc(1, 1.5)]), s.commit('m', LAYOUT, [step(2)], [fc(2, NaN)]), s.commit('m', LAYOUT, [step(3)], [fc(3, Math.fround(0.1))])]);
    assert.deepEqual(results, [[true], null, [true]], 'the NaN batch alone is refused');
    assert.deepEqual(s.db.prepare('SELECT ts / 86400000 AS d FROM step_inputs ORDER BY ts').pluck().all(), [1, 3], 'its step neither');
    // A forecast keeps 9 significant digits: every float32 exactly, without the widened double's tail.
    assert.deepEqual(s.db.prepare('SELECT vals FROM forecasts ORDER BY issued_at').pluck().all(), ['[1.5]', '[0.100000001]']);
    await s.stop();
  });

  it('writes a forecast value with 9 significant digits: JSON, every float32 read back exactly, trailing zeros dropped', () => {
    assert.deepEqual([12.5, 0, -0, 3, 1e21, 1.5e-7, -2.25, 123456789, 1234567890].map(float32Text), ['12.5', '0', '0', '3', '1e+21', '1.5e-7', '-2.25', '123456789', '1.23456789e+9']);
    let seed = 7;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 10 ** ((seed % 20) - 8);
    for (let i = 0; i < 10_000; i++) {
      const x = Math.fround(random());
      const text = float32Text(x);
      assert.equal(Math.fround(JSON.parse(text) as number), x, `${x} as ${text}`);
      assert.ok(text.replace(/^-|e.*$|\./g, '').replace(/^0+/, '').length <= 9, text);
    }
  });

  it('logs QoS 0 inputs in group commits and durable ones at once, with positions in order; a batch commit writes the pending group first', async () => {
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger });
    s.start();
    const logged = (): number[] => s.inputAfter(0, 100).map((r) => r.seq);
    assert.equal(s.appendInput(0, 1, 't', Buffer.from('a'), false), 1);
    assert.equal(s.appendInput(0, 2, 't', Buffer.from('b'), false), 2);
    assert.deepEqual(logged(), [], 'QoS 0: waiting for the group commit');
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(logged(), [1, 2], 'written within the group interval');
    s.appendInput(0, 3, 't', Buffer.from('c'), false);
    assert.equal(s.appendInput(0, 4, 't', Buffer.from('d'), true), 4);
    assert.deepEqual(logged(), [1, 2, 3, 4], 'a durable input writes the pending group with it');
    s.appendInput(0, 5, 't', Buffer.from('e'), false);
    const committed = s.commit('m', LAYOUT, [], [{ stream: 'a', issuedAt: 0, values: [1], labels: null }]);
    assert.deepEqual(logged(), [1, 2, 3, 4, 5], 'a stored forecast never runs ahead of its logged input');
    await committed;
    await s.stop();
  });

  it('packs a QoS 0 group commit into one row; replay reads groups and durable rows in position order, page by page; a trim drops whole groups', async () => {
    const db = new Database(':memory:');
    const failures: Error[] = [];
    const log = new InputLog(db, { lastSeq: 10, groupMs: 60_000, onGroupFailure: (err) => failures.push(err) });
    const inputs: Array<[0 | 1 | 2, string, string, boolean, string | null]> = [
      [0, 'sensors/a/1', '{"t":1}', false, null],
      [0, 'sensors/é/2', '', false, null],
      [2, 'sensors/bad', '{', false, '{"reason":"bad_json"}'],
      [1, '', '', true, null], // durable: written with the group before it
      [0, 'sensors/a/1', '{"t":2}', false, null],
      [0, 'sensors/a/1', 'x'.repeat(100_000), false, null], // grows the group's buffer
      [0, 'sensors/b/1', '{"t":3}', false, null],
    ];
    const seqs = inputs.map(([kind, topic, payload, durable, note], i) => log.append(kind, 1000 + i, topic, Buffer.from(payload), durable, note));
    assert.deepEqual(seqs, [11, 12, 13, 14, 15, 16, 17]);
    assert.equal(log.pending, 3, 'the second group waits for its commit');
    log.flush();
    assert.deepEqual(db.prepare('SELECT first_seq, last_seq FROM input_groups ORDER BY first_seq').raw().all(), [[11, 13], [15, 17]]);
    assert.deepEqual(db.prepare('SELECT seq FROM input_log').pluck().all(), [14]);
    const want = inputs.map(([kind, topic, payload, , note], i) => ({ seq: 11 + i, kind, receivedAt: 1000 + i, topic, payload: payload, note }));
    const read = (rows: InputRow[]) => rows.map((r) => ({ seq: r.seq, kind: r.kind, receivedAt: r.receivedAt, topic: r.topic, payload: r.payload.toString(), note: r.note ?? null }));
    assert.deepEqual(read(log.after(0, 100)), want);
    for (const limit of [1, 2, 3, 5]) {
      const paged: InputRow[] = [];
      for (let page = log.after(0, limit); page.length > 0; page = log.after(paged[paged.length - 1]!.seq, limit)) {
        assert.ok(page.length <= limit);
        paged.push(...page);
      }
      assert.deepEqual(read(paged), want, `pages of ${limit}`);
    }
    assert.deepEqual(read(log.after(12, 100)), want.slice(2), 'from inside a group');
    await log.trim(14);
    assert.deepEqual(db.prepare('SELECT first_seq FROM input_groups').pluck().all(), [15], 'the covered group is gone');
    assert.deepEqual(read(log.after(14, 100)), want.slice(4));
    // A restart continues after the highest position either table holds.
    assert.equal(new InputLog(db, { lastSeq: 0, onGroupFailure: () => undefined }).lastSeq, 17);
    assert.deepEqual(failures, []);
    db.close();
  });

  it('on a file: the writer thread commits batches and checkpoints; the input log has its own file, trimmed once a checkpoint commits', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'w.db');
    const s = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    s.start();
    for (let i = 1; i <= 5; i++) assert.equal(s.appendInput(0, i, 't', Buffer.from(`m${i}`), true), i);
    s.refuse({ receivedAt: 6, topic: 'bad', reason: 'malformed', detail: 'not JSON', payload: Buffer.from('{'), payloadBytes: 1, stream: 'a' }, true);
    const step = { stream: 'a', route: 'r', ts: DAY, receivedAt: DAY, features: FEATURES, values: { x: 1, y: 2 }, filled: [] };
    // Several batches in flight at once: answered in order.
    const batches = [1, 2, 3].map((d) => s.commit('m', LAYOUT, [{ ...step, ts: d * DAY }], [{ stream: 'a', issuedAt: d * DAY, values: [d], labels: null }]));
    assert.ok(s.backlog >= 3, 'the commits are in the writer\'s hands');
    assert.deepEqual(await Promise.all(batches), [[true], [true], [true]]);
    const state = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    await s.writeCheckpoint(4, [{ group: 'm', stream: 'a', resident: true, lastActive: 3 * DAY, assembler: Buffer.from([7, 8]), models: [{ model: 'm', fingerprint: 'f', state, filled: 3, pending: null }] }]);
    assert.equal(s.checkpointSeq(), 4);
    const restored = [...s.residentStreams(['m'])];
    assert.deepEqual(restored.map((r) => [r.stream, [...r.assembler], r.models.map((m) => [m.model, m.filled, [...new Float32Array(m.state.buffer.slice(m.state.byteOffset, m.state.byteOffset + m.state.byteLength))]])]), [['a', [7, 8], [['m', 3, [1, 2, 3, 4]]]]], 'the state reads back as written');
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(s.inputAfter(0, 100).map((r) => [r.seq, r.kind]), [[5, 0], [6, 2]], 'the log is trimmed up to the checkpoint; the refused message is logged (kind 2)');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(s.db.prepare('SELECT reason, seq FROM dead_letters').all(), [{ reason: 'malformed', seq: 6 }], 'its dead letter is stored with its position');
    assert.equal((s.db.prepare('SELECT count(*) n FROM forecasts').get() as { n: number }).n, 3);
    await s.stop();
    const log = new Database(`${file}-inputs`, { readonly: true });
    assert.deepEqual(log.prepare('SELECT seq FROM input_log').pluck().all(), [5, 6], 'the log is a file of its own');
    log.close();
    const main = new Database(file, { readonly: true });
    assert.equal(main.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'input_log'").pluck().get(), 0, 'and not a table of the store');
    main.close();
    // Positions continue after the highest handed out.
    const again = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    again.start();
    assert.equal(again.appendInput(0, 7, 't', Buffer.from('x'), true), 7);
    await again.stop();
    tmp.remove();
  });

  it('a writer thread that dies fails the store instead of hanging it: its ops answer "not written", the store reports failing, stop returns', async () => {
    const tmp = tempDir();
    process.env.TIDECAST_FAULT_WRITER_EXIT_ON = 'commit';
    const s = new Store({ path: path.join(tmp.dir, 'd.db'), retentionDays: 36500, log: silentLogger });
    try {
      s.start();
    } finally {
      delete process.env.TIDECAST_FAULT_WRITER_EXIT_ON;
    }
    assert.equal(s.failing, false);
    assert.equal(await s.commit('m', LAYOUT, [], [{ stream: 'a', issuedAt: 0, values: [1], labels: null }]), null, 'not written');
    assert.equal(s.failing, true, 'the intake holds from here on');
    assert.match(s.failure?.message ?? '', /writer thread exited/);
    await assert.rejects(s.writeCheckpoint(1, []), /refused/);
    assert.equal(s.appendInput(0, 1, 't', Buffer.from('x'), true), 1, 'the input log still takes what the broker sends');
    await s.stop();
    tmp.remove();
  });

  it('packs the JSON bounds of a schema-11 database into BLOBs; the views read the same intervals', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'v11.db');
    const layout: ForecastLayout = { stepMs: DAY, cells: [[1, 'x', 0, [0.8, 0.95], 100], [1, 'c', 1]] };
    const step = { stream: 'a', route: 'r', ts: 0, receivedAt: 0, features: FEATURES, values: { x: 1, y: 2 }, filled: [] };
    const labels: ForecastRow['labels'] = [null, ['wet', { wet: 0.75, dry: 0.25 }]];
    const old = new Store({ path: file, retentionDays: 36500, log: silentLogger, clock: clockWithNow(() => DAY) });
    old.start();
    await old.commit('m', layout, [step], [{ stream: 'a', issuedAt: 0, values: [1, 0.75], labels, bounds: Float64Array.from([-1.25, 3.5, -400, 500.01, NaN, NaN, NaN, NaN]) }]);
    await old.commit('m', layout, [{ ...step, ts: DAY }], [{ stream: 'a', issuedAt: DAY, values: [1, 0.75], labels }]);
    const intervals = 'SELECT issued_at, target, level, lower, upper FROM prediction_intervals ORDER BY issued_at, target, level';
    const before = old.db.prepare(intervals).all();
    assert.equal(before.length, 2);
    await old.stop();
    // Back to schema 11: bounds as JSON text of the integers, per cell (null for the classification cell).
    const db = new Database(file);
    for (const view of INTERVAL_VIEW_NAMES) db.exec(`DROP VIEW ${view}`);
    db.exec(`ALTER TABLE forecasts DROP COLUMN bounds; ALTER TABLE forecasts ADD COLUMN bounds TEXT;
      UPDATE forecasts SET bounds = '[[-125,350,-40000,50001],null]' WHERE issued_at = 0; ${INTERVAL_VIEWS}`);
    db.pragma('user_version = 11');
    db.close();
    const s = new Store({ path: file, retentionDays: 36500, log: silentLogger, clock: clockWithNow(() => DAY) });
    s.start();
    assert.equal(s.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.deepEqual(s.db.prepare(intervals).all(), before);
    assert.deepEqual(s.db.prepare('SELECT issued_at, typeof(bounds) AS t FROM forecasts ORDER BY issued_at').all(), [{ issued_at: 0, t: 'blob' }, { issued_at: DAY, t: 'null' }]);
    await s.stop();
    tmp.remove();
  });

  it('moves the input log of a schema-7 database into its own file, so that recovery still replays it', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'v7.db');
    const old = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    old.start();
    await old.stop();
    // Back to schema 7 with two logged inputs after a checkpoint at 1, as version 7 left them.
    const db = new Database(file);
    for (const view of INTERVAL_VIEW_NAMES) db.exec(`DROP VIEW ${view}`);
    db.exec(`ALTER TABLE forecasts DROP COLUMN bounds; ${COMPACT_VIEWS}`);
    db.exec(`ALTER TABLE stream_state DROP COLUMN seq;
      CREATE TABLE input_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, received_at INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
      INSERT INTO input_log (seq, kind, received_at, topic, payload) VALUES (2, 0, 20, 't/a', x'7b7d'), (3, 1, 30, '', x'');
      INSERT INTO checkpoint (id, seq, at, streams) VALUES (1, 1, 0, 0);`);
    db.pragma('user_version = 7');
    db.close();
    const s = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    s.start();
    assert.equal(s.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.deepEqual(s.inputAfter(s.checkpointSeq(), 10).map((r) => [r.seq, r.kind, r.receivedAt, r.topic, r.payload.toString()]), [[2, 0, 20, 't/a', '{}'], [3, 1, 30, '', '']]);
    assert.equal(s.appendInput(0, 40, 't', Buffer.from('x'), true), 4);
    await s.stop();
    tmp.remove();
  });

  it('moves a schema-6 database into the compact tables in place', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'v6.db');
    const old = new Database(file);
    old.exec('BEGIN');
    for (let v = 0; v < 6; v++) old.exec(MIGRATIONS[v] as string);
    old.pragma('user_version = 6');
    old.exec('COMMIT');
    old.prepare("INSERT INTO streams VALUES ('s/1', 'r', 1, 2, 2)").run();
    old.prepare("INSERT INTO steps (stream, ts, received_at, topic, values_json, filled) VALUES ('s/1', ?, 5, 't', '{\"a\":1,\"b\":2}', ''), ('s/1', ?, 6, 't', '{\"a\":3,\"b\":4}', 'b')").run(0, DAY);
    const ins = old.prepare('INSERT INTO predictions (stream, model, issued_at, horizon, target, target_time, value, created_at, label, probabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    ins.run('s/1', 'm', 0, 1, 'a', DAY, 2.5, 7, null, null);
    ins.run('s/1', 'm', 0, 1, 'b', DAY, 3.5, 7, null, null);
    ins.run('s/1', 'c', 0, 0, 'rain', 0, 0.75, 7, 'wet', '{"dry":0.25,"wet":0.75}');
    old.prepare("INSERT INTO forecast_errors VALUES ('s/1', 'm', 0, 1, 'a', ?, 2.5, 3, 1)").run(DAY);
    old.close();

    const s = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    s.start();
    const db = s.db;
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.deepEqual(db.prepare('SELECT stream, ts, values_json, filled FROM steps ORDER BY ts').all(), [
      { stream: 's/1', ts: 0, values_json: '{"a":1,"b":2}', filled: '' },
      { stream: 's/1', ts: DAY, values_json: '{"a":3,"b":4}', filled: 'b' },
    ]);
    assert.deepEqual(db.prepare('SELECT model, issued_at, horizon, target, target_time, value, label, probabilities FROM predictions ORDER BY model, target').all(), [
      { model: 'c', issued_at: 0, horizon: 0, target: 'rain', target_time: 0, value: 0.75, label: 'wet', probabilities: '{"dry":0.25,"wet":0.75}' },
      { model: 'm', issued_at: 0, horizon: 1, target: 'a', target_time: DAY, value: 2.5, label: null, probabilities: null },
      { model: 'm', issued_at: 0, horizon: 1, target: 'b', target_time: DAY, value: 3.5, label: null, probabilities: null },
    ]);
    assert.equal((db.prepare('SELECT count(*) n FROM forecasts').get() as { n: number }).n, 2, 'one row per forecast');
    assert.deepEqual(db.prepare('SELECT predicted, actual, persistence FROM forecast_errors').all(), [{ predicted: 2.5, actual: 3, persistence: 1 }], 'b was forward-filled: not scored');
    assert.deepEqual(db.prepare('SELECT horizon, target, n, sum_abs, sum_pabs FROM accuracy').all(), [{ horizon: 1, target: 'a', n: 1, sum_abs: 0.5, sum_pabs: 2 }], 'stored errors become accuracy sums');
    await s.stop();
    tmp.remove();
  });

  it('shows the latest predictions of all streams newest first, read by key: at a cut issue time, the streams first seen last', async () => {
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger });
    s.start();
    const layout: ForecastLayout = { stepMs: DAY, cells: [[1, 'x', 0], [2, 'x', 0]] };
    const step = (stream: string, ts: number) => ({ stream, route: 'r', ts, receivedAt: ts, features: FEATURES, values: { x: 1, y: 2 }, filled: [] });
    const fc = (stream: string, issuedAt: number, v: number) => ({ stream, issuedAt, values: [v, v + 0.5], labels: null });
    // Stream ids in order of first sight: c, then a, then b (so key order differs from name order).
    for (const model of ['m2', 'm1']) {
      for (const day of [1, 2]) {
        await s.commit(model, layout, ['c', 'a', 'b'].map((x) => step(x, day * DAY)), ['c', 'a', 'b'].map((x, i) => fc(x, day * DAY, day * 10 + i + (model === 'm1' ? 100 : 0))));
      }
    }
    const cell = (p: StoredPrediction): string => `${p.issuedAt / DAY} ${p.stream} ${p.model} h${p.horizon} ${p.value}`;
    const all = latestPredictions(s.db, { limit: 100 });
    assert.equal(all.length, 2 * 3 * 2 * 2, 'every cell, when the limit allows');
    assert.deepEqual(all.slice(0, 4).map(cell), ['2 a m1 h1 121', '2 a m1 h2 121.5', '2 a m2 h1 21', '2 a m2 h2 21.5'], 'newest issue time first, then by stream, model and horizon');
    assert.deepEqual(all.slice(12).map((p) => p.issuedAt), Array(12).fill(DAY), 'then the issue time before');
    // 5 of the newest issue time's 12 cells: the key's last (b, then a: the streams first seen last, the models first seen last), shown by name.
    assert.deepEqual(latestPredictions(s.db, { limit: 5 }).map(cell), ['2 a m1 h1 121', '2 b m1 h1 122', '2 b m1 h2 122.5', '2 b m2 h1 22', '2 b m2 h2 22.5']);
    assert.deepEqual(latestPredictions(s.db, { stream: 'c', limit: 3 }).map(cell), ['2 c m1 h1 120', '2 c m1 h2 120.5', '2 c m2 h1 20'], 'one stream: by name too');
    await s.stop();
  });

  it('runs the queries whose plans the comments describe on the keys they name: skip-scans of one stream, scans that stop at the limit, ranges for retention', async () => {
    const s = new Store({ path: ':memory:', retentionDays: 30, log: silentLogger });
    s.start();
    // The statement as the store (or the API) prepares it, its parameters bound (named, or positional).
    const plan = (sql: string): string => {
      const stmt = s.db.prepare(`EXPLAIN QUERY PLAN ${sql}`);
      const named = [...sql.matchAll(/@(\w+)/g)].map((m) => m[1]!);
      const rows = named.length > 0 ? stmt.all(Object.fromEntries(named.map((n) => [n, 1]))) : stmt.all(...Array<number>(sql.split('?').length - 1).fill(1));
      return (rows as Array<{ detail: string }>).map((p) => p.detail).join('; ');
    };
    const noSort = (sql: string, ...keys: RegExp[]): void => {
      const p = plan(sql);
      for (const key of keys) assert.match(p, key);
      assert.doesNotMatch(p, /TEMP B-TREE/, p);
    };
    // tidecast query without a stream: a descending scan of forecasts' key that stops at the limit (no sort of the newest issue time's cells).
    noSort(LATEST_SQL, /SCAN f(;|$)/, /SEARCH s USING INTEGER PRIMARY KEY/);
    assert.doesNotMatch(plan(LATEST_SQL), /SCAN (forecasts|f) USING|AUTOMATIC/);
    // tidecast query --stream, per model: a descending skip-scan for the latest issue times, then each forecast by its key.
    noSort(LATEST_OF_STREAM_SQL, /SEARCH forecasts USING PRIMARY KEY \(ANY\(issued_at\) AND sid=\? AND mid=\?\)/, /SEARCH f USING PRIMARY KEY \(issued_at=\? AND sid=\? AND mid=\?\)/);
    // The dashboard: a stream's latest step and latest forecast per model, descending skip-scans that stop at them.
    noSort(STREAM_LOOKUP_SQL.lastStep, /SEARCH i USING PRIMARY KEY \(ANY\(ts\) AND sid=\?\)/);
    noSort(STREAM_LOOKUP_SQL.lastIssue, /SEARCH f USING PRIMARY KEY \(ANY\(issued_at\) AND sid=\? AND mid=\?\)/);
    assert.match(plan(STREAM_LOOKUP_SQL.forecast), /SEARCH f USING PRIMARY KEY \(issued_at=\? AND sid=\? AND mid=\?\)/);
    assert.match(plan(STREAM_LOOKUP_SQL.buckets), /SEARCH accuracy USING PRIMARY KEY \(sid=\? AND mid=\? AND horizon=\? AND target=\?\)/);
    // A series' range.
    noSort(STREAM_LOOKUP_SQL.lastTs, /SEARCH i USING PRIMARY KEY \(ANY\(ts\) AND sid=\?\)/);
    noSort(STREAM_LOOKUP_SQL.actuals, /SEARCH i USING PRIMARY KEY \(ANY\(ts\) AND sid=\?\)/);
    assert.match(plan(STREAM_LOOKUP_SQL.forecasts), /SEARCH f USING PRIMARY KEY \(ANY\(issued_at\) AND sid=\?\)/);
    assert.match(plan(STREAM_LOOKUP_SQL.events), /SEARCH events USING INDEX events_by_stream \(stream=\?/);
    assert.match(plan(STREAM_LOOKUP_SQL.streamEvents), /SEARCH events USING INDEX events_by_stream \(stream=\?/);
    assert.match(plan(STREAM_LOOKUP_SQL.states), /SEARCH events USING INDEX events_by_stream \(stream=\?/);
    assert.match(plan(STREAM_LOOKUP_SQL.deadLetters), /SEARCH dead_letters USING INDEX dead_letters_by_stream \(stream=\?/);
    // The streams view, which the stream list avoids: its step count seeks every step time of the stream.
    assert.match(plan('SELECT steps FROM streams WHERE id = ?'), /SEARCH i USING (COVERING INDEX \w+|PRIMARY KEY) \(ANY\(ts\) AND sid=\?\)/);
    // Rolling accuracy of a stream: the stream found by name (spelled out; `(@stream IS NULL OR stream = @stream)` scans the names), and an actual at a forecast's target time by one point lookup.
    const accuracy = plan(rollingAccuracySql({ stream: true, model: false }));
    assert.match(accuracy, /SEARCH s USING COVERING INDEX sqlite_autoindex_stream_ids_1 \(name=\?\)/);
    assert.match(accuracy, /SEARCH f USING PRIMARY KEY \(ANY\(issued_at\) AND sid=\?\)/);
    assert.match(accuracy, /SEARCH i USING PRIMARY KEY \(ts=\? AND sid=\?\)/);
    assert.match(plan(rollingAccuracySql({ stream: false, model: false }).replace('FROM forecast_errors', 'FROM forecast_errors WHERE (@stream IS NULL OR stream = @stream)')), /SCAN s USING COVERING INDEX sqlite_autoindex_stream_ids_1(;|$)/);
    // Retention deletes the oldest range of each time-major key.
    assert.match(plan(PRUNE_SQL.steps), /SEARCH step_inputs USING PRIMARY KEY \(ts<\?\)/);
    assert.match(plan(PRUNE_SQL.forecasts), /SEARCH forecasts USING PRIMARY KEY \(issued_at<\?\)/);
    await s.stop();
  });
});
