import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { waitReady } from './support/child.js';
import { retained, waitFor } from './support/fixtures.js';
import { withBroker } from './support/test-bed.js';
import { withDaemon } from './support/with-daemon.js';

/** The retained value of a topic, read by a fresh client. */
async function retainedValue(url: string, topic: string): Promise<string | null> {
  return (await retained(url, topic, 200)).get(topic) ?? null;
}

describe('availability and replay', () => {
  it('retains online on connect, offline on a clean stop, and offline as the last will when killed', () =>
    withDaemon({ mqtt: { clientId: 'tidecast-avail' } }, async ({ daemon, url, configFile, spawn }) => {
      await waitFor(() => daemon.connected, 5000, 'connect');
      assert.equal(await retainedValue(url, 'tidecast/status'), 'online');
      await daemon.stop();
      assert.equal(await retainedValue(url, 'tidecast/status'), 'offline');

      // Killed without a goodbye: the broker publishes the will.
      const child = spawn(['run', '--config', configFile]);
      await waitReady(child, 15_000);
      assert.equal(await retainedValue(url, 'tidecast/status'), 'online');
      child.proc.kill('SIGKILL');
      await child.exit;
      let last: string | null = null;
      for (let i = 0; i < 20 && last !== 'offline'; i++) last = await retainedValue(url, 'tidecast/status');
      assert.equal(last, 'offline');
    }));

  it('tidecast replay publishes each CSV row as JSON on its templated topic', () =>
    withBroker(async ({ dir, url, spawn }) => {
      const csv = path.join(dir, 'w.csv');
      writeFileSync(csv, 'location,date,temp_max\nSeattle,2015-01-01,5.6\nNew York,2015-01-01,4.4\nSeattle,2015-01-02,5.6\n');
      const sub = await mqtt.connectAsync(url, { clientId: 'replay-sub' });
      const got: Array<[string, unknown]> = [];
      sub.on('message', (t, p) => got.push([t, JSON.parse(p.toString())]));
      await sub.subscribeAsync('weather/#', { qos: 1 });
      const child = spawn(['replay', csv, '--url', url, '--topic', 'weather/{location}/daily']);
      assert.equal(await child.exit, 0);
      assert.match(child.lines.join('\n'), /published 3 messages/);
      await waitFor(() => got.length === 3, 5000, 'three messages');
      assert.deepEqual(got[1], ['weather/new-york/daily', { location: 'New York', date: '2015-01-01', temp_max: 4.4 }]);
      await sub.endAsync();
    }));
});
