import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { createLogger, silentLogger } from '../src/log.js';
import { haveMosquitto } from './support/broker.js';
import { terminate } from './support/child.js';
import { expectedForecasts, telemetry, waitFor, worstVsExpected, type StoredValue } from './support/fixtures.js';
import { withDaemon, withDaemonProcess } from './support/with-daemon.js';

describe('broker restart', () => {
  it('reconnects, receives what was published while it was away (persistent session), and carries state across', async () => {
    assert.ok(haveMosquitto, 'this test needs Debian mosquitto (apt-get install -y mosquitto): aedes keeps no sessions across a restart');
    const log = process.env.DEBUG_TIDECAST ? createLogger('debug', 2) : silentLogger;
    await withDaemon({ mqtt: { clientId: 'tidecast-restart', reconnectPeriodMs: 2000 } }, async ({ daemon, broker, url, dbFile, count }) => {
      const msgs = telemetry(1, 20);
      const predictions = (): number => count('SELECT count(*) n FROM predictions');
      const pub1 = await mqtt.connectAsync(url, { clientId: 'restart-pub-1' });
      for (const m of msgs.slice(0, 10)) await pub1.publishAsync(m.topic, m.payload, { qos: 1 });
      await waitFor(() => predictions() === 60, 10_000, 'the first 10 steps');
      await pub1.endAsync();

      await broker.stop();
      await waitFor(() => !daemon.connected, 5_000, 'the daemon to notice the broker is gone');
      await broker.start();
      const pub2 = await mqtt.connectAsync(url, { clientId: 'restart-pub-2' });
      for (const m of msgs.slice(10)) await pub2.publishAsync(m.topic, m.payload, { qos: 1 });
      assert.equal(daemon.connected, false, 'the second half was published while the daemon was away');
      await pub2.endAsync();
      await waitFor(() => predictions() === 120, 20_000, 'the steps published while the daemon was away');
      await daemon.stop();

      // State was carried across the outage: the 20 steps equal one uninterrupted sequence.
      const check = new Database(dbFile, { readonly: true });
      const rows = check.prepare("SELECT stream, issued_at, horizon, target, value FROM predictions WHERE horizon = 1 AND target = 'temp_max'").all() as StoredValue[];
      check.close();
      assert.equal(rows.length, msgs.length, 'every step predicted once');
      const worst = worstVsExpected(rows, await expectedForecasts(msgs));
      assert.ok(worst < 1e-4, `the 20 steps vs one uninterrupted sequence: max diff ${worst}`);
    }, { log });
  });

  it('a broker SIGKILLed and restarted mid-stream loses nothing: every message is predicted once', { timeout: 90_000 }, async () => {
    assert.ok(haveMosquitto, 'this test needs Debian mosquitto');
    await withDaemonProcess({ mqtt: { clientId: 'tidecast-broker-kill' } }, async ({ child, broker, url, count }) => {
      const msgs = telemetry(10, 40).sort((a, b) => a.ts - b.ts);
      // The publisher keeps its own session, so mqtt.js resends what the dead broker never acknowledged.
      const pub = await mqtt.connectAsync(url, { clientId: 'kill-pub', clean: false, reconnectPeriod: 100 });
      const sent = Promise.all(
        msgs.map(async (m, i) => {
          await sleep(i * 5); // spread over about 2 s
          await pub.publishAsync(m.topic, m.payload, { qos: 1 });
        }),
      );
      await sleep(700);
      await broker.stop('SIGKILL');
      await sleep(300);
      await broker.start();
      await sent;
      await pub.endAsync();
      await waitFor(() => count('SELECT count(*) n FROM predictions') >= msgs.length * 6, 30_000, 'every message predicted after the broker came back');
      assert.equal(await terminate(child), 0, child.stderr());
      assert.equal(count('SELECT count(*) n FROM steps'), msgs.length, 'every message stored once');
      assert.equal(count('SELECT count(*) n FROM predictions'), msgs.length * 6);
      assert.ok(child.lines.some((l) => l.includes('"disconnected from broker"')), 'the daemon saw the broker die');
    }, { saveEveryChange: true });
  });
});
