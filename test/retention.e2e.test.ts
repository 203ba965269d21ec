import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { tempDir } from './support/temp-dir.js';
import { TestBroker } from './support/broker.js';
import { metric, startChild, waitReady } from './support/child.js';
import { countIn, retained, waitFor, writeTestConfig } from './support/fixtures.js';

function counts(file: string): Record<'ids' | 'states' | 'models', number> {
  return {
    ids: countIn(file, "SELECT count(*) n FROM stream_ids WHERE name LIKE 'churn/%'"),
    states: countIn(file, "SELECT count(*) n FROM stream_state WHERE stream LIKE 'churn/%'"),
    models: countIn(file, "SELECT count(*) n FROM model_state WHERE stream LIKE 'churn/%'"),
  };
}

const payload = (day: number): string => JSON.stringify({ ts: Date.UTC(2015, 0, 1) / 1000 + day * 86_400, rain: 0, tmax: 12, tmin: 4, wind: 3 });

describe('retention of streams', () => {
  it('churned stream ids are forgotten once idle: state, ids and Home Assistant entities go; one that returns starts afresh', { timeout: 120_000 }, async () => {
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir);
    await broker.start();
    const dbFile = path.join(tmp.dir, 'tidecast.db');
    const file = writeTestConfig(tmp.dir, broker.url, { clientId: 'churn', homeAssistant: true });
    // 0.00004 days: 3.5 s. Streams leave memory after 1 s idle (at a checkpoint, every second), are forgotten 3.5 s after their last message.
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace('retentionDays: 36500', 'retentionDays: 0.00004, forgetStreamsAfterDays: 0.00004, pruneIntervalS: 1') +
        'limits: { idleTtlS: 1 }\ndurability: { checkpointIntervalS: 1 }\n',
    );
    const daemon = startChild(['run', '--config', file]);
    let pub: mqtt.MqttClient | null = null;
    try {
      const http = (await waitReady(daemon))!;
      const CHURN = 40;
      pub = await mqtt.connectAsync(broker.url, { clientId: 'churn-pub' });
      for (let i = 0; i < CHURN; i++) await pub.publishAsync(`sensors/churn/dev${i}/telemetry`, payload(0), { qos: 1 });
      await waitFor(() => counts(dbFile).ids === CHURN, 10_000, 'every churned stream registered');
      const announcedCount = { n: 0 };
      let seen: string[] = [];
      const announced = async (): Promise<number> => (seen = [...(await retained(broker.url, 'homeassistant/sensor/#')).keys()].filter((k) => k.includes('_churn_dev'))).length;
      for (let i = 0; i < 50 && (announcedCount.n = await announced()) < CHURN * 6; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(announcedCount.n, CHURN * 6, `each announced to Home Assistant (6 entities): ${seen.slice(0, 20).join(' ')}`);

      await waitFor(() => {
        const c = counts(dbFile);
        return c.ids === 0 && c.states === 0 && c.models === 0;
      }, 30_000, 'every churned stream forgotten');
      const text = await (await fetch(`${http}/metrics`)).text();
      assert.equal(metric(text, 'tidecast_streams_forgotten_total'), CHURN);
      assert.equal(await announced(), 0, 'their retained Home Assistant configs cleared');
      assert.ok(daemon.lines.some((l) => l.includes('"forgot idle streams"')));

      // One comes back: a new stream, from zero state, forecasting again.
      await pub.publishAsync('sensors/churn/dev0/telemetry', payload(1), { qos: 1 });
      await waitFor(() => counts(dbFile).ids === 1, 10_000, 'the returning stream registered again');
      await pub.endAsync();
      pub = null;
      let again = 0;
      for (let i = 0; i < 50 && again < 6; i++) {
        again = [...(await retained(broker.url, 'homeassistant/sensor/#')).keys()].filter((k) => k.includes('_churn_dev0_')).length;
        if (again < 6) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(again, 6, 'and announced again');
    } finally {
      pub?.end(true);
      daemon.proc.kill('SIGTERM');
      await daemon.exit;
      await broker.stop();
      tmp.remove();
    }
    assert.equal(daemon.proc.exitCode, 0, daemon.stderr());
  });
});
