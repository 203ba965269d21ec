import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { Daemon } from '../src/daemon/daemon.js';
import { readWeather } from '../src/demo/weather-data.js';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { residualQuantile } from '../src/daemon/interval-book.js';
import { modelsDir } from '../src/paths.js';
import { modelPath } from './support/models.js';
import { prng } from './support/prng.js';
import { waitFor } from './support/fixtures.js';
import { openTestBed, type TestBed } from './support/test-bed.js';
import type { ConfigInput } from './support/test-config.js';

/** What models/train.py predicted offline for the held-out year, in physical units. */
interface Heldout { from: string; streams: Record<string, { dates: string[]; outputs: number[][] }> }
const heldout = JSON.parse(readFileSync(path.join(modelsDir, 'fixtures', 'weather-lstm.heldout.json'), 'utf8')) as Heldout;
const card = readCard(defaultCardPath(modelPath('weather-lstm')));
const FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind'] as const;
const DAY = 86_400_000;
const slug = (c: string): string => c.toLowerCase().replace(/[^a-z0-9]+/g, '-');

interface Msg { topic: string; payload: string }

/**
 * The whole data set (2012 to 2015: the training years warm the state, as in
 * train.py) as one topic per feature per station, shuffled within each day;
 * about 1 in 10 messages is held back into the next day's batch (jitter past
 * the step boundary, inside the lateness). `shift`: what a station's
 * temperature sensors add to temp_max and temp_min on a date (a drifting sensor).
 */
function replayMessages(prefix: string, seed: number, drop?: (city: string, date: string) => boolean, shift?: (city: string, date: string) => number): Msg[][] {
  const rand = prng(seed);
  const cities = readWeather();
  const names = [...cities.keys()];
  const days = cities.get(names[0]!)!.length;
  const groups: Msg[][] = [];
  let carried: Msg[] = [];
  for (let t = 0; t < days; t++) {
    const today: Msg[] = [...carried];
    carried = [];
    for (const c of names) {
      const d = cities.get(c)![t]!;
      if (drop?.(c, d.date)) continue;
      FEATURES.forEach((f, i) => {
        const off = shift && (f === 'temp_max' || f === 'temp_min') ? shift(c, d.date) : 0;
        const m = { topic: `${prefix}/${slug(c)}/${f}`, payload: JSON.stringify({ date: d.date, [f]: off === 0 ? d.values[i] : d.values[i]! + off }) };
        if (rand() < 0.1) carried.push(m);
        else today.push(m);
      });
    }
    for (let i = today.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [today[i], today[j]] = [today[j]!, today[i]!];
    }
    groups.push(today);
  }
  groups.push(carried);
  return groups;
}

/** weather-lstm on one topic per feature per station under `prefix`, into <prefix>.db; nothing published, no HTTP. */
function replayConfig(prefix: string, extra: ConfigInput = {}): ConfigInput {
  return {
    ...extra,
    mqtt: { clientId: `tidecast-${prefix}` },
    routes: [
      {
        topic: `${prefix}/+station/+feature`,
        stream: '{station}',
        models: ['weather-lstm'],
        decoder: { type: 'json', partial: true, timestamp: { field: 'date', format: 'iso' } },
        resample: { emit: 'complete', latenessMs: 2 * DAY, wallClock: false, maxFillSteps: 1, maxGapSteps: 3 },
      },
    ],
    publish: { enabled: false, ...extra.publish },
    http: { enabled: false },
  };
}

interface Row { stream: string; issued_at: number; horizon: number; target: string; value: number }

async function replay(bed: TestBed, prefix: string, groups: Msg[][], expectedSteps: number, extra?: ConfigInput): Promise<Daemon> {
  const daemon = await bed.startDaemon(bed.writeConfig(replayConfig(prefix, extra), prefix));
  // Published in this order without waiting between messages (waiting for each
  // day's PUBACKs would cost a TCP delayed-ACK round per day).
  await bed.publish(groups.flat());
  const db = daemon.store!.db;
  await waitFor(() => (db.prepare('SELECT count(*) n FROM steps').get() as { n: number }).n >= expectedSteps && daemon.stats().queueDepth === 0, 60_000, `${expectedSteps} steps`);
  return daemon;
}

/** Largest |stored - offline| over the held-out year for the given stations. */
function worstVsOffline(daemon: Daemon, cities: string[], skip?: (city: string, date: string) => boolean): { worst: number; compared: number } {
  const rows = daemon.store!.db.prepare('SELECT stream, issued_at, horizon, target, value FROM predictions WHERE issued_at >= ?').all(Date.parse(heldout.from)) as Row[];
  const byKey = new Map(rows.map((r) => [`${r.stream}|${r.issued_at}|${r.horizon}|${r.target}`, r.value]));
  let worst = 0;
  let compared = 0;
  for (const c of cities) {
    const { dates, outputs } = heldout.streams[c]!;
    dates.forEach((date, i) => {
      if (skip?.(c, date)) return;
      card.horizons.forEach((h, hi) => {
        card.targets.forEach((t, k) => {
          const got = byKey.get(`${slug(c)}|${Date.parse(date)}|${h}|${t.name}`);
          assert.ok(got !== undefined, `missing prediction ${c} ${date} h${h} ${t.name}`);
          worst = Math.max(worst, Math.abs(got - outputs[i]![hi * card.targets.length + k]!));
          compared++;
        });
      });
    });
  }
  return { worst, compared };
}

/** A drift state change of a stream's target, as the model_drift events give it (and as recomputed). */
interface DriftEpisode { stream: string; target: string; date: string; state: string; direction: string; reasons: string[]; cusum: number }

/** The daemon's model_drift events, one entry per target changed, by stream, time and target. */
function driftEvents(daemon: Daemon): DriftEpisode[] {
  const rows = daemon.store!.db.prepare("SELECT stream, at, detail FROM events WHERE kind = 'model_drift' ORDER BY stream, at").all() as Array<{ stream: string; at: number; detail: string }>;
  return rows.flatMap((r) =>
    (JSON.parse(r.detail) as Array<{ target: string; state: string; direction: string; reasons: string[]; cusum: number }>).map((d) => ({
      stream: r.stream,
      target: d.target,
      date: new Date(r.at).toISOString().slice(0, 10),
      state: d.state,
      direction: d.direction,
      reasons: d.reasons,
      cusum: d.cusum,
    })),
  );
}

/**
 * The drift tests recomputed here from the stored errors (forecast_errors) and
 * the card, as config `drift` describes them (defaults: k 0.75, h 15, the 80%
 * held-out interval, band 0.25 over 30 steps): the changes the daemon should
 * have written, and each stream-target's largest upward and downward sums
 * (in `peaks`) for k = `allowance`, the sums stopping at `cap` (2h).
 */
function recomputeDrift(daemon: Daemon, allowance = 0.75, peaks?: Map<string, { up: number; down: number; upAt: string; downAt: string }>, cap = 30): DriftEpisode[] {
  const [k, h, level, band, steps] = [allowance, 15, 0.8, 0.25, 30];
  const rows = daemon.store!.db
    .prepare('SELECT stream, target, horizon, target_time, predicted, actual FROM forecast_errors ORDER BY stream, target, target_time')
    .all() as Array<{ stream: string; target: string; horizon: number; target_time: number; predicted: number; actual: number }>;
  const residuals = card.calibration!.residuals;
  const out: DriftEpisode[] = [];
  let i = 0;
  while (i < rows.length) {
    const { stream, target } = rows[i]!;
    let [up, down, rate, bias, coverage] = [0, 0, 1 - level, false, false];
    let peak = { up: 0, down: 0, upAt: '', downAt: '' };
    while (i < rows.length && rows[i]!.stream === stream && rows[i]!.target === target) {
      const t = rows[i]!.target_time;
      let [z, miss, n] = [0, 0, 0];
      for (; i < rows.length && rows[i]!.stream === stream && rows[i]!.target === target && rows[i]!.target_time === t; i++) {
        const r = rows[i]!.actual - rows[i]!.predicted;
        const cell = residuals[`${target}@${rows[i]!.horizon}`]!;
        z += Math.max(-4, Math.min(4, r / cell.mae!));
        if (r < residualQuantile(cell.quantiles, (1 - level) / 2) || r > residualQuantile(cell.quantiles, (1 + level) / 2)) miss++;
        n++;
      }
      up = Math.min(cap, Math.max(0, up + z / n - k));
      down = Math.min(cap, Math.max(0, down - z / n - k));
      rate += (miss / n - rate) / steps;
      const date = new Date(t).toISOString().slice(0, 10);
      if (up > peak.up) peak = { ...peak, up, upAt: date };
      if (down > peak.down) peak = { ...peak, down, downAt: date };
      const was = bias || coverage;
      const heldBias = bias;
      const heldCoverage = coverage;
      bias = bias ? up > h / 2 || down > h / 2 : up > h || down > h;
      coverage = coverage ? rate > 1 - level + band / 2 : rate > 1 - level + band;
      if ((bias || coverage) === was) continue;
      const [b, c] = bias || coverage ? [bias, coverage] : [heldBias, heldCoverage];
      out.push({ stream, target, date, state: was ? 'off' : 'on', direction: up >= down ? 'up' : 'down', reasons: [...(b ? ['bias'] : []), ...(c ? ['coverage'] : [])], cusum: Math.round(Math.max(up, down) * 100) / 100 });
    }
    peaks?.set(`${stream} ${target}`, peak);
  }
  return out.sort((a, b) => a.stream.localeCompare(b.stream) || a.date.localeCompare(b.date) || a.target.localeCompare(b.target));
}

/**
 * Per stream, target and month, the mean 1-day error (actual − forecast) and
 * its t statistic (mean / sd × √days): how far a month's bias stands out.
 */
function monthlyBias(daemon: Daemon): Array<{ key: string; bias: number; t: number }> {
  const rows = daemon.store!.db
    .prepare(
      `SELECT stream || ' ' || target || ' ' || strftime('%Y-%m', target_time / 1000, 'unixepoch') AS key, count(*) AS n, avg(actual - predicted) AS mean, avg((actual - predicted) * (actual - predicted)) AS sq
       FROM forecast_errors WHERE horizon = 1 GROUP BY key ORDER BY key`,
    )
    .all() as Array<{ key: string; n: number; mean: number; sq: number }>;
  return rows.map((r) => ({ key: r.key, bias: r.mean, t: (r.mean / Math.sqrt(r.sq - r.mean * r.mean)) * Math.sqrt(r.n) }));
}

describe('real streams: one topic per feature, shuffled and jittered, through Mosquitto', () => {
  let bed: TestBed;
  const cities = Object.keys(heldout.streams);
  const allSteps = cities.length * readWeather().get(cities[0]!)!.length;

  before(async () => (bed = await openTestBed()));
  after(() => bed.close());

  it('stores the training script\'s offline predictions and reproduces its held-out MAE and skill', async () => {
    const daemon = await replay(bed, 'clean', replayMessages('clean', 1), allSteps);
    const { worst, compared } = worstVsOffline(daemon, cities);
    assert.equal(compared, 730 * 6);
    assert.ok(worst <= 1e-5, `stored vs PyTorch offline predictions: max diff ${worst}`);

    // Online errors of forecasts issued and due inside the held-out year, pooled
    // over both stations: the way train.py computed the card's test metrics.
    const end = Date.parse('2015-12-31');
    const online = daemon.store!.db
      .prepare(
        `SELECT horizon, target, avg(abs(predicted - actual)) mae, avg(abs(persistence - actual)) pmae, count(*) n
         FROM forecast_errors WHERE issued_at >= ? AND target_time <= ? GROUP BY horizon, target`,
      )
      .all(Date.parse(heldout.from), end) as Array<{ horizon: number; target: string; mae: number; pmae: number; n: number }>;
    const metrics = (card.metrics as { test: { model: Record<string, { mae: number; n: number }>; persistence: Record<string, { mae: number }> } }).test;
    assert.equal(online.length, 6);
    for (const o of online) {
      const key = `${o.target}@${o.horizon}`;
      assert.equal(o.n, metrics.model[key]!.n, `${key}: same forecasts scored`);
      assert.ok(Math.abs(o.mae - metrics.model[key]!.mae) < 6e-5, `${key}: online MAE ${o.mae} vs card ${metrics.model[key]!.mae}`);
      assert.ok(Math.abs(o.pmae - metrics.persistence[key]!.mae) < 6e-5, `${key}: persistence ${o.pmae} vs card ${metrics.persistence[key]!.mae}`);
      const cardSkill = 1 - metrics.model[key]!.mae / metrics.persistence[key]!.mae;
      assert.equal(Math.sign(1 - o.mae / o.pmae), Math.sign(cardSkill), `${key}: skill sign`);
    }
    assert.equal(daemon.stats().deadLetters.late ?? 0, 0, 'jitter inside the lateness loses nothing');
  });

  it('calibrated intervals: on the held-out year, 80% and 95% intervals cover within 3 and 2 points of nominal at every horizon, no wider on average than a fixed interval of the same coverage', async () => {
    const daemon = await replay(bed, 'iv', replayMessages('iv', 5), allSteps);
    const rows = daemon.store!.db
      .prepare('SELECT horizon, target, predicted, actual, levels, bounds FROM forecast_errors WHERE issued_at >= ? AND target_time <= ?')
      .all(Date.parse(heldout.from), Date.parse('2015-12-31')) as Array<{ horizon: number; target: string; predicted: number; actual: number; levels: string; bounds: string }>;
    assert.equal(rows.length, 2 * (728 + 726 + 724), 'every scored forecast of the year has intervals');
    const cells = new Map<string, typeof rows>();
    for (const r of rows) {
      const key = `${r.target}@${r.horizon}`;
      cells.set(key, [...(cells.get(key) ?? []), r]);
    }
    const residuals = card.calibration!.residuals;
    const ratios: number[] = [];
    const report: string[] = [];
    for (const [key, cell] of cells) {
      [0.8, 0.95].forEach((level, l) => {
        let outside = 0;
        let covered = 0;
        let width = 0;
        for (const r of cell) {
          assert.deepEqual(JSON.parse(r.levels), [0.8, 0.95]);
          const b = JSON.parse(r.bounds) as number[];
          assert.ok(b[2 * l]! < b[2 * l + 1]!, `${key}: an interval, not a point`);
          if (b[2 * l]! > r.predicted || r.predicted > b[2 * l + 1]!) outside++;
          if (b[2 * l]! <= r.actual && r.actual <= b[2 * l + 1]!) covered++;
          width += b[2 * l + 1]! - b[2 * l]!;
        }
        const coverage = covered / cell.length;
        width /= cell.length;
        // A fixed interval from the card's residual quantiles, scaled about its centre to the same coverage on the same forecasts.
        const lo = residualQuantile(residuals[key]!.quantiles, (1 - level) / 2);
        const hi = residualQuantile(residuals[key]!.quantiles, (1 + level) / 2);
        const need = Math.ceil(coverage * cell.length);
        const scales = cell.map((r) => Math.abs(r.actual - r.predicted - (lo + hi) / 2) / ((hi - lo) / 2)).sort((a, b) => a - b);
        const fixedWidth = scales[need - 1]! * (hi - lo);
        ratios.push(width / fixedWidth);
        report.push(`${key} ${level}: coverage ${coverage.toFixed(3)}, width ${width.toFixed(2)} vs fixed ${fixedWidth.toFixed(2)}, forecast outside ${outside}`);
        assert.ok(Math.abs(coverage - level) <= (level === 0.8 ? 0.03 : 0.02), `${key} at ${level}: coverage ${coverage.toFixed(3)}\n${report.join('\n')}`);
      });
    }
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    assert.ok(mean <= 1, `adaptive / fixed width, mean over cells and levels: ${mean.toFixed(3)}\n${report.join('\n')}`);
    console.log(`# intervals on the 2015 replay (adaptive / fixed width ${mean.toFixed(3)}):\n# ${report.join('\n# ')}`);
  });

  it('threshold alert: temp_max above 30 in the next 3 days with probability 0.5 fires on the hot days of 2015; precision and recall beside the same alert on the point forecast; its state is published retained', async () => {
    const retained = new Map<string, { state: string; probability: number }>();
    const listener = await mqtt.connectAsync(bed.url, { clientId: 'alert-listener' });
    listener.on('message', (topic, payload) => retained.set(topic, JSON.parse(payload.toString()) as { state: string; probability: number }));
    await listener.subscribeAsync('tidecast/alert/#', { qos: 1 });
    const daemon = await replay(bed, 'alert', replayMessages('alert', 6), allSteps, {
      alerts: [{ name: 'hot', model: 'weather-lstm', target: 'temp_max', above: 30, probability: 0.5 }],
      publish: { enabled: true, topic: 'tidecast/forecast/{model}/{stream}' },
    });
    const db = daemon.store!.db;
    const events = db.prepare("SELECT stream, at, detail FROM events WHERE kind = 'alert:hot' ORDER BY stream, at").all() as Array<{ stream: string; at: number; detail: string }>;
    assert.ok(events.length > 0, 'the alert changed state');
    // Each stream's state after the forecast issued at t: its last event at or before t (off before any).
    const stateAt = (stream: string, t: number): boolean => {
      let on = false;
      for (const e of events) if (e.stream === stream && e.at <= t) on = (JSON.parse(e.detail) as { state: string }).state === 'on';
      return on;
    };
    const weather = readWeather();
    const point = db.prepare("SELECT max(value) FROM predictions WHERE stream = ? AND issued_at = ? AND target = 'temp_max'").pluck();
    const count = { alert: { tp: 0, fp: 0, fn: 0 }, point: { tp: 0, fp: 0, fn: 0 } };
    let hot = 0;
    for (const c of cities) {
      const days = weather.get(c)!;
      const byDate = new Map(days.map((d, i) => [d.date, i]));
      for (const date of heldout.streams[c]!.dates) {
        const i = byDate.get(date)!;
        // What happened: temp_max above 30 on any of the days the forecast covers (1 to 3 days ahead).
        const next = card.horizons.map((h) => days[i + h]?.values[1]);
        if (next.some((v) => v === undefined)) continue;
        const actual = next.some((v) => v! > 30);
        if (actual) hot++;
        const t = Date.parse(date);
        const verdicts = { alert: stateAt(slug(c), t), point: (point.get(slug(c), t) as number) > 30 };
        for (const k of ['alert', 'point'] as const) {
          if (verdicts[k] && actual) count[k].tp++;
          else if (verdicts[k]) count[k].fp++;
          else if (actual) count[k].fn++;
        }
      }
    }
    const pr = (x: { tp: number; fp: number; fn: number }): { precision: number; recall: number } => ({ precision: x.tp / (x.tp + x.fp), recall: x.tp / (x.tp + x.fn) });
    const a = pr(count.alert);
    const p = pr(count.point);
    console.log(`# temp_max above 30 within 3 days, 2015 (${hot} issue days with a hot day ahead): alert p=0.5 precision ${a.precision.toFixed(3)} recall ${a.recall.toFixed(3)} (${JSON.stringify(count.alert)}); point forecast precision ${p.precision.toFixed(3)} recall ${p.recall.toFixed(3)} (${JSON.stringify(count.point)})`);
    assert.ok(hot >= 20, `2015 had hot days (${hot})`);
    assert.ok(a.recall > p.recall, `the probability finds more of the hot days than the point forecast: ${a.recall} vs ${p.recall}`);
    // Against a base rate of about 1 issue day in 8, most of its alarms come before hot days.
    assert.ok(a.precision >= 0.75, `alert precision ${a.precision}, recall ${a.recall}`);
    // Published retained: each stream's state topic holds its last state.
    await waitFor(() => cities.every((c) => retained.has(`tidecast/alert/hot/${slug(c)}`)), 10_000, 'alert states published');
    for (const c of cities) {
      const last = events.filter((e) => e.stream === slug(c)).pop();
      const want = last ? (JSON.parse(last.detail) as { state: string }).state : 'off';
      await waitFor(() => retained.get(`tidecast/alert/hot/${slug(c)}`)?.state === want, 10_000, `${c}: published state ${want}`);
    }
    await listener.endAsync();
  });

  it('drift: a +4 °C ramp over two weeks on one station\'s temperature sensors raises model_drift within 45 steps of its start and clears once the sensor is fixed; the clean replay raises only New York\'s cold February of 2015', async () => {
    const start = Date.parse('2015-06-01');
    // Seattle's temp_max and temp_min read high from 1 June: +4 °C reached on 15 June, held to 31 August; right again from 1 September.
    const shift = (c: string, d: string): number => (c !== 'Seattle' || d < '2015-06-01' || d > '2015-08-31' ? 0 : 4 * Math.min(1, (Date.parse(d) - start) / (14 * DAY)));
    const retained = new Map<string, { state: string; reasons: string[] }>();
    const listener = await mqtt.connectAsync(bed.url, { clientId: 'drift-listener' });
    listener.on('message', (topic, payload) => retained.set(topic, JSON.parse(payload.toString()) as { state: string; reasons: string[] }));
    await listener.subscribeAsync(['tidecast/drift/#', 'homeassistant/binary_sensor/#'], { qos: 1 });
    const drifted = await replay(bed, 'drift', replayMessages('drift', 8, undefined, shift), allSteps, {
      publish: { enabled: true, topic: 'tidecast/forecast/{model}/{stream}' },
      homeAssistant: { discovery: true },
    });
    const clean = await replay(bed, 'nodrift', replayMessages('nodrift', 8), allSteps);

    // The daemon's events are the tests recomputed from the stored errors, change by change.
    const peaks = { drift: new Map(), clean: new Map() } as Record<'drift' | 'clean', Map<string, { up: number; down: number; upAt: string; downAt: string }>>;
    const got = { drift: driftEvents(drifted), clean: driftEvents(clean) };
    const want = { drift: recomputeDrift(drifted, 0.75, peaks.drift), clean: recomputeDrift(clean, 0.75, peaks.clean) };
    for (const run of ['drift', 'clean'] as const) {
      assert.deepEqual(got[run].map(({ cusum, ...e }) => e), want[run].map(({ cusum, ...e }) => e), `${run}: events vs recomputed`);
      got[run].forEach((e, i) => assert.ok(Math.abs(e.cusum - want[run][i]!.cusum) <= 0.02, `${run}: ${JSON.stringify(e)} vs ${JSON.stringify(want[run][i])}`));
    }
    const after = (e: DriftEpisode, from: string): number => (Date.parse(e.date) - Date.parse(from)) / DAY;
    const seattle = got.drift.filter((e) => e.stream === 'seattle');
    const on = seattle.find((e) => e.state === 'on' && e.date >= '2015-06-01');
    assert.ok(on, `Seattle drift raised (${JSON.stringify(seattle)})`);
    assert.equal(on.direction, 'up', 'actuals above the forecasts');
    assert.ok(after(on, '2015-06-01') <= 45, `raised ${after(on, '2015-06-01')} steps after the ramp started`);
    const off = seattle.find((e) => e.state === 'off' && e.target === on.target && e.date > on.date);
    assert.ok(off && after(off, '2015-09-01') <= 15, `cleared ${off ? after(off, '2015-09-01') : 'never'} steps after the sensor was fixed`);
    assert.deepEqual(seattle.filter((e) => e.date < '2015-06-01'), [], 'nothing before the drift');
    // The clean replay (2 stations × 2 targets × 4 years, 2015 held out): Seattle raises nothing; New York's temp_min is raised, downwards,
    // in February 2015 (its coldest February of the four years: the model's forecasts were too warm for weeks).
    assert.deepEqual(got.clean.filter((e) => e.stream === 'seattle'), []);
    assert.deepEqual(got.clean.filter((e) => e.state === 'on').map((e) => [e.stream, e.target, e.direction, e.date.slice(0, 7)]), [['new-york', 'temp_min', 'down', '2015-02']]);
    assert.deepEqual(got.drift.filter((e) => e.stream === 'new-york'), got.clean.filter((e) => e.stream === 'new-york'), 'the other station as in the clean run');

    // Counted, published retained, announced to Home Assistant.
    const text = await drifted.metrics.text();
    assert.match(text, new RegExp(`tidecast_drift_changes_total\\{model="weather-lstm",target="${on.target}",state="on"\\} [1-9]`));
    assert.match(text, /tidecast_drift_on\{model="weather-lstm",target="temp_max"\} 0/);
    await waitFor(() => retained.get(`tidecast/drift/weather-lstm/seattle/${on.target}`)?.state === 'off', 10_000, 'Seattle drift state published');
    await waitFor(() => [...retained.keys()].some((t) => t.startsWith('homeassistant/binary_sensor/') && t.includes('seattle') && t.includes('drift')), 10_000, 'binary sensor announced');
    await listener.endAsync();

    // What separates the drift from the weather: the largest sums of the drifted target (up, June to August) and of the
    // clean runs (New York's temp_min, down), for several allowances k, the sums not stopped at 2h: a threshold h
    // raises the drift and nothing in the clean runs only if it lies between them.
    const report: string[] = [];
    for (const k of [0.25, 0.5, 0.75, 1]) {
      const d = new Map<string, { up: number; down: number; upAt: string; downAt: string }>();
      const c = new Map<string, { up: number; down: number; upAt: string; downAt: string }>();
      recomputeDrift(drifted, k, d, Infinity);
      recomputeDrift(clean, k, c, Infinity);
      const worstClean = Math.max(...[...c.values()].map((p) => Math.max(p.up, p.down)));
      report.push(`k ${k}: Seattle ${on.target} drifted up to ${d.get(`seattle ${on.target}`)!.up.toFixed(1)} (${d.get(`seattle ${on.target}`)!.upAt}); clean runs' largest sum ${worstClean.toFixed(1)}`);
    }
    // The same by month: the drifted months' mean 1-day error against the clean months that stand out as far.
    const months = monthlyBias(drifted).filter((m) => /^seattle .* 2015-0[678]$/.test(m.key));
    const cleanByMonth = monthlyBias(clean);
    const cleanMonths = [...cleanByMonth].sort((a, b) => Math.abs(b.t) - Math.abs(a.t));
    assert.ok(months.length === 6 && months.every((m) => m.bias > 0), 'the drifted months err upwards');
    const fmt = (m: { key: string; bias: number; t: number }): string => `${m.key} ${m.bias.toFixed(2)} °C (t ${m.t.toFixed(1)})`;
    report.push(`1-day bias by month, drifted: ${months.map(fmt).join(', ')}`);
    report.push(`clean, the 4 months that stand out most: ${cleanMonths.slice(0, 4).map(fmt).join(', ')}`);
    const events = got.clean.filter((e) => e.state === 'on');
    const years = new Set(cleanByMonth.map((m) => m.key.slice(-7, -3))).size;
    const cells = new Set(cleanByMonth.map((m) => m.key.slice(0, -8))).size;
    const held = events.filter((e) => e.date >= '2015-01-01').length;
    console.log(`# drift (k 0.75, h 15): raised ${after(on, '2015-06-01')} steps after the ramp started, cleared ${after(off, '2015-09-01')} after the fix; clean replay: ${events.length} raised in ${cells * years} stream-target-years (${held} in the ${cells} of the held-out 2015)\n# ${report.join('\n# ')}`);
  });

  it('a 5-day hole in one station: its state is reset, nothing NaN is stored, it resumes; the other station is unaffected', async () => {
    const hole = (c: string, d: string): boolean => c === 'Seattle' && d >= '2015-03-01' && d <= '2015-03-05';
    const daemon = await replay(bed, 'gap', replayMessages('gap', 2, hole), allSteps - 4);
    const db = daemon.store!.db;
    const events = db.prepare("SELECT stream, kind, at FROM events WHERE kind = 'gap_reset'").all() as Array<{ stream: string; at: number }>;
    assert.deepEqual(events.map((e) => [e.stream, new Date(e.at).toISOString().slice(0, 10)]), [['seattle', '2015-03-06']]);
    const filled = db.prepare("SELECT ts, filled FROM steps WHERE stream = 'seattle' AND filled != ''").all() as Array<{ ts: number; filled: string }>;
    assert.deepEqual(filled.map((f) => new Date(f.ts).toISOString().slice(0, 10)), ['2015-03-01'], 'one step forward-filled (maxFillSteps 1)');
    const nonFinite = db.prepare('SELECT count(*) n FROM predictions WHERE value IS NULL OR abs(value) > 1e300').get() as { n: number };
    assert.equal(nonFinite.n, 0);
    const after = db.prepare("SELECT count(*) n FROM predictions WHERE stream = 'seattle' AND issued_at >= ?").get(Date.parse('2015-03-06')) as { n: number };
    assert.equal(after.n, (365 - 31 - 28 - 5) * 6, 'Seattle predicts every day from the reset on');
    assert.ok(worstVsOffline(daemon, ['New York']).worst <= 1e-5, 'New York equals the clean run');
    const before = worstVsOffline(daemon, ['Seattle'], (_c, d) => d >= '2015-03-01');
    assert.ok(before.worst <= 1e-5, 'Seattle before the hole equals the clean run');
  });

  it('duplicated and late messages leave the stored predictions unchanged; late ones are dead letters', async () => {
    const rand = prng(3);
    const groups = replayMessages('dup', 4);
    let late = 0;
    for (let t = 0; t < groups.length; t++) {
      const g = groups[t]!;
      // Duplicates: about 5% of messages again, later in the same day's batch.
      for (const m of g.filter(() => rand() < 0.05)) g.push({ ...m });
      // Late: every 50 days, a noon reading of 5 days ago (beyond the 2-day lateness).
      // (The same reading at the same time again would be a duplicate, not late.)
      if (t % 50 === 10) {
        const old = groups[t - 5]!.find((m) => m.topic.endsWith('/temp_max'))!;
        const body = JSON.parse(old.payload) as { date: string };
        g.push({ topic: old.topic, payload: JSON.stringify({ ...body, date: `${body.date}T12:00:00Z`, temp_max: -99 }) });
        late++;
      }
    }
    const daemon = await replay(bed, 'dup', groups, allSteps);
    assert.ok(worstVsOffline(daemon, cities).worst <= 1e-5, 'predictions equal the clean replay');
    const letters = daemon.store!.db.prepare("SELECT reason, count(*) n FROM dead_letters GROUP BY reason").all() as Array<{ reason: string; n: number }>;
    assert.deepEqual(letters, [{ reason: 'late', n: late }]);
    assert.ok(daemon.stats().duplicates > 500, `duplicates ignored: ${daemon.stats().duplicates}`);
  });
});
