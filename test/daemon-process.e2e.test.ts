import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { logged, startChild, terminate, waitReady } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { withTempDir } from './support/temp-dir.js';
import { withBroker } from './support/test-bed.js';
import type { ConfigInput } from './support/test-config.js';
import { withDaemonProcess } from './support/with-daemon.js';

const SECRET = 'hunter2-Secret-Password';

/** A broker login whose password the daemon reads from the file pw. */
function withPasswordFile(dir: string): ConfigInput {
  writeFileSync(path.join(dir, 'pw'), SECRET + '\n');
  return { mqtt: { clientId: 'tidecast-child', username: 'tidecast', passwordFile: 'pw' } };
}

describe('the daemon as a child process', () => {
  it('SIGTERM: exits 0 with every accepted message\'s predictions in the database; secrets stay out of the logs', () =>
    withDaemonProcess(withPasswordFile, async ({ child, url, count }) => {
      const msgs = telemetry(20, 25);
      const pub = await mqtt.connectAsync(url, { clientId: 'child-pub' });
      await Promise.all(msgs.map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })));
      await pub.endAsync();
      child.proc.kill('SIGTERM'); // while steps are still queued and running
      assert.equal(await child.exit, 0, child.stderr());

      const stopped = logged(child, 'stopped') as { accepted: { stations?: number } } | undefined;
      assert.ok(stopped, 'a final "stopped" log line with totals');
      const accepted = stopped.accepted.stations ?? 0;
      assert.ok(accepted > 0, 'messages were accepted before the stop');
      assert.equal(count('SELECT count(*) n FROM steps'), accepted, 'every accepted message is stored as a step');
      assert.equal(count('SELECT count(*) n FROM predictions'), accepted * 6, 'and has its 6 predictions');
      const out = child.lines.join('\n') + child.stderr();
      assert.ok(!out.includes(SECRET), 'the broker password never appears in the output');
      assert.ok(logged(child, 'configuration loaded'), 'logs are JSON lines');
    }, { env: { TIDECAST_LOG__LEVEL: 'debug' } }));

  it('a password in mqtt.url is never printed: check-config, the logs (also of a lost broker), the dashboard and the API show it as *** or not at all', () =>
    withBroker(async ({ broker, url, writeConfig, spawn, publish }) => {
      const secret = 'PlantedUrlSecret42';
      const file = writeConfig({ mqtt: { url: url.replace('mqtt://', `mqtt://tidecast:${secret}@`), clientId: 'url-secret' } });
      const check = spawn(['check-config', '--config', file]);
      assert.equal(await check.exit, 0, check.stderr());
      const checked = check.lines.join('\n') + check.stderr();
      assert.match(checked, /broker mqtt:\/\/tidecast:\*\*\*@127\.0\.0\.1:\d+ as url-secret/, 'the broker is shown, its password masked');
      const child = spawn(['run', '--config', file], { TIDECAST_LOG__LEVEL: 'debug' });
      let served = '';
      const http = await waitReady(child);
      assert.match(String(logged(child, 'connected to broker')?.url), /^mqtt:\/\/tidecast:\*\*\*@/);
      await publish(telemetry(1, 3));
      // Every page and answer the HTTP endpoint serves.
      for (const p of ['/', '/metrics', '/healthz', '/readyz', '/api/streams', '/api/models', '/api/events', '/api/accuracy', '/api/streams/a%2Fb/series', '/api/nope']) {
        served += await (await fetch(`${http}${p}`)).text();
      }
      assert.match(served, /tidecast_messages_total/, 'the pages were read');
      // The broker goes away and comes back: the connection errors and reconnects are logged too.
      await broker.stop();
      await waitFor(() => logged(child, 'disconnected from broker') !== undefined, 15_000, 'the disconnect');
      await waitFor(() => logged(child, 'broker connection error') !== undefined, 15_000, 'a connection error');
      await broker.start();
      await waitFor(() => child.lines.filter((l) => l.includes('"subscribed"')).length >= 2, 20_000, 'the reconnect');
      assert.equal(await terminate(child), 0, child.stderr());
      const out = checked + child.lines.join('\n') + child.stderr() + served;
      assert.ok(!out.includes(secret), 'the password appears nowhere in the output');
    }));

  it('a bad config exits 78 and names the offending paths', () =>
    withTempDir(async (dir) => {
      const file = path.join(dir, 'bad.yaml');
      writeFileSync(file, 'mqtt:\n  url: http://nope\nmodels: {}\nroutes: []\nbatching: { maxDelayMs: -1 }\n');
      for (const cmd of ['run', 'check-config']) {
        const child = startChild([cmd, '--config', file]);
        assert.equal(await child.exit, 78, `${cmd}: ${child.stderr()}`);
        const err = child.stderr();
        assert.match(err, /TIDECAST_ERR_CONFIG/);
        assert.match(err, /mqtt\.url: must match pattern/);
        assert.match(err, /models: must NOT have fewer than 1 properties/);
        assert.match(err, /routes: must NOT have fewer than 1 items/);
        assert.match(err, /batching\.maxDelayMs: must be >= 0/);
      }
    }));
});
