import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { readWeather } from '../../src/demo/weather-data.js';
import { loadModel } from '../../src/inference/model.js';
import { OutputHead } from '../../src/inference/output-head.js';
import { CardScaler } from '../../src/inference/scaler.js';
import { StepRunner } from '../../src/inference/step-runner.js';
import { modelPath } from './models.js';

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
    const [r] = await runner.run([{ streamId: m.stream, input: scaler.scaleInputs(m.raw, m.ts) }]);
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
