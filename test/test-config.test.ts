import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../src/config/load-config.js';
import { withTempDir } from './support/temp-dir.js';
import { CSV_ROUTE, STATIONS_ROUTE, testConfig, writeConfig } from './support/test-config.js';

describe('the tests\' config builder', () => {
  it('merges each section key by key into the defaults, and replaces models and routes whole', () => {
    const c = testConfig({ mqtt: { clientId: 'x', maxPayloadBytes: 4096 }, models: { 'weather-gru': {} }, routes: [CSV_ROUTE], limits: { maxStreams: 3 } });
    assert.deepEqual(c.mqtt, { url: 'mqtt://127.0.0.1:1', clientId: 'x', reconnectPeriodMs: 100, maxPayloadBytes: 4096 });
    assert.deepEqual(c.models, { 'weather-gru': {} });
    assert.deepEqual(c.routes, [CSV_ROUTE]);
    assert.deepEqual(c.limits, { maxStreams: 3 });
    assert.deepEqual(c.batching, { maxBatch: 64, maxDelayMs: 2 }, 'a section not overridden keeps its defaults');
    assert.deepEqual(testConfig({ routes: undefined }).routes, [STATIONS_ROUTE], 'an undefined override changes nothing');
  });

  it('writes YAML that loads as the config it describes, the database beside the file', () =>
    withTempDir((dir) => {
      const file = writeConfig(dir, { mqtt: { url: 'mqtts://broker:8883', tls: { rejectUnauthorized: false } }, routes: [STATIONS_ROUTE, CSV_ROUTE], store: { maxSizeMiB: 3 } }, 'other');
      const { config } = loadConfig(file);
      assert.equal(file, `${dir}/other.yaml`);
      assert.equal(config.store.path, `${dir}/other.db`);
      assert.equal(config.store.maxSizeMiB, 3);
      assert.equal(config.store.retentionDays, 36500);
      assert.equal(config.mqtt.url, 'mqtts://broker:8883');
      assert.equal(config.mqtt.tls?.rejectUnauthorized, false);
      assert.deepEqual(config.routes.map((r) => [r.name, r.topic, r.stream, r.decoder.type]), [
        ['stations', 'sensors/+site/+device/telemetry', '{site}/{device}', 'json'],
        ['csv', 'csv/+station', 'csv/{station}', 'csv'],
      ]);
      assert.deepEqual(config.publish, { enabled: true, topic: 'forecast/{model}/{stream}', qos: 1, retain: false });
    }));
});
