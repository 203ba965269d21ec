import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { loadConfig } from '../src/config/load-config.js';
import { Daemon } from '../src/daemon/daemon.js';
import { silentLogger } from '../src/log.js';
import { packageRoot } from '../src/paths.js';
import { tempDir } from './support/temp-dir.js';
import { TestBroker } from './support/broker.js';
import { retained, waitFor, writeTestConfig } from './support/fixtures.js';

/** The retained value of a topic, read by a fresh client. */
async function retainedValue(url: string, topic: string): Promise<string | null> {
  return (await retained(url, topic, 200)).get(topic) ?? null;
}

describe('availability and replay', () => {
  it('retains online on connect, offline on a clean stop, and offline as the last will when killed', async () => {
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir);
    await broker.start();
    const file = writeTestConfig(tmp.dir, broker.url, { clientId: 'tidecast-avail' });
    const daemon = new Daemon({ loaded: loadConfig(file), log: silentLogger });
    await daemon.start();
    await waitFor(() => daemon.connected, 5000, 'connect');
    assert.equal(await retainedValue(broker.url, 'tidecast/status'), 'online');
    await daemon.stop();
    assert.equal(await retainedValue(broker.url, 'tidecast/status'), 'offline');

    // Killed without a goodbye: the broker publishes the will.
    const child = spawn(process.execPath, [path.join(packageRoot, 'dist', 'src', 'main.js'), 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('"msg":"ready"'), 15_000, 'child ready');
    assert.equal(await retainedValue(broker.url, 'tidecast/status'), 'online');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    let last: string | null = null;
    for (let i = 0; i < 20 && last !== 'offline'; i++) last = await retainedValue(broker.url, 'tidecast/status');
    assert.equal(last, 'offline');
    await broker.stop();
    tmp.remove();
  });

  it('tidecast replay publishes each CSV row as JSON on its templated topic', async () => {
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir);
    await broker.start();
    const csv = path.join(tmp.dir, 'w.csv');
    writeFileSync(csv, 'location,date,temp_max\nSeattle,2015-01-01,5.6\nNew York,2015-01-01,4.4\nSeattle,2015-01-02,5.6\n');
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'replay-sub' });
    const got: Array<[string, unknown]> = [];
    sub.on('message', (t, p) => got.push([t, JSON.parse(p.toString())]));
    await sub.subscribeAsync('weather/#', { qos: 1 });
    const child = spawn(process.execPath, [path.join(packageRoot, 'dist', 'src', 'main.js'), 'replay', csv, '--url', broker.url, '--topic', 'weather/{location}/daily'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    assert.equal(await new Promise((r) => child.once('exit', r)), 0);
    assert.match(out, /published 3 messages/);
    await waitFor(() => got.length === 3, 5000, 'three messages');
    assert.deepEqual(got[1], ['weather/new-york/daily', { location: 'New York', date: '2015-01-01', temp_max: 4.4 }]);
    await sub.endAsync();
    await broker.stop();
    tmp.remove();
  });
});
