import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { readWeather } from '../src/demo/weather-data.js';
import { TestBroker } from '../test/support/broker.js';
import { logged, metric, rssBytes, startChild, waitReady, type Child } from '../test/support/child.js';

/** Mosquitto on a free port without persistence: its autosave would pause the broker every second. */
export class BenchBroker extends TestBroker {
  constructor(dir: string) {
    super(dir, { persistence: false });
  }
}
export { metric, rssBytes, type Child };

/** Start of the synthetic event time: each stream's step t is this day plus t days. */
export const EPOCH_S = Date.UTC(2015, 0, 1) / 1000;

/** Real weather rows, cycled to give every stream plausible values. */
const DAYS = [...readWeather().values()].flat().map((d) => d.values);

/** How a bench publishes a step: one telemetry message with every feature, or one message per feature on its own topic (joined into one step by the daemon). */
export type BenchShape = 'telemetry' | 'features';
const FEATURE_KEYS = ['precipitation', 'temp_max', 'temp_min', 'wind'] as const;

/**
 * Message k of a run over `streams` streams. `telemetry`: stream k mod streams,
 * its step floor(k / streams). `features`: four messages per step (one per
 * feature), so message k is feature k mod 4 of stream floor(k / 4) mod streams.
 */
export function benchMessage(k: number, streams: number, sentMs?: number, shape: BenchShape = 'telemetry'): { topic: string; payload: string; stream: string; tsMs: number } {
  const per = shape === 'features' ? 4 : 1;
  const s = Math.floor(k / per) % streams;
  const t = Math.floor(k / (per * streams));
  const [rain, tmax, tmin, wind] = DAYS[(s * 37 + t) % DAYS.length]!;
  const ts = EPOCH_S + t * 86_400;
  const stream = `g${s % 100}/d${s}`;
  if (shape === 'features') {
    const f = k % 4;
    return { topic: `sensors/${stream}/${FEATURE_KEYS[f]}`, payload: JSON.stringify({ ts, [FEATURE_KEYS[f]!]: [rain, tmax, tmin, wind][f] }), stream, tsMs: ts * 1000 };
  }
  const payload = sentMs === undefined ? JSON.stringify({ ts, rain, tmax, tmin, wind }) : JSON.stringify({ ts, rain, tmax, tmin, wind, sent: sentMs });
  return { topic: `sensors/${stream}/telemetry`, payload, stream, tsMs: ts * 1000 };
}

/** A daemon config for benches: the shipped LSTM (or the given models) on the bench's messages, HTTP on a free port. */
/** `limits`: the body of the config's `limits` map (default: room for every bench stream). */
export function writeBenchConfig(dir: string, url: string, o: { name: string; publish?: boolean; extra?: string; limits?: string; models?: readonly string[]; shape?: BenchShape }): string {
  const file = path.join(dir, `${o.name}.yaml`);
  const models = o.models ?? ['weather-lstm'];
  const route =
    o.shape === 'features'
      ? `    topic: sensors/+group/+device/+feature
    stream: "{group}/{device}"
    models: [${models.join(', ')}]
    decoder: { type: json, partial: true, timestamp: { field: ts, format: epoch_s } }`
      : `    topic: sensors/+group/+device/telemetry
    stream: "{group}/{device}"
    models: [${models.join(', ')}]
    decoder: { type: json, timestamp: { field: ts, format: epoch_s }, features: { precipitation: rain, temp_max: tmax, temp_min: tmin, wind: wind } }`;
  writeFileSync(
    file,
    `
log: { level: info }
mqtt: { url: ${url}, clientId: ${o.name}, maxPayloadBytes: 4096 }
models: { ${models.map((m) => `${m}: {}`).join(', ')} }
routes:
  - name: stations
${route}
    resample: { emit: complete, wallClock: false }
store: { path: ${path.join(dir, `${o.name}.db`)}, retentionDays: 36500 }
publish: { enabled: ${o.publish === true}, topic: "forecast/{model}/{group}/{device}", qos: 1 }
http: { port: 0 }
limits: { ${o.limits ?? 'maxStreams: 1000000'} }
${o.extra ?? ''}
`,
  );
  return file;
}

/** A daemon child process with its metrics URL. */
export interface BenchDaemon {
  child: Child;
  http: string;
  /** Process start to "ready", ms. */
  readyMs: number;
  /** The daemon's "recovered from checkpoint" log line, when it logged one. */
  recovered: Record<string, unknown> | undefined;
  /** Forecasts committed so far (tidecast_predictions_total). */
  committed(): Promise<number>;
  /** CPU seconds so far by thread (tidecast_thread_cpu_seconds_total: main, writer, session:MODEL, http, wal, other). */
  threadCpu(): Promise<Record<string, number>>;
  stop(): Promise<number | null>;
}

export async function startDaemon(config: string): Promise<BenchDaemon> {
  const t0 = performance.now();
  const child = startChild(['run', '--config', config]);
  const http = await waitReady(child, 120_000);
  const readyMs = performance.now() - t0;
  if (!http) throw new Error('the daemon logged no HTTP endpoint');
  return {
    child,
    http,
    readyMs,
    recovered: logged(child, 'recovered from checkpoint'),
    committed: async () => metric(await (await fetch(`${http}/metrics`)).text(), 'tidecast_predictions_total'),
    threadCpu: async () => {
      const text = await (await fetch(`${http}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^tidecast_thread_cpu_seconds_total\{thread="([^"]+)"\} (\S+)$/gm)) out[m[1]!] = Number(m[2]);
      return out;
    },
    stop: async () => {
      child.proc.kill('SIGTERM');
      return child.exit;
    },
  };
}

/**
 * End a stopped daemon's persistent session, so that the broker stops queueing
 * every later message for it (which would load the broker in later scenarios).
 */
export async function endSession(url: string, clientId: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId, clean: true });
  await c.endAsync();
}

/** Poll `count` until it reaches `target` or stops moving for `stallMs`; returns the last value and when it last moved. */
export async function waitCount(count: () => Promise<number> | number, target: number, stallMs: number, everyMs = 50): Promise<{ n: number; at: number }> {
  let n = await count();
  let at = performance.now();
  while (n < target) {
    await sleep(everyMs);
    const m = await count();
    if (m > n) {
      n = m;
      at = performance.now();
    } else if (performance.now() - at > stallMs) break;
  }
  return { n, at };
}

/** The median (of an even count, the mean of the middle two). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Percentile of a sorted array (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
