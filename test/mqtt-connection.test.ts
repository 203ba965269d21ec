import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import pino from 'pino';
import { loadConfig } from '../src/config/load-config.js';
import { silentLogger } from '../src/log.js';
import { MqttConnection } from '../src/mqtt/mqtt-connection.js';
import { waitFor } from './support/fixtures.js';
import { withTempDir } from './support/temp-dir.js';
import { withBroker } from './support/test-bed.js';
import { writeConfig } from './support/test-config.js';

/** MQTT fixed-header byte of a PUBACK. */
const PUBACK = 0x40;

/**
 * Counts this process's socket writes that carry PUBACKs (an observer on
 * net.Socket's write hooks, which it calls through unchanged), and the
 * PUBACKs they carry (each is 4 bytes: 0x40, 0x02, packet id).
 */
function countPubackWrites(): { writes: number; pubacks: number; restore(): void } {
  const proto = net.Socket.prototype as unknown as {
    _write(chunk: Buffer, enc: string, cb: () => void): void;
    _writev(chunks: Array<{ chunk: Buffer }>, cb: () => void): void;
  };
  const { _write, _writev } = proto;
  const seen = { writes: 0, pubacks: 0, restore: () => Object.assign(proto, { _write, _writev }) };
  const count = (chunks: Buffer[]): void => {
    const bytes = Buffer.concat(chunks);
    let acks = 0;
    for (let at = 0; at + 4 <= bytes.length && bytes[at] === PUBACK && bytes[at + 1] === 2; at += 4) acks++;
    if (acks > 0) {
      seen.writes++;
      seen.pubacks += acks;
    }
  };
  proto._write = function (this: unknown, chunk, enc, cb) {
    count([Buffer.from(chunk)]);
    return _write.call(this, chunk, enc, cb);
  };
  proto._writev = function (this: unknown, chunks, cb) {
    count(chunks.map((c) => Buffer.from(c.chunk)));
    return _writev.call(this, chunks, cb);
  };
  return seen;
}

/** Records the sockets of this process that turn Nagle's algorithm off (an observer on net.Socket's setNoDelay, which it calls through). */
function watchNoDelay(): { ports: number[]; restore(): void } {
  const proto = net.Socket.prototype;
  const { setNoDelay } = proto;
  const seen = { ports: [] as number[], restore: () => Object.assign(proto, { setNoDelay }) };
  proto.setNoDelay = function (this: net.Socket, on?: boolean) {
    if (on !== false && this.remotePort !== undefined) seen.ports.push(this.remotePort);
    return setNoDelay.call(this, on);
  };
  return seen;
}

describe('MQTT connection', () => {
  it('turns Nagle\'s algorithm off on its socket, again after a reconnect', () =>
    withBroker(async ({ broker, writeConfig, defer }) => {
      const loaded = loadConfig(writeConfig({ mqtt: { clientId: 'nodelay-test' } }));
      const conn = new MqttConnection({ config: loaded.config.mqtt, secrets: loaded.secrets, filters: ['nodelay/#'], log: silentLogger, onMessage: (_m, ack) => ack.ack() });
      defer(() => conn.stop());
      const seen = watchNoDelay();
      defer(seen.restore);
      await conn.start();
      assert.deepEqual(seen.ports, [broker.port], 'the connection to the broker');
      await broker.stop();
      await broker.start();
      await waitFor(() => seen.ports.length === 2, 20_000, 'a reconnect');
      assert.deepEqual(seen.ports, [broker.port, broker.port]);
    }));


  it('acknowledges every QoS 1 message, the PUBACKs of one read leaving in one socket write', () =>
    withBroker(async ({ writeConfig, publish, defer }) => {
      const loaded = loadConfig(writeConfig({ mqtt: { clientId: 'coalesce-test' } }));
      const received: string[] = [];
      const conn = new MqttConnection({
        config: loaded.config.mqtt,
        secrets: loaded.secrets,
        filters: ['coalesce/#'],
        log: silentLogger,
        onMessage: (m, ack) => {
          received.push(m.payload.toString());
          ack.ack();
        },
      });
      defer(() => conn.stop());
      const seen = countPubackWrites();
      defer(seen.restore);
      await conn.start();
      const N = 400;
      await publish(Array.from({ length: N }, (_, i) => ({ topic: `coalesce/${i % 7}`, payload: String(i) })));
      await waitFor(() => received.length >= N && seen.pubacks >= N, 10_000, `${N} messages acknowledged (received ${received.length}, PUBACKs ${seen.pubacks})`);
      assert.equal(received.length, N);
      assert.equal(seen.pubacks, N, 'one PUBACK per message');
      // One write per PUBACK without coalescing; the broker sends up to 20 unacknowledged messages at once.
      assert.ok(seen.writes < N * 0.75, `${seen.writes} socket writes carried the ${N} PUBACKs`);
    }));

  it('counts and logs (once) a session taken over, from MQTT 5 DISCONNECT reason 0x8E', async () => {
    // A broker that injects the fault: it accepts each connection and then hands the session to "another client".
    const server = net.createServer((socket) => {
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      parser.on('packet', (packet) => {
        if (packet.cmd !== 'connect') return;
        socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent: false }, { protocolVersion: 5 }));
        setTimeout(() => socket.end(mqttPacket.generate({ cmd: 'disconnect', reasonCode: 0x8e }, { protocolVersion: 5 })), 20);
      });
      socket.on('data', (d) => parser.parse(d));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const loaded = await withTempDir((dir) => loadConfig(writeConfig(dir, { mqtt: { url: `mqtt://127.0.0.1:${port}`, clientId: 'taken', protocolVersion: 5, reconnectPeriodMs: 100 } })));
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    let takeovers = 0;
    const conn = new MqttConnection({ config: loaded.config.mqtt, secrets: loaded.secrets, filters: ['x/#'], log, onMessage: (_m, ack) => ack.ack(), onTakeover: () => takeovers++ });
    try {
      void conn.start();
      await waitFor(() => takeovers >= 3, 10_000, 'three takeovers');
      const errors = lines.filter((l) => String(l.msg).startsWith('session takeover:'));
      assert.equal(errors.length, 1, 'logged once a minute, not once a takeover');
      assert.match(String(errors[0]!.why), /MQTT 5 reason code 0x8E/);
      assert.ok(lines.some((l) => l.msg === 'broker sent DISCONNECT' && l.reasonCode === 0x8e));
    } finally {
      await conn.stop();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
