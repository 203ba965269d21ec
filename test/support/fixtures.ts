import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { readWeather } from '../../src/demo/weather-data.js';
import { loadModel } from '../../src/inference/model.js';
import { OutputHead } from '../../src/inference/output-head.js';
import { CardScaler } from '../../src/inference/scaler.js';
import { StepRunner } from '../../src/inference/step-runner.js';
import { modelPath } from './models.js';

/** A daemon config for tests: JSON telemetry on sensors/<site>/<device>/telemetry, weather-lstm. */
export function writeTestConfig(dir: string, brokerUrl: string, extra: { clientId?: string; reconnectPeriodMs?: number; passwordFile?: string; maxPayloadBytes?: number; homeAssistant?: boolean; statsIntervalS?: number; sessionThread?: boolean; mqtt?: string } = {}): string {
  const file = path.join(dir, 'tidecast.yaml');
  writeFileSync(
    file,
    `
log: { level: info }
mqtt:
  url: ${brokerUrl}
  clientId: ${extra.clientId ?? 'tidecast-test'}
  reconnectPeriodMs: ${extra.reconnectPeriodMs ?? 200}
  maxPayloadBytes: ${extra.maxPayloadBytes ?? 4096}
${extra.passwordFile ? `  username: tidecast\n  passwordFile: ${extra.passwordFile}\n` : ''}${extra.mqtt ? `  ${extra.mqtt}\n` : ''}
models:
  weather-lstm: {${extra.sessionThread === false ? ' sessionThread: false ' : ''}}
routes:
${STATIONS_ROUTE}
  - name: csv
    topic: csv/+station
    stream: "csv/{station}"
    models: [weather-lstm]
    decoder:
      type: csv
      columns: [date, precipitation, temp_max, temp_min, wind]
      timestamp: { field: date, format: iso }
    resample: { emit: complete, wallClock: false }
batching: { maxBatch: 64, maxDelayMs: 2 }
store: { path: ${path.join(dir, 'tidecast.db')}, retentionDays: 36500 }
publish: { enabled: true, topic: "forecast/{model}/{site}/{device}", qos: 1 }
http: { port: 0 }
${extra.homeAssistant ? 'homeAssistant: { discovery: true }\n' : ''}${extra.statsIntervalS ? `stats: { intervalS: ${extra.statsIntervalS} }\n` : ''}`,
  );
  return file;
}

/** writeTestConfig's JSON telemetry route (sensors/<site>/<device>/telemetry → weather-lstm), as YAML list items. */
export const STATIONS_ROUTE = `  - name: stations
    topic: sensors/+site/+device/telemetry
    stream: "{site}/{device}"
    models: [weather-lstm]
    decoder:
      type: json
      timestamp: { field: ts, format: epoch_s }
      features: { precipitation: rain, temp_max: tmax, temp_min: tmin, wind: wind }
    resample: { emit: complete, wallClock: false }`;

export interface DaemonConfigOptions {
  url: string;
  clientId: string;
  /** File and database base name (default tidecast). */
  name?: string;
  /** YAML under `models:` (default weather-lstm) and under `routes:` (default STATIONS_ROUTE). */
  models?: string;
  routes?: string;
  /** Extra keys inside `store:`, e.g. `maxSizeMiB: 3`. */
  store?: string;
  /** Serve HTTP on a free port (default) or not at all. */
  http?: boolean;
  /** Publish forecasts to forecast/{model}/{stream} at QoS 1 (default: off). */
  publish?: boolean;
  /** Further top-level sections, e.g. `limits: { maxStreams: 10 }`. */
  extra?: string;
}

/** A daemon config for reliability tests: publishing off, HTTP on a free port, the given sections. */
export function writeDaemonConfig(dir: string, o: DaemonConfigOptions): string {
  const name = o.name ?? 'tidecast';
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `
log: { level: info }
mqtt: { url: ${o.url}, clientId: ${o.clientId}, reconnectPeriodMs: 100 }
models:
${o.models ?? '  weather-lstm: {}'}
routes:
${o.routes ?? STATIONS_ROUTE}
batching: { maxBatch: 64, maxDelayMs: 2 }
store: { path: ${path.join(dir, `${name}.db`)}, retentionDays: 36500${o.store ? `, ${o.store}` : ''} }
publish: ${o.publish ? '{ enabled: true, topic: "forecast/{model}/{stream}", qos: 1 }' : '{ enabled: false }'}
http: ${o.http === false ? '{ enabled: false }' : '{ port: 0 }'}
${o.extra ?? ''}
`,
  );
  return file;
}

/** Real weather rows as telemetry messages: stream i reads the data from day offset 37·i. */
export function telemetry(streams: number, steps: number): Array<{ stream: string; topic: string; ts: number; raw: number[]; payload: string }> {
  const days = [...readWeather().values()].flat();
  const out: Array<{ stream: string; topic: string; ts: number; raw: number[]; payload: string }> = [];
  for (let s = 0; s < streams; s++) {
    for (let t = 0; t < steps; t++) {
      const d = days[(s * 37 + t) % days.length]!;
      const ts = Date.UTC(2015, 0, 1) / 1000 + t * 86400;
      const [rain, tmax, tmin, wind] = d.values;
      out.push({
        stream: `site${s % 3}/dev${s}`,
        topic: `sensors/site${s % 3}/dev${s}/telemetry`,
        ts: ts * 1000,
        raw: [rain, tmax, tmin, wind],
        payload: JSON.stringify({ ts, rain, tmax, tmin, wind }),
      });
    }
  }
  return out;
}

/** Poll until `check` returns true or the time is up. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Retained messages under a filter, read by a fresh client after `waitMs`. */
export async function retained(url: string, filter: string, waitMs = 300): Promise<Map<string, string>> {
  const c = await mqtt.connectAsync(url, { clientId: `peek-${Math.random().toString(16).slice(2)}` });
  const got = new Map<string, string>();
  // An empty payload deletes a retained message (MQTT 3.1.1 §3.3.1.3); one that arrives live while we listen takes it away.
  c.on('message', (t, p) => (p.length === 0 ? got.delete(t) : got.set(t, p.toString())));
  await c.subscribeAsync(filter, { qos: 1 });
  await sleep(waitMs);
  await c.endAsync();
  return got;
}

/** The key of one forecast value: stream, issue time (ms), horizon and target, as in the predictions table. */
export const forecastKey = (stream: string, issuedAt: number, horizon: number, target: string): string => `${stream}@${issuedAt}|${horizon}|${target}`;

/** What a shipped model (weather-lstm by default) computes for each stream's sequence run directly, in physical units, keyed by forecastKey. */
export async function expectedForecasts(msgs: ReadonlyArray<{ stream: string; ts: number; raw: number[] }>, name = 'weather-lstm'): Promise<Map<string, number>> {
  const model = await loadModel(modelPath(name));
  const runner = new StepRunner(model);
  const scaler = new CardScaler(model.card!);
  const head = new OutputHead(model.card!);
  const want = new Map<string, number>();
  for (const m of msgs) {
    const [r] = await runner.run([{ streamId: m.stream, input: scaler.scaleFeatures(m.raw) }]);
    for (const x of head.read(r!.output!)) want.set(forecastKey(m.stream, m.ts, x.horizon, x.target), x.value);
  }
  await model.session.release();
  return want;
}

/** A stored prediction as the tests select it. */
export interface StoredValue { stream: string; issued_at: number; horizon: number; target: string; value: number }

/** Largest |stored - expected| over the given stored predictions; a prediction with no expected value fails the test. */
export function worstVsExpected(rows: readonly StoredValue[], want: ReadonlyMap<string, number>): number {
  let worst = 0;
  for (const r of rows) {
    const w = want.get(forecastKey(r.stream, r.issued_at, r.horizon, r.target));
    assert.ok(w !== undefined, `unexpected prediction ${r.stream}@${r.issued_at} +${r.horizon} ${r.target}`);
    worst = Math.max(worst, Math.abs(w - r.value));
  }
  return worst;
}

/** Publish at QoS 1 from a fresh client, `window` messages in flight at a time. */
export async function publishAll(url: string, clientId: string, msgs: ReadonlyArray<{ topic: string; payload: string | Buffer }>, window = Infinity): Promise<void> {
  const pub = await mqtt.connectAsync(url, { clientId });
  try {
    for (let i = 0; i < msgs.length; i += window) {
      await Promise.all(msgs.slice(i, i + window).map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })));
    }
  } finally {
    await pub.endAsync();
  }
}

/** The number a `SELECT count(*) n …` (or any query of one row with a column n) gives on a database file, read-only. */
export function countIn(file: string, sql: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(sql).get() as { n: number | null }).n ?? 0;
  } finally {
    db.close();
  }
}
