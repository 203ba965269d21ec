import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { haveMosquitto } from './support/broker.js';
import { rssBytes, terminate } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { withDaemonProcess } from './support/with-daemon.js';


describe('oversized packets', () => {
  it('MQTT 5: maximumPacketSize (from mqtt.maxPayloadBytes) keeps a 50 MB message out of memory; a slightly large one is dead-lettered', async () => {
    assert.ok(haveMosquitto, 'MQTT 5 needs Debian mosquitto (apt-get install -y mosquitto): the embedded aedes speaks 3.1.1 only');
    await withDaemonProcess({ mqtt: { clientId: 'packet-size', maxPayloadBytes: 4096, protocolVersion: 5 } }, async ({ child: daemon, url, publish, count }) => {
      const pid = daemon.proc.pid!;
      const before = rssBytes(pid);
      const pub = await mqtt.connectAsync(url, { clientId: 'packet-size-pub', protocolVersion: 5 });
      try {
        // 50 MB: the broker may not send it to a client that said it takes packets of 4096 + 4096 bytes at most.
        await pub.publishAsync('sensors/big/ws1/telemetry', Buffer.alloc(50 * 1024 * 1024, 0x7b), { qos: 1 });
        // 6 KB: over the payload limit, under the packet size: dead-lettered as too_large with its first 1 KiB.
        await pub.publishAsync('sensors/big/ws2/telemetry', Buffer.alloc(6 * 1024, 0x7b), { qos: 1 });
      } finally {
        await pub.endAsync();
      }
      await publish(telemetry(1, 10));
      await waitFor(() => count('SELECT count(*) n FROM steps') === 10, 30_000, 'valid traffic after the big message');
      await waitFor(() => count("SELECT count(*) n FROM dead_letters WHERE reason = 'too_large'") === 1, 10_000, 'the 6 KB message dead-lettered');
      assert.equal(count("SELECT max(length(payload)) n FROM dead_letters WHERE reason = 'too_large'"), 1024);
      assert.equal(count('SELECT count(*) n FROM dead_letters'), 1, 'the 50 MB message never arrived');
      const grown = rssBytes(pid) - before;
      assert.ok(grown < 20 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
      assert.equal(await terminate(daemon), 0, daemon.stderr());
    });
  });
});
