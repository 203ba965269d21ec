import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { InferenceEngine } from '../inference/engine.js';
import { CardScaler } from '../inference/scaler.js';
import type { StepResult } from '../inference/step-runner.js';
import { modelsDir } from '../paths.js';
import { readWeather, type WeatherDay } from './weather-data.js';

export interface DemoOptions {
  /** Shipped model to run (default weather-lstm). */
  model: string;
  /** Replayed days per second once the held-out year starts. */
  rate: number;
  /** Stop after this many seconds (0: run to the end of the data). */
  durationS: number;
  /** First day shown live; earlier days only warm the streams' state. */
  liveFrom: string;
  signal?: AbortSignal;
  log?: Logger;
  write(line: string): void;
}

export interface DemoSummary {
  model: string;
  days: number;
  steps: number;
  batches: number;
  streams: number;
  /** Live 1-day-ahead temp_max MAE of the model and of persistence over the days shown. */
  maeModel: number;
  maePersistence: number;
  scored: number;
}

const fmt = (x: number): string => x.toFixed(1).padStart(5);

/**
 * Replay Seattle and New York (vega-datasets weather.csv) as two live streams
 * through the stateful engine: each day is one step per stream, batched into one
 * session.run; each forecast is scored against the day it forecast when that day
 * arrives.
 */
export async function runEngineDemo(opts: DemoOptions): Promise<DemoSummary> {
  const file = path.join(modelsDir, `${opts.model}.onnx`);
  const latest = new Map<string, StepResult>();
  const engine = await InferenceEngine.load(file, {}, {
    maxDelayMs: 1,
    log: opts.log,
    onResults: (results) => results.forEach((r) => latest.set(r.streamId, r)),
  });
  const card = engine.model.card!;
  const scaler = new CardScaler(card);
  const cities = readWeather();
  const streams = [...cities.keys()];
  const days = Math.min(...[...cities.values()].map((d) => d.length));
  const iMax = card.features.findIndex((f) => f.name === 'temp_max');
  const forecastFor = new Map<string, number>(); // stream -> temp_max forecast for the next day
  let absModel = 0;
  let absPersist = 0;
  let scored = 0;
  let shown = 0;
  const started = Date.now();

  opts.write(`tidecast demo: ${engine.model.name} (${engine.model.mode}), streams ${streams.join(', ')}; days before ${opts.liveFrom} warm the state, then ${opts.rate} days/s`);
  opts.write(`${'date'.padEnd(10)}  ${'stream'.padEnd(9)} ${'actual'.padStart(5)} ${'fcst'.padStart(5)} ${'err'.padStart(5)}  next 3 days temp_max (°C)`);
  for (let t = 0; t < days; t++) {
    if (opts.signal?.aborted) break;
    if (opts.durationS > 0 && Date.now() - started > opts.durationS * 1000) break;
    const today = streams.map((s) => cities.get(s)![t]!) as WeatherDay[];
    for (const day of today) engine.submit(day.city, scaler.scaleFeatures(day.values));
    await engine.drain();
    const live = today[0]!.date >= opts.liveFrom;
    for (const day of today) {
      const actual = day.values[iMax]!;
      const prev = forecastFor.get(day.city);
      const yesterday = t > 0 ? cities.get(day.city)![t - 1]!.values[iMax]! : undefined;
      const r = latest.get(day.city);
      const out = r?.status === 'ok' ? scaler.unscaleOutput(r.output!) : null;
      if (out) forecastFor.set(day.city, out[0]!);
      else forecastFor.delete(day.city);
      if (!live) continue;
      if (prev !== undefined && yesterday !== undefined) {
        absModel += Math.abs(prev - actual);
        absPersist += Math.abs(yesterday - actual);
        scored++;
      }
      const next = out ? [0, 1, 2].map((h) => fmt(out[h * card.targets.length]!)).join(' ') : `(${r?.status ?? 'no output'})`;
      opts.write(`${day.date}  ${day.city.padEnd(9)} ${fmt(actual)} ${prev === undefined ? '    -' : fmt(prev)} ${prev === undefined ? '    -' : fmt(prev - actual)}  ${next}`);
    }
    if (live) {
      shown++;
      await sleep(1000 / opts.rate, undefined, { signal: opts.signal }).catch(() => undefined);
    }
  }
  await engine.close();
  return {
    model: engine.model.name,
    days: shown,
    steps: engine.stats.steps,
    batches: engine.stats.batches,
    streams: streams.length,
    maeModel: scored ? absModel / scored : NaN,
    maePersistence: scored ? absPersist / scored : NaN,
    scored,
  };
}
