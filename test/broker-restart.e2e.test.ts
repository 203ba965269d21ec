import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { loadConfig } from '../src/config/load-config.js';
import { Daemon } from '../src/daemon/daemon.js';
import { silentLogger } from '../src/log.js';
import { tempDir } from './support/temp-dir.js';
import { TestBroker, haveMosquitto } from './support/broker.js';
import { startChild, waitReady } from './support/child.js';
import { expectedForecasts, telemetry, waitFor, worstVsExpected, writeTestConfig, type StoredValue } from './support/fixtures.js';

describe('broker restart', () => {
  it('reconnects, receives what was published while it was away (persistent session), and carries state across', async () => {
    assert.ok(haveMosquitto, 'this test needs Debian mosquitto (apt-get install -y mosquitto): aedes keeps no sessions across a restart');
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir);
    await broker.start();
    const file = writeTestConfig(tmp.dir, broker.url, { clientId: 'tidecast-restart', reconnectPeriodMs: 2000 });
    const daemon = new Daemon({ loaded: loadConfig(file), log: process.env.DEBUG_TIDECAST ? (await import('../src/log.js')).createLogger('debug', 2) : silentLogger });
    await daemon.start();
    const msgs = telemetry(1, 20);
    const db = daemon.store!.db;
    const predictions = (): number => (db.prepare('SELECT count(*) n FROM predictions').get() as { n: number }).n;
    try {
      const pub1 = await mqtt.connectAsync(broker.url, { clientId: 'restart-pub-1' });
      for (const m of msgs.slice(0, 10)) await pub1.publishAsync(m.topic, m.payload, { qos: 1 });
      await waitFor(() => predictions() === 60, 10_000, 'the first 10 steps');
      await pub1.endAsync();

      await broker.stop();
      await waitFor(() => !daemon.connected, 5_000, 'the daemon to notice the broker is gone');
      await broker.start();
      const pub2 = await mqtt.connectAsync(broker.url, { clientId: 'restart-pub-2' });
      for (const m of msgs.slice(10)) await pub2.publishAsync(m.topic, m.payload, { qos: 1 });
      assert.equal(daemon.connected, false, 'the second half was published while the daemon was away');
      await pub2.endAsync();
      await waitFor(() => predictions() === 120, 20_000, 'the steps published while the daemon was away');
    } finally {
      await daemon.stop();
      await broker.stop();
    }

    // State was carried across the outage: the 20 steps equal one uninterrupted sequence.
    const check = new (await import('better-sqlite3')).default(`${tmp.dir}/tidecast.db`, { readonly: true });
    const rows = check.prepare("SELECT stream, issued_at, horizon, target, value FROM predictions WHERE horizon = 1 AND target = 'temp_max'").all() as StoredValue[];
    assert.equal(rows.length, msgs.length, 'every step predicted once');
    const worst = worstVsExpected(rows, await expectedForecasts(msgs));
    assert.ok(worst < 1e-4, `the 20 steps vs one uninterrupted sequence: max diff ${worst}`);
    check.close();
    tmp.remove();
  });

  it('a broker SIGKILLed and restarted mid-stream loses nothing: every message is predicted once', { timeout: 90_000 }, async () => {
    assert.ok(haveMosquitto, 'this test needs Debian mosquitto');
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir, { saveEveryChange: true });
    await broker.start();
    const file = writeTestConfig(tmp.dir, broker.url, { clientId: 'tidecast-broker-kill', reconnectPeriodMs: 100 });
    const child = startChild(['run', '--config', file]);
    const dbFile = `${tmp.dir}/tidecast.db`;
    const msgs = telemetry(10, 40).sort((a, b) => a.ts - b.ts);
    try {
      await waitReady(child);
      // The publisher keeps its own session, so mqtt.js resends what the dead broker never acknowledged.
      const pub = await mqtt.connectAsync(broker.url, { clientId: 'kill-pub', clean: false, reconnectPeriod: 100 });
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
      const count = (sql: string): number => {
        const db = new Database(dbFile, { readonly: true });
        try {
          return (db.prepare(sql).get() as { n: number }).n;
        } finally {
          db.close();
        }
      };
      await waitFor(() => count('SELECT count(*) n FROM predictions') >= msgs.length * 6, 30_000, 'every message predicted after the broker came back');
      child.proc.kill('SIGTERM');
      assert.equal(await child.exit, 0, child.stderr());
      assert.equal(count('SELECT count(*) n FROM steps'), msgs.length, 'every message stored once');
      assert.equal(count('SELECT count(*) n FROM predictions'), msgs.length * 6);
      assert.ok(child.lines.some((l) => l.includes('"disconnected from broker"')), 'the daemon saw the broker die');
    } finally {
      child.proc.kill('SIGKILL');
      await broker.stop();
      tmp.remove();
    }
  });
});
