import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import type { LoadedConfig, TidecastConfig } from '../config/config.js';
import { loadConfig } from '../config/load-config.js';
import { Daemon } from '../daemon/daemon.js';
import type { ForecastMessage } from '../daemon/forecast-sink.js';
import type { Logger } from '../log.js';
import { packageRoot } from '../paths.js';
import { EmbeddedBroker } from './embedded-broker.js';
import { readWeather, type WeatherDay } from './weather-data.js';

export interface DemoOptions {
  /** A broker to use; without it an embedded aedes broker starts on a free port. */
  url?: string;
  /** SQLite file; default: a new temp dir. */
  db?: string;
  /** Days per second once the live period starts. */
  rate: number;
  /** Stop after this many seconds (0: at the end of the data). */
  durationS: number;
  /** First day shown live; earlier days are published at full speed to warm the state. */
  liveFrom: string;
  signal?: AbortSignal;
  log: Logger;
  write(line: string): void;
}

export interface DemoSummary {
  url: string;
  db: string;
  messages: number;
  predictions: number;
  streams: number;
  deadLetters: number;
  daysShown: number;
  scored: number;
  maeModel: number;
  maePersistence: number;
  /** weather-rain's label issued the day before, against the day's precipitation. */
  rainScored: number;
  rainHits: number;
}

const slug = (city: string): string => city.toLowerCase().replace(/[^a-z0-9]+/g, '-');
const fmt = (x: number): string => x.toFixed(1).padStart(5);

/** The weather message a station would publish: one JSON object per day. */
export function weatherPayload(day: WeatherDay): string {
  const [precipitation, temp_max, temp_min, wind] = day.values;
  return JSON.stringify({ date: day.date, precipitation, temp_max, temp_min, wind });
}

/**
 * `tidecast demo`: the real daemon (config/demo.yaml) subscribed to a broker,
 * fed Seattle and New York daily weather as two stations publishing JSON over
 * MQTT; it prints actual against forecast per stream, and the classifier's
 * dry/wet call, as they are committed to SQLite.
 */
export async function runMqttDemo(opts: DemoOptions): Promise<DemoSummary> {
  let broker: EmbeddedBroker | null = null;
  let url = opts.url;
  if (!url) {
    broker = new EmbeddedBroker();
    await broker.start();
    url = broker.url;
  }
  const db = opts.db ?? path.join(mkdtempSync(path.join(os.tmpdir(), 'tidecast-demo-')), 'tidecast-demo.db');
  const base = loadConfig(path.join(packageRoot, 'config', 'demo.yaml'));
  const config: TidecastConfig = {
    ...base.config,
    mqtt: { ...base.config.mqtt, url, clientId: `tidecast-demo-${process.pid}` },
    store: { ...base.config.store, path: path.resolve(db) },
  };
  const loaded: LoadedConfig = { ...base, config };

  // Forecasts (weather-lstm) and classifications (weather-rain) by stream and issue date, filled as the daemon commits them.
  const forecasts = new Map<string, ForecastMessage>();
  const classified = new Map<string, ForecastMessage>();
  const waiters = new Map<string, () => void>();
  const key = (stream: string, date: string): string => `${stream} ${date}`;
  const daemon = new Daemon({
    loaded,
    log: opts.log,
    onForecast: (f) => {
      const k = key(f.stream, f.issued_at.slice(0, 10));
      (f.model === 'weather-rain' ? classified : forecasts).set(k, f);
      if (forecasts.has(k) && classified.has(k)) waiters.get(k)?.();
    },
  });
  const cities = readWeather();
  const names = [...cities.keys()];
  const days = Math.min(...[...cities.values()].map((d) => d.length));
  const publisher = await mqtt.connectAsync(url, { clientId: `tidecast-demo-stations-${process.pid}` });
  let shown = 0;
  let scored = 0;
  let absModel = 0;
  let absPersist = 0;
  let rainScored = 0;
  let rainHits = 0;
  const started = Date.now();
  try {
    await daemon.start();
    opts.write(`tidecast demo: broker ${url}${broker ? ' (embedded)' : ''}, database ${db}`);
    const http = daemon.httpAddress;
    if (http) opts.write(`dashboard: http://${http.host}:${http.port}/  (metrics: http://${http.host}:${http.port}/metrics)`);
    opts.write(`stations ${names.map((c) => `weather/${slug(c)}/daily`).join(', ')} -> models weather-lstm, weather-rain; days before ${opts.liveFrom} warm the state`);
    opts.write(`forecasts are published to tidecast/forecast/<model>/<station> and stored in SQLite (tidecast query --db ${db})`);
    opts.write('');
    opts.write(`${'date'.padEnd(10)}  ${'stream'.padEnd(9)} ${'actual'.padStart(6)} ${'fcst'.padStart(5)} ${'err'.padStart(5)}   next 3 days temp_max (°C)   rain today / tomorrow (p)`);
    for (let t = 0; t < days; t++) {
      if (opts.signal?.aborted) break;
      if (opts.durationS > 0 && Date.now() - started > opts.durationS * 1000) break;
      const today = names.map((c) => cities.get(c)![t]!);
      const live = today[0]!.date >= opts.liveFrom;
      const arrived = today.map((d) => {
        const k = key(slug(d.city), d.date);
        return forecasts.has(k) && classified.has(k) ? Promise.resolve() : new Promise<void>((r) => waiters.set(k, r));
      });
      for (const d of today) publisher.publish(`weather/${slug(d.city)}/daily`, weatherPayload(d), { qos: 1 });
      if (!live) continue;
      // Live: wait for this day's forecasts (the warm-up days are committed before them, in order).
      await Promise.race([Promise.all(arrived), sleep(30_000)]);
      for (const d of today) {
        const s = slug(d.city);
        const actual = d.values[1];
        const prevDay = t > 0 ? cities.get(d.city)![t - 1]! : undefined;
        const prev = prevDay ? forecasts.get(key(s, prevDay.date))?.forecast[0]?.values.temp_max : undefined;
        const next = forecasts.get(key(s, d.date));
        if (prev !== undefined && prevDay) {
          absModel += Math.abs(prev - actual);
          absPersist += Math.abs(prevDay.values[1] - actual);
          scored++;
        }
        const ahead = next ? next.forecast.map((f) => fmt(f.values.temp_max!)).join(' ') : '(no forecast)';
        // The classifier: yesterday's call for today, against today's precipitation, then its call for tomorrow.
        const wet = d.values[0] > 0;
        const called = prevDay ? classified.get(key(s, prevDay.date))?.forecast[0]?.labels?.rain : undefined;
        if (called) {
          rainScored++;
          if ((called.label === 'wet') === wet) rainHits++;
        }
        const tomorrow = classified.get(key(s, d.date))?.forecast[0]?.labels?.rain;
        const rain = `${wet ? 'wet' : 'dry'}${called ? ((called.label === 'wet') === wet ? ' ✓' : ' ✗') : '  '} / ${tomorrow ? `${tomorrow.label} (${tomorrow.probability.toFixed(2)})` : '-'}`;
        opts.write(`${d.date}  ${s.padEnd(9)} ${fmt(actual)}  ${prev === undefined ? '    -' : fmt(prev)} ${prev === undefined ? '    -' : fmt(prev - actual)}   ${ahead.padEnd(26)}${rain}`);
      }
      for (const d of today) waiters.delete(key(slug(d.city), d.date));
      shown++;
      await sleep(1000 / opts.rate, undefined, { signal: opts.signal }).catch(() => undefined);
    }
  } finally {
    await publisher.endAsync();
    await daemon.stop();
    await broker?.stop();
  }
  const st = daemon.stats();
  return {
    url,
    db,
    messages: st.messages,
    predictions: st.predictions,
    streams: st.streams,
    deadLetters: Object.values(st.deadLetters).reduce((a, b) => a + b, 0),
    daysShown: shown,
    scored,
    maeModel: scored ? absModel / scored : NaN,
    maePersistence: scored ? absPersist / scored : NaN,
    rainScored,
    rainHits,
  };
}
