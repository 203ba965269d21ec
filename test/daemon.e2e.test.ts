import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { ForecastMessage } from '../src/daemon/forecast-sink.js';
import { residualQuantile } from '../src/daemon/interval-book.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { silentLogger } from '../src/log.js';
import { haveMosquitto } from './support/broker.js';
import { modelPath } from './support/models.js';
import { expectedForecasts, forecastKey, telemetry, waitFor, worstVsExpected } from './support/fixtures.js';
import { CSV_ROUTE, STATIONS_ROUTE } from './support/test-config.js';
import { openDaemon, type DaemonContext } from './support/with-daemon.js';

interface PredRow { stream: string; issued_at: number; horizon: number; target: string; target_time: number; value: number }


describe('daemon against a real broker and a real SQLite file', () => {
  let ctx: DaemonContext;

  // maxPayloadBytes 4096: a 5000-byte message is too large.
  before(async () => (ctx = await openDaemon({ mqtt: { maxPayloadBytes: 4096 }, routes: [STATIONS_ROUTE, CSV_ROUTE] })));
  after(() => ctx.close());

  it(`N messages over M streams give exactly the engine's predictions, stored and published (${haveMosquitto ? 'mosquitto' : 'aedes'})`, async () => {
    const M = 6;
    const N = 30;
    const msgs = telemetry(M, N);
    const byTime = [...msgs].sort((a, b) => a.ts - b.ts); // interleave streams, each in its own order
    const published: ForecastMessage[] = [];
    const listener = await mqtt.connectAsync(ctx.url, { clientId: 'test-listener' });
    await listener.subscribeAsync('forecast/weather-lstm/#', { qos: 1 });
    listener.on('message', (_t, p) => published.push(JSON.parse(p.toString()) as ForecastMessage));
    const pub = await mqtt.connectAsync(ctx.url, { clientId: 'test-publisher' });
    await Promise.all(byTime.map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })));

    const { db, count } = ctx;
    await waitFor(() => count('SELECT count(*) n FROM predictions') === M * N * 6 && published.length === M * N, 20_000, `${M * N * 6} predictions`);

    const want = await expectedForecasts(msgs);
    const rows = db.prepare('SELECT stream, issued_at, horizon, target, target_time, value FROM predictions').all() as PredRow[];
    for (const r of rows) assert.equal(r.target_time, r.issued_at + r.horizon * 86_400_000);
    const worst = worstVsExpected(rows, want);
    assert.ok(worst < 1e-4, `stored vs direct engine: max diff ${worst}`);
    assert.equal(count('SELECT count(*) n FROM steps'), M * N, 'every consumed step is stored');
    const streams = db.prepare('SELECT id, steps FROM streams ORDER BY id').all() as Array<{ id: string; steps: number }>;
    assert.equal(streams.length, M);
    assert.ok(streams.every((s) => s.steps === N));

    // Published messages carry the same values as the stored rows.
    const p = published.find((f) => f.stream === msgs[0]!.stream && f.issued_at === new Date(msgs[0]!.ts).toISOString())!;
    assert.ok(p, 'the first step of the first stream was published');
    const out = want.get(forecastKey(msgs[0]!.stream, msgs[0]!.ts, 3, 'temp_min'))!;
    assert.ok(Math.abs(p.forecast[2]!.values.temp_min! - out) < 1e-4);

    // Its intervals: a stream's first forecast sits at the card's held-out residual quantiles, stored and published alike.
    const residuals = readCard(defaultCardPath(modelPath('weather-lstm'))).calibration!.residuals['temp_min@3']!.quantiles;
    const stored = db
      .prepare("SELECT level, lower, upper, value FROM prediction_intervals WHERE stream = ? AND issued_at = ? AND horizon = 3 AND target = 'temp_min' ORDER BY level")
      .all(msgs[0]!.stream, msgs[0]!.ts) as Array<{ level: number; lower: number; upper: number; value: number }>;
    assert.deepEqual(stored.map((s) => s.level), [0.8, 0.95]);
    // Bounds are stored rounded to their cell's resolution (1 / its scale in the layout): within half of it.
    const scale = (db.prepare("SELECT json_extract(c.value, '$[4]') s FROM forecast_layouts, json_each(cells) c WHERE json_extract(c.value, '$[0]') = 3 AND json_extract(c.value, '$[1]') = 'temp_min'").get() as { s: number }).s;
    assert.ok(scale >= 1, `temp_min@3 has a bound scale (${scale})`);
    const tol = 0.5 / scale + 1e-4;
    for (const s of stored) {
      assert.ok(Math.abs(s.lower - (s.value + residualQuantile(residuals, (1 - s.level) / 2))) < tol, `lower at ${s.level}`);
      assert.ok(Math.abs(s.upper - (s.value + residualQuantile(residuals, (1 + s.level) / 2))) < tol, `upper at ${s.level}`);
      assert.deepEqual(p.forecast[2]!.intervals!.temp_min![String(s.level)], [s.lower, s.upper], 'published as stored');
    }
    await pub.endAsync();
    await listener.endAsync();
  });

  it('bad payloads become dead letters with reasons; the daemon keeps predicting', async () => {
    const pub = await mqtt.connectAsync(ctx.url, { clientId: 'test-bad-publisher' });
    const bad: Array<[string, string | Buffer, string]> = [
      ['sensors/x/bad1/telemetry', '{"ts": 1420070400, "rain": 0,', 'bad_json'],
      ['sensors/x/bad2/telemetry', '{"ts": 1420070400, "rain": 0, "tmax": 1, "tmin": 0}', 'missing_field'],
      ['sensors/x/bad3/telemetry', '{"ts": 1420070400, "rain": 0, "tmax": "hot", "tmin": 0, "wind": 1}', 'wrong_type'],
      ['sensors/x/bad4/telemetry', '{"ts": 1420070400, "rain": 0, "tmax": 1e999, "tmin": 0, "wind": 1}', 'non_finite'],
      ['sensors/x/bad5/telemetry', '{"ts": "yesterday", "rain": 0, "tmax": 1, "tmin": 0, "wind": 1}', 'bad_timestamp'],
      ['sensors/x/bad6/telemetry', Buffer.alloc(5000, 0x20), 'too_large'],
      ['csv/bad7', '2015-01-01,0.0,5.6', 'bad_csv'],
    ];
    for (const [topic, payload] of bad) await pub.publishAsync(topic, payload, { qos: 1 });
    await pub.publishAsync('csv/good', '2015-01-01,0.0,5.6,-2.1,3.4', { qos: 1 });
    const { db, daemon, count } = ctx;
    await waitFor(() => count("SELECT count(*) n FROM predictions WHERE stream = 'csv/good'") === 6, 10_000, 'a good message after the bad ones');
    const rows = db.prepare('SELECT topic, reason, detail, payload_bytes, length(payload) kept FROM dead_letters ORDER BY id').all() as Array<{ topic: string; reason: string; detail: string; payload_bytes: number; kept: number }>;
    assert.deepEqual(rows.map((r) => [r.topic, r.reason]), bad.map(([t, , reason]) => [t, reason]));
    assert.ok(rows.every((r) => r.detail.length > 0), 'each dead letter says why');
    const big = rows.find((r) => r.reason === 'too_large')!;
    assert.deepEqual([big.payload_bytes, big.kept], [5000, 1024]);
    const stats = daemon.stats();
    assert.equal(stats.deadLetters.bad_json, 1);
    assert.equal(stats.deadLetters.too_large, 1);
    assert.equal(count("SELECT count(*) n FROM predictions WHERE stream LIKE '%bad%'"), 0);
    await pub.endAsync();
  });

  it('ignores a repeated sample and dead-letters one for a closed step as late', async () => {
    const pub = await mqtt.connectAsync(ctx.url, { clientId: 'test-order-publisher' });
    const { db, daemon, count } = ctx;
    const msg = (ts: number): string => JSON.stringify({ ts, rain: 0, tmax: 10, tmin: 2, wind: 3 });
    const before = daemon.stats().duplicates;
    for (const ts of [1420070400 + 86400 * 2, 1420070400 + 86400 * 2, 1420070400 + 86400]) await pub.publishAsync('sensors/y/order/telemetry', msg(ts), { qos: 1 });
    await pub.publishAsync('sensors/y/order/telemetry', msg(1420070400 + 86400 * 3), { qos: 1 });
    await waitFor(() => count("SELECT count(*) n FROM steps WHERE stream = 'y/order'") === 2, 10_000, 'two distinct steps');
    await waitFor(() => daemon.stats().queueDepth === 0 && count("SELECT count(*) n FROM predictions WHERE stream = 'y/order'") === 12, 10_000, 'their predictions');
    assert.equal(daemon.stats().duplicates - before, 4, 'the repeated message: one duplicate per feature');
    const late = db.prepare("SELECT reason FROM dead_letters WHERE topic = 'sensors/y/order/telemetry'").all() as Array<{ reason: string }>;
    assert.deepEqual(late.map((r) => r.reason), ['late']);
    await pub.endAsync();
  });
});

describe('ingest admission', () => {
  it('refuses a message without a route, a bad stream id or a wrong payload with a reason, and never throws', async () => {
    const { Admission } = await import('../src/streams/admission.js');
    const { Refusals } = await import('../src/streams/refusals.js');
    const ingest = new Admission({ routes: [], maxPayloadBytes: 100, refusals: new Refusals({ log: silentLogger }), log: silentLogger });
    const a = ingest.admit('nowhere/at/all', Buffer.from('{}'), 1);
    assert.equal(a.ok, false);
    assert.deepEqual(a.ok ? null : [a.row.topic, a.reason], ['nowhere/at/all', 'no_route']);
    const big = ingest.admit('x', Buffer.alloc(5000), 1);
    assert.deepEqual(big.ok ? null : [big.reason, big.row.payload.length, big.row.payloadBytes], ['too_large', 1024, 5000]);
  });

  it('refuses stream ids with control characters, wildcards or excessive length (aedes or a bridge may pass such topics on)', async () => {
    const { Admission } = await import('../src/streams/admission.js');
    const { Refusals } = await import('../src/streams/refusals.js');
    const { compileRoutes } = await import('../src/streams/routes.js');
    const route = {
      topic: 'fuzz/+id/data',
      stream: 'fuzz/{id}',
      models: ['m'],
      decoder: { type: 'json' as const, partial: false },
      resample: { aggregate: {}, latenessMs: 0, emit: 'complete' as const, wallClock: false, maxFillSteps: 0, maxGapSteps: 0 },
    };
    // Admission needs routes and limits only: a route's model is its features and step.
    const model = { name: 'm', features: ['x'], stepSeconds: 60 };
    const ingest = new Admission({ routes: compileRoutes([route], () => [model]), maxPayloadBytes: 1000, refusals: new Refusals({ log: silentLogger }), log: silentLogger });
    const payload = Buffer.from('{"x": 1}');
    for (const id of ['a\u0001b', 'tab\there', 'del\u007f', 'c1\u0085', 'plus+', 'hash#', 'x'.repeat(257)]) {
      const a = ingest.admit(`fuzz/${id}/data`, payload, 1);
      assert.equal(a.ok ? 'accepted' : a.reason, 'bad_stream_id', JSON.stringify(id.slice(0, 20)));
    }
    const ok = ingest.admit('fuzz/ünïcode-☃/data', payload, 1);
    assert.equal(ok.ok && ok.stream, 'fuzz/ünïcode-☃');
  });
});
