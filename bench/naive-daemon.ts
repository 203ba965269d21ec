/**
 * The baseline a user would write before reaching for tidecast: an MQTT
 * client, the model called once per message at batch 1 (carrying h/c per
 * stream in a Map, the friendliest version of the obvious script), one
 * better-sqlite3 insert per prediction, a commit every 500 messages. Run by
 * bench/e2e.ts as its own process against the same broker as tidecast.
 *
 * Argument: one JSON object { url, qos, db }. Prints "ready" once subscribed,
 * then `{"processed": N}` lines every 100 ms (messages whose predictions have
 * been committed).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import * as ort from 'onnxruntime-node';
import { packageRoot } from '../src/paths.js';

const o = JSON.parse(process.argv[2]!) as { url: string; qos: 0 | 1; db: string };
const card = JSON.parse(readFileSync(path.join(packageRoot, 'models', 'weather-lstm.card.json'), 'utf8')) as {
  scaler: { features: { mean: number[]; std: number[] }; targets: { mean: number[]; std: number[] } };
  horizons: number[];
  targets: Array<{ name: string }>;
  stepSeconds: number;
};
const session = await ort.InferenceSession.create(path.join(packageRoot, 'models', 'weather-lstm.onnx'), { intraOpNumThreads: 1 });
const LAYERS = 2;
const HIDDEN = 32;

const db = new Database(o.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec('CREATE TABLE IF NOT EXISTS predictions (stream TEXT, issued_at INTEGER, horizon INTEGER, target TEXT, value REAL, PRIMARY KEY (stream, issued_at, horizon, target))');
const insert = db.prepare('INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)');
db.exec('BEGIN');

const state = new Map<string, { h: Float32Array; c: Float32Array }>();
let inTx = 0;
let processed = 0;
const { mean, std } = card.scaler.features;
const tmean = card.scaler.targets.mean;
const tstd = card.scaler.targets.std;

// Messages one at a time, in order, as a simple script does (await each before the next).
let chain: Promise<void> = Promise.resolve();
async function handle(topic: string, payload: Buffer): Promise<void> {
  const [, group, device] = topic.split('/');
  const stream = `${group}/${device}`;
  const m = JSON.parse(payload.toString()) as { ts: number; rain: number; tmax: number; tmin: number; wind: number };
  const x = [m.rain, m.tmax, m.tmin, m.wind].map((v, i) => (v - mean[i]!) / std[i]!);
  let s = state.get(stream);
  if (!s) {
    s = { h: new Float32Array(LAYERS * HIDDEN), c: new Float32Array(LAYERS * HIDDEN) };
    state.set(stream, s);
  }
  const out = await session.run({
    input: new ort.Tensor('float32', Float32Array.from(x), [1, 1, 4]),
    h0: new ort.Tensor('float32', s.h, [LAYERS, 1, HIDDEN]),
    c0: new ort.Tensor('float32', s.c, [LAYERS, 1, HIDDEN]),
  });
  s.h = out.hn!.data as Float32Array;
  s.c = out.cn!.data as Float32Array;
  const y = out.output!.data as Float32Array;
  const T = card.targets.length;
  card.horizons.forEach((h, hi) => {
    card.targets.forEach((t, ti) => insert.run(stream, m.ts * 1000, h, t.name, y[hi * T + ti]! * tstd[ti]! + tmean[ti]!));
  });
  if (++inTx >= 500) {
    db.exec('COMMIT; BEGIN');
    processed += inTx;
    inTx = 0;
  }
}

const client = await mqtt.connectAsync(o.url, { clientId: `naive-${process.pid}`, clean: true });
client.on('message', (topic, payload) => {
  chain = chain.then(() => handle(topic, payload)).catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
  });
});
await client.subscribeAsync('sensors/+/+/telemetry', { qos: o.qos });
process.stdout.write('ready\n');
setInterval(() => process.stdout.write(JSON.stringify({ processed }) + '\n'), 100);
process.on('SIGTERM', () => {
  void chain.then(async () => {
    db.exec('COMMIT');
    db.close();
    await client.endAsync();
    process.exit(0);
  });
});
