import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { alertEntityId, deviceId, entityId } from '../src/mqtt/ha-discovery.js';
import { ExitCodes, NO_RESTART_EXIT_CODES } from '../src/exit-codes.js';
import { SERVICE_NODE_FLAGS } from '../src/node-flags.js';
import { packageRoot } from '../src/paths.js';
import { terminate, waitReady } from './support/child.js';
import { retained, telemetry, waitFor } from './support/fixtures.js';
import { withBroker } from './support/test-bed.js';
import { withDaemon, withDaemonProcess } from './support/with-daemon.js';

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('operations', () => {
  it('/metrics, /healthz and /readyz report the pipeline; readiness follows the broker', () =>
    withDaemon({ mqtt: { reconnectPeriodMs: 5000 } }, async ({ daemon, broker, url, http: base, publish }) => {
      assert.equal(daemon.httpAddress!.host, '127.0.0.1', 'loopback by default');
      await publish(telemetry(2, 6));
      const pub = await mqtt.connectAsync(url, { clientId: 'ops-bad' });
      await pub.publishAsync('sensors/a/b/telemetry', 'not json', { qos: 1 });
      await pub.endAsync();
      await waitFor(() => daemon.stats().predictions === 12 && (daemon.stats().deadLetters.bad_json ?? 0) === 1, 10_000, 'predictions');

      assert.deepEqual(await get(`${base}/healthz`), { status: 200, body: 'ok\n' });
      const ready = await get(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(JSON.parse(ready.body).checks, { started: true, brokerConnected: true, storeWritable: true, modelsLoaded: true });

      const m = (await get(`${base}/metrics`)).body;
      const value = (line: RegExp): number => Number(new RegExp(`^${line.source} (\\S+)$`, 'm').exec(m)?.[1]);
      assert.equal(value(/tidecast_messages_total\{route="stations"\}/), 12);
      assert.equal(value(/tidecast_dead_letters_total\{reason="bad_json"\}/), 1);
      assert.equal(value(/tidecast_predictions_total\{model="weather-lstm"\}/), 12);
      assert.equal(value(/tidecast_batch_size_count\{model="weather-lstm"\}/) > 0, true);
      assert.equal(value(/tidecast_inference_seconds_count\{model="weather-lstm"\}/) > 0, true);
      assert.equal(value(/tidecast_end_to_end_seconds_count\{model="weather-lstm"\}/), 12);
      assert.equal(value(/tidecast_active_streams\{model="weather-lstm"\}/), 2);
      assert.equal(value(/tidecast_queue_depth\{model="weather-lstm"\}/), 0);
      assert.equal(value(/tidecast_model_provider_info\{model="weather-lstm",provider="cpu"\}/), 1);
      assert.equal(value(/tidecast_broker_connected/), 1);
      // CPU by thread: each worker named itself; together they are the process's CPU time (to the 10 ms tick of each).
      const threads = Object.fromEntries([...m.matchAll(/^tidecast_thread_cpu_seconds_total\{thread="([^"]+)"\} (\S+)$/gm)].map((x) => [x[1]!, Number(x[2])]));
      for (const t of ['main', 'writer', 'wal', 'http', 'other']) assert.ok(threads[t]! >= 0, `thread ${t} in ${JSON.stringify(threads)}`);
      assert.ok(threads.main! > 0);
      const sum = Object.values(threads).reduce((a, b) => a + b, 0);
      // The daemon runs in this process: its /proc/self/stat has the total (utime + stime, in 10 ms ticks).
      const line = readFileSync('/proc/self/stat', 'utf8');
      const stat = line.slice(line.lastIndexOf(')') + 2).split(' ');
      const total = (Number(stat[11]) + Number(stat[12])) / 100;
      assert.ok(sum <= total + 0.01 && sum > total - 0.5, `threads ${sum} s, process ${total} s`);
      // 6 daily steps per stream: the 1-day forecasts of steps 1..5 have been scored.
      assert.ok(value(/tidecast_forecast_mae\{model="weather-lstm",horizon="1",target="temp_max"\}/) > 0);
      assert.ok(Number.isFinite(value(/tidecast_forecast_skill\{model="weather-lstm",horizon="3",target="temp_min"\}/)));

      // Every metric the Grafana dashboard queries exists.
      const dashboard = readFileSync(path.join(packageRoot, 'docs', 'grafana', 'tidecast.json'), 'utf8');
      const names = new Set([...dashboard.matchAll(/tidecast_[a-z_]+/g)].map((x) => x[0]));
      assert.ok(names.size >= 10);
      for (const n of names) assert.match(m, new RegExp(`^${n}[{ ]`, 'm'), `dashboard metric ${n} is exported`);

      await broker.stop();
      await waitFor(() => !daemon.connected, 5000, 'disconnect');
      const down = await get(`${base}/readyz`);
      assert.equal(down.status, 503);
      assert.equal(JSON.parse(down.body).checks.brokerConnected, false);
    }));

  it('the watchdog check fails while an inference is stuck with steps queued', () =>
    // On the main thread's session: the fault below replaces its run (a session thread has a session of its own).
    // The stuck batch never drains: the stop gives up on it after 200 ms.
    withDaemon({ models: { 'weather-lstm': { sessionThread: false } }, shutdown: { drainTimeoutMs: 200 } }, async ({ daemon, publish }) => {
      assert.equal(daemon.progressed(), true, 'idle counts as healthy');
      // Fault injection: the next session.run never returns.
      const session = daemon.engines.get('weather-lstm')!.model.session;
      session.run = () => new Promise(() => undefined);
      await publish(telemetry(3, 2));
      await waitFor(() => daemon.stats().queueDepth > 0, 5000, 'steps queued behind the stuck batch');
      daemon.progressed();
      assert.equal(daemon.progressed(), false, 'no batch completed and steps wait: withhold the ping');
    }));

  it('Home Assistant discovery and the stats topic, read back as retained messages', () =>
    withDaemon({ homeAssistant: { discovery: true }, stats: { intervalS: 1 }, alerts: [{ name: 'mild', model: 'weather-lstm', target: 'temp_max', above: -50, probability: 0.5 }] }, async ({ daemon, url, publish }) => {
      // An id of an earlier version, retained on the broker: announcing the entity under its new id clears it.
      const legacy = 'homeassistant/sensor/tidecast_weather-lstm_site0_dev0_temp_max_h1/config';
      const pub = await mqtt.connectAsync(url, { clientId: 'ops-ha-legacy' });
      await pub.publishAsync(legacy, '{"name":"old"}', { qos: 1, retain: true });
      await pub.endAsync();
      await publish(telemetry(1, 2));
      await waitFor(() => daemon.stats().predictions === 2, 10_000, 'forecasts');
      const configs = await retained(url, 'homeassistant/sensor/#');
      assert.equal(configs.size, 6, 'one entity per target and horizon, the legacy config cleared');
      assert.ok(!configs.has(legacy));
      const id = entityId('weather-lstm', 'site0/dev0', 'temp_max', 1);
      assert.match(id, /^tidecast_weather-lstm_site0_dev0_temp_max_h1_[0-9a-f]{12}$/, 'a readable prefix and a hash');
      const c = JSON.parse(configs.get(`homeassistant/sensor/${id}/config`)!) as Record<string, unknown> & { device: { identifiers: string[] } };
      assert.equal(c.state_topic, 'forecast/weather-lstm/site0/dev0');
      assert.equal(c.unit_of_measurement, '°C');
      assert.equal(c.device_class, 'temperature');
      assert.equal(c.availability_topic, 'tidecast/status');
      assert.deepEqual(c.device.identifiers, [deviceId('site0/dev0')]);
      assert.equal(c.unique_id, id);
      assert.match(String(c.value_template), /forecast\[0\]\.values\['temp_max'\]/);
      assert.match(String(c.json_attributes_template), /'intervals': value_json\.forecast\[0\]\.intervals\['temp_max'\]/, 'the intervals as an attribute');
      // The alert: a binary sensor of the same device, on from its retained state.
      const alerts = await retained(url, 'homeassistant/binary_sensor/#');
      const a = JSON.parse(alerts.get(`homeassistant/binary_sensor/${alertEntityId('weather-lstm', 'site0/dev0', 'mild')}/config`)!) as Record<string, unknown> & { device: { identifiers: string[] } };
      assert.equal(a.state_topic, 'tidecast/alert/mild/site0/dev0');
      assert.deepEqual(a.device.identifiers, [deviceId('site0/dev0')]);
      const state = JSON.parse((await retained(url, 'tidecast/alert/#')).get('tidecast/alert/mild/site0/dev0')!) as { state: string; probability: number };
      assert.deepEqual([state.state, state.probability], ['on', 1]);
      const stats = await retained(url, 'tidecast/stats', 1500);
      const s = JSON.parse(stats.get('tidecast/stats')!) as { messages: number; predictions: number };
      assert.deepEqual([s.messages, s.predictions], [2, 2]);
    }));

  it('systemd notify: READY=1, WATCHDOG=1, STOPPING=1 in that order over a real unix datagram socket; nothing without NOTIFY_SOCKET', () =>
    withBroker(async ({ dir, writeConfig, spawn, defer }) => {
      const unix = createRequire(import.meta.url)('unix-dgram') as {
        createSocket(type: 'unix_dgram', onMessage: (msg: Buffer) => void): { bind(path: string): void; close(): void };
      };
      const received: string[] = [];
      const socketPath = path.join(dir, 'notify.sock');
      const sock = unix.createSocket('unix_dgram', (msg) => received.push(msg.toString()));
      sock.bind(socketPath);
      defer(() => sock.close());
      const file = writeConfig();
      const runOnce = async (env: NodeJS.ProcessEnv): Promise<number | null> => {
        const child = spawn(['run', '--config', file], env);
        await waitReady(child, 15_000);
        await sleep(700); // a few watchdog periods (WATCHDOG_USEC 200 ms -> ping every 100 ms)
        return terminate(child);
      };
      assert.equal(await runOnce({ NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '200000' }), 0);
      await waitFor(() => received.some((m) => m.includes('STOPPING=1')), 3000, 'STOPPING=1');
      const kinds = received.map((m) => m.split('\n')[0]);
      const firstWatchdog = kinds.indexOf('WATCHDOG=1');
      assert.equal(kinds[0], 'READY=1');
      assert.ok(firstWatchdog > 0, `a WATCHDOG=1 after READY=1: ${kinds.join(' ')}`);
      assert.ok(kinds.filter((k) => k === 'WATCHDOG=1').length >= 3, 'pinged at half the interval');
      assert.equal(kinds[kinds.length - 1], 'STOPPING=1');
      assert.match(received[0]!, /STATUS=ready: weather-lstm/);

      received.length = 0;
      assert.equal(await runOnce({ NOTIFY_SOCKET: '', WATCHDOG_USEC: '200000' }), 0);
      await sleep(200);
      assert.deepEqual(received, [], 'nothing is sent without NOTIFY_SOCKET');
    }));

  it('SIGHUP applies a new log level without a restart', () =>
    withDaemonProcess({}, async ({ child, writeConfig, publish }) => {
      const out = (): string => child.lines.join('\n');
      const msgs = telemetry(1, 2);
      await publish(msgs.slice(0, 1));
      await waitFor(() => out().includes('"component":"mqtt"'), 1000, 'logs').catch(() => undefined);
      await sleep(300);
      assert.doesNotMatch(out(), /sample accepted/, 'debug lines are off at level info');
      writeConfig({ log: { level: 'debug' } });
      child.proc.kill('SIGHUP');
      await waitFor(() => out().includes('configuration reloaded'), 5000, 'reload');
      await publish(msgs.slice(1));
      await waitFor(() => /"level":20,.*"component":"ingest".*"msg":"sample accepted"/.test(out()), 5000, 'a debug line from a child logger');
    }));

  it('Home Assistant ids cannot collide: streams that differ only in replaced characters get entities of their own; a cap bounds them', () =>
    // 6 entities a stream (3 horizons x 2 targets of weather-lstm's card): room for 3 streams.
    withDaemon({ homeAssistant: { discovery: true } }, async ({ daemon, url }) => {
      const pub = await mqtt.connectAsync(url, { clientId: 'ops-ha-ids-pub' });
      for (const site of ['garden', 'garden%', 'garden_x', 'shed']) {
        await pub.publishAsync(`sensors/${site}/ws1/telemetry`, JSON.stringify({ ts: 1_420_070_400, rain: 0, tmax: 10, tmin: 5, wind: 2 }), { qos: 1 });
      }
      await pub.endAsync();
      await waitFor(() => daemon.stats().predictions === 4, 10_000, 'forecasts');
      const configs = await retained(url, 'homeassistant/sensor/#');
      const owners = new Map<string, string>();
      for (const [topic, text] of configs) {
        if (text === '') continue;
        const c = JSON.parse(text) as { state_topic: string; unique_id: string };
        assert.ok(!owners.has(c.unique_id), `unique_id ${c.unique_id} once`);
        owners.set(c.unique_id, c.state_topic);
        assert.equal(topic, `homeassistant/sensor/${c.unique_id}/config`);
      }
      assert.equal(owners.size, 18, 'the first three streams, each its own 6 entities; the fourth over homeAssistant.maxEntities');
      const streams = new Set(owners.values());
      assert.deepEqual([...streams].sort(), ['forecast/weather-lstm/garden%/ws1', 'forecast/weather-lstm/garden/ws1', 'forecast/weather-lstm/garden_x/ws1']);
      assert.notEqual(entityId('weather-lstm', 'garden/ws1', 'temp_max', 1), entityId('weather-lstm', 'garden%/ws1', 'temp_max', 1));
      assert.notEqual(deviceId('garden/ws1'), deviceId('garden%/ws1'));
    }, { env: { TIDECAST_HOME_ASSISTANT__MAX_ENTITIES: '18' } }));

  it('the unit file verifies, scores an exposure of 1.5 or less, limits restarts and never restarts into a data or config error', async () => {
    const unit = path.join(packageRoot, 'systemd', 'tidecast.service');
    const run = (args: string[]): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const p = spawn('systemd-analyze', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (out += d.toString()));
        p.on('error', (err) => resolve({ code: -1, out: `systemd-analyze not found (apt-get install -y systemd): ${err.message}` }));
        p.on('exit', (code) => resolve({ code, out }));
      });
    const execStart = /^ExecStart=(.*)$/m.exec(readFileSync(unit, 'utf8'))?.[1] ?? '';
    assert.ok(execStart.startsWith(['/usr/bin/node', ...SERVICE_NODE_FLAGS, ''].join(' ')), `node's flags (src/node-flags.ts) in ExecStart: ${execStart}`);
    const verify = await run(['verify', unit]);
    assert.equal(verify.code, 0, verify.out);
    assert.equal(verify.out.trim(), '', 'verify is clean');
    const security = await run(['security', '--offline=true', unit]);
    const m = /Overall exposure level for tidecast\.service: (\d+\.\d+)/.exec(security.out);
    assert.ok(m, security.out.slice(-500));
    assert.ok(Number(m[1]) <= 1.5, `exposure ${m[1]}`);

    const text = readFileSync(unit, 'utf8');
    const unitSection = text.slice(text.indexOf('[Unit]'), text.indexOf('[Service]'));
    assert.match(unitSection, /^StartLimitIntervalSec=\d+$/m, 'a start limit (in [Unit], where systemd reads it)');
    assert.match(unitSection, /^StartLimitBurst=\d+$/m);
    const prevent = /^RestartPreventExitStatus=(.*)$/m.exec(text)?.[1]?.split(/\s+/).map(Number).sort((a, b) => a - b);
    assert.deepEqual(prevent, [...NO_RESTART_EXIT_CODES].sort((a, b) => a - b), 'the exit codes a restart cannot fix (src/exit-codes.ts)');
    for (const code of [ExitCodes.LOCKED, ExitCodes.UNAVAILABLE]) assert.ok(!prevent!.includes(code), `${code} can pass on a restart`);
    // The password credential is where the example config reads it.
    const credential = /^LoadCredential=([^:]+):/m.exec(text)?.[1];
    assert.ok(readFileSync(path.join(packageRoot, 'config', 'tidecast.yaml'), 'utf8').includes(`passwordFile: $CREDENTIALS_DIRECTORY/${credential}`));
  });
});
