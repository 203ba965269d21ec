import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** One day of one city from vega-datasets data/weather.csv. */
export interface WeatherDay {
  readonly city: string;
  readonly date: string;
  /** precipitation (mm), temp_max (°C), temp_min (°C), wind (m/s): the shipped models' feature order. */
  readonly values: readonly [number, number, number, number];
}

/** The weather.csv that npm ships in vega-datasets (resolved, not copied, so its provenance is plain). */
export function weatherCsvPath(): string {
  const entry = createRequire(import.meta.url).resolve('vega-datasets');
  return path.join(path.dirname(entry), '..', 'data', 'weather.csv');
}

/** Every row of weather.csv, per city in date order. */
export function readWeather(file = weatherCsvPath()): Map<string, WeatherDay[]> {
  const [header, ...rows] = readFileSync(file, 'utf8').trim().split(/\r?\n/);
  const cols = header!.split(',');
  const at = (name: string): number => cols.indexOf(name);
  const [iCity, iDate, iP, iMax, iMin, iWind] = ['location', 'date', 'precipitation', 'temp_max', 'temp_min', 'wind'].map(at);
  const byCity = new Map<string, WeatherDay[]>();
  for (const line of rows) {
    const f = line.split(',');
    const day: WeatherDay = {
      city: f[iCity!]!,
      date: f[iDate!]!,
      values: [Number(f[iP!]), Number(f[iMax!]), Number(f[iMin!]), Number(f[iWind!])],
    };
    let list = byCity.get(day.city);
    if (!list) byCity.set(day.city, (list = []));
    list.push(day);
  }
  for (const list of byCity.values()) list.sort((a, b) => a.date.localeCompare(b.date));
  return byCity;
}
