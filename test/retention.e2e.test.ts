import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { metric, terminate } from './support/child.js';
import { countIn, retained, waitFor } from './support/fixtures.js';
import type { ConfigInput } from './support/test-config.js';
import { withDaemonProcess } from './support/with-daemon.js';

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
    // 0.00004 days: 3.5 s. Streams leave memory after 1 s idle (at a checkpoint, every second), are forgotten 3.5 s after their last message.
    const churn: ConfigInput = {
      store: { retentionDays: 0.00004, forgetStreamsAfterDays: 0.00004, pruneIntervalS: 1 },
      limits: { idleTtlS: 1 },
      durability: { checkpointIntervalS: 1 },
      homeAssistant: { discovery: true },
    };
    await withDaemonProcess(churn, async ({ child: daemon, http, url, dbFile, defer }) => {
      const CHURN = 40;
      const pub = await mqtt.connectAsync(url, { clientId: 'churn-pub' });
      defer(() => pub.end(true));
      for (let i = 0; i < CHURN; i++) await pub.publishAsync(`sensors/churn/dev${i}/telemetry`, payload(0), { qos: 1 });
      await waitFor(() => counts(dbFile).ids === CHURN, 10_000, 'every churned stream registered');
      const announcedCount = { n: 0 };
      let seen: string[] = [];
      const announced = async (): Promise<number> => (seen = [...(await retained(url, 'homeassistant/sensor/#')).keys()].filter((k) => k.includes('_churn_dev'))).length;
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
      let again = 0;
      for (let i = 0; i < 50 && again < 6; i++) {
        again = [...(await retained(url, 'homeassistant/sensor/#')).keys()].filter((k) => k.includes('_churn_dev0_')).length;
        if (again < 6) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(again, 6, 'and announced again');
      assert.equal(await terminate(daemon), 0, daemon.stderr());
    });
  });
});
