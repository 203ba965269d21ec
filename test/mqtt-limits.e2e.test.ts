import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { tempDir } from './support/temp-dir.js';
import { haveMosquitto, TestBroker } from './support/broker.js';
import { rssBytes, startChild, waitReady } from './support/child.js';
import { countIn, publishAll, telemetry, waitFor, writeTestConfig } from './support/fixtures.js';


describe('oversized packets', () => {
  it('MQTT 5: maximumPacketSize (from mqtt.maxPayloadBytes) keeps a 50 MB message out of memory; a slightly large one is dead-lettered', async () => {
    assert.ok(haveMosquitto, 'MQTT 5 needs Debian mosquitto (apt-get install -y mosquitto): the embedded aedes speaks 3.1.1 only');
    const tmp = tempDir();
    const broker = new TestBroker(tmp.dir);
    await broker.start();
    const dbFile = path.join(tmp.dir, 'tidecast.db');
    const daemon = startChild(['run', '--config', writeTestConfig(tmp.dir, broker.url, { clientId: 'packet-size', maxPayloadBytes: 4096, mqtt: 'protocolVersion: 5' })]);
    try {
      await waitReady(daemon);
      const pid = daemon.proc.pid!;
      const before = rssBytes(pid);
      const pub = await mqtt.connectAsync(broker.url, { clientId: 'packet-size-pub', protocolVersion: 5 });
      try {
        // 50 MB: the broker may not send it to a client that said it takes packets of 4096 + 4096 bytes at most.
        await pub.publishAsync('sensors/big/ws1/telemetry', Buffer.alloc(50 * 1024 * 1024, 0x7b), { qos: 1 });
        // 6 KB: over the payload limit, under the packet size: dead-lettered as too_large with its first 1 KiB.
        await pub.publishAsync('sensors/big/ws2/telemetry', Buffer.alloc(6 * 1024, 0x7b), { qos: 1 });
      } finally {
        await pub.endAsync();
      }
      await publishAll(broker.url, 'packet-size-valid', telemetry(1, 10).map((m) => ({ topic: m.topic, payload: m.payload })));
      await waitFor(() => countIn(dbFile, 'SELECT count(*) n FROM steps') === 10, 30_000, 'valid traffic after the big message');
      await waitFor(() => countIn(dbFile, "SELECT count(*) n FROM dead_letters WHERE reason = 'too_large'") === 1, 10_000, 'the 6 KB message dead-lettered');
      assert.equal(countIn(dbFile, "SELECT max(length(payload)) n FROM dead_letters WHERE reason = 'too_large'"), 1024);
      assert.equal(countIn(dbFile, 'SELECT count(*) n FROM dead_letters'), 1, 'the 50 MB message never arrived');
      const grown = rssBytes(pid) - before;
      assert.ok(grown < 20 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
    } finally {
      daemon.proc.kill('SIGTERM');
      assert.equal(await daemon.exit, 0, daemon.stderr());
      await broker.stop();
      tmp.remove();
    }
  });
});
