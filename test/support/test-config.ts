import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { RouteConfig, TidecastConfig } from '../../src/config/config.js';

/** Every key optional, at every depth: what tidecast.yaml may say (the schema fills in the rest). */
export type DeepPartial<T> = T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends object ? { readonly [K in keyof T]?: DeepPartial<T[K]> } : T;

/** A tidecast.yaml as a typed object. */
export type ConfigInput = DeepPartial<TidecastConfig>;
export type RouteInput = DeepPartial<RouteConfig>;

/** JSON telemetry on sensors/<site>/<device>/telemetry (as `telemetry()` makes it) into weather-lstm, stream "<site>/<device>". */
export const STATIONS_ROUTE: RouteInput = {
  name: 'stations',
  topic: 'sensors/+site/+device/telemetry',
  stream: '{site}/{device}',
  models: ['weather-lstm'],
  decoder: {
    type: 'json',
    timestamp: { field: 'ts', format: 'epoch_s' },
    features: { precipitation: 'rain', temp_max: 'tmax', temp_min: 'tmin', wind: 'wind' },
  },
  resample: { emit: 'complete', wallClock: false },
};

/** CSV rows (date, precipitation, temp_max, temp_min, wind) on csv/<station> into weather-lstm, stream "csv/<station>". */
export const CSV_ROUTE: RouteInput = {
  name: 'csv',
  topic: 'csv/+station',
  stream: 'csv/{station}',
  models: ['weather-lstm'],
  decoder: { type: 'csv', columns: ['date', 'precipitation', 'temp_max', 'temp_min', 'wind'], timestamp: { field: 'date', format: 'iso' } },
  resample: { emit: 'complete', wallClock: false },
};

/**
 * The tests' daemon config: weather-lstm on STATIONS_ROUTE, small quick
 * batches, nothing pruned, forecasts published to forecast/{model}/{stream}
 * at QoS 1, HTTP on a free loopback port, the database beside the file.
 * Each section of `overrides` is merged key by key into the default one;
 * `models` and `routes` replace the defaults whole.
 */
export function testConfig(overrides: ConfigInput = {}): ConfigInput {
  const defaults: ConfigInput = {
    log: { level: 'info' },
    mqtt: { url: 'mqtt://127.0.0.1:1', clientId: 'tidecast-test', reconnectPeriodMs: 100 },
    models: { 'weather-lstm': {} },
    routes: [STATIONS_ROUTE],
    batching: { maxBatch: 64, maxDelayMs: 2 },
    store: { retentionDays: 36500 },
    publish: { enabled: true, topic: 'forecast/{model}/{stream}', qos: 1 },
    http: { port: 0 },
  };
  const merged: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    const base = merged[key];
    const whole = key === 'models' || key === 'routes' || typeof value !== 'object' || typeof base !== 'object';
    merged[key] = whole ? value : { ...base, ...value };
  }
  return merged as ConfigInput;
}

/**
 * testConfig(overrides) written as YAML to `<dir>/<name>.yaml`, its database
 * `<name>.db` beside it unless `store.path` says otherwise. Returns the file.
 */
export function writeConfig(dir: string, overrides: ConfigInput = {}, name = 'tidecast'): string {
  const config = testConfig({ ...overrides, store: { path: `${name}.db`, ...overrides.store } });
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(config));
  return file;
}
