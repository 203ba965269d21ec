// Before mqtt (and mqtt-packet) load: see quiet-debug.ts.
import './quiet-debug.js';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { LoadedConfig } from '../config/config.js';
import { redactUrl } from '../config/redact.js';
import type { Logger } from '../log.js';
import { TakeoverDetector } from './takeover-detector.js';

export interface IncomingMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly receivedAt: number;
  readonly qos: 0 | 1 | 2;
  /**
   * The broker sent it to this session before (the PUBLISH's DUP flag): a
   * redelivery after a connection closed before its PUBACK went out.
   */
  readonly dup?: boolean;
}

/**
 * Acknowledge a message: sends its PUBACK (QoS 1) and lets mqtt.js read the
 * next packet. `stale` turns true when the connection it came on has closed:
 * acknowledging then does nothing, and the broker redelivers the message.
 */
export interface Ack {
  ack(): void;
  readonly stale: boolean;
}

const noLog = (): void => undefined;

/** A message's Ack: one small object per message (the hot path allocates nothing else for it). */
class PacketAck implements Ack {
  readonly #conn: { readonly generation: number };
  readonly #generation: number;
  #done: ((err?: Error) => void) | null;

  constructor(conn: { readonly generation: number }, done: (err?: Error) => void) {
    this.#conn = conn;
    this.#generation = conn.generation;
    this.#done = done;
  }

  get stale(): boolean {
    return this.#generation !== this.#conn.generation;
  }

  ack(): void {
    const done = this.#done;
    if (done === null || this.stale) return;
    this.#done = null;
    done();
  }
}

/** Receives each message; must call `ack` once the message is safe (now, or later to apply backpressure). */
export type MessageHandler = (message: IncomingMessage, ack: Ack) => void;

export interface MqttConnectionOptions {
  config: LoadedConfig['config']['mqtt'];
  secrets: LoadedConfig['secrets'];
  /** Filters to subscribe at QoS 1, on every (re)connect. */
  filters: readonly string[];
  onMessage: MessageHandler;
  log: Logger;
  now?: () => number;
  /** Called for each connection that looks taken over by another client with our client id. */
  onTakeover?: () => void;
}

/**
 * Room beside the payload in MQTT 5's maximumPacketSize: fixed header, topic
 * and properties. A larger payload that still fits is dead-lettered as
 * too_large (its first 1 KiB kept); one past the packet size the broker
 * drops without sending (MQTT 5 §3.1.2.11.4), so it never reaches memory here.
 */
export const PACKET_OVERHEAD_BYTES = 4096;

/**
 * The broker connection: a fixed client id with a persistent session
 * (`clean: false`), QoS 1 subscriptions renewed on every connect, reconnects
 * with exponential backoff, and a retained availability topic (`online` on
 * connect, `offline` on clean stop and as the last will).
 *
 * Messages are handled in mqtt.js's `handleMessage` hook: for QoS 1 the PUBACK
 * goes out when its callback runs (MQTT 3.1.1 §4.3.2), which the handler does
 * through `ack` once the message is durably logged. mqtt.js reads no further
 * packet until then, so a held ack is backpressure all the way to the broker.
 * While stopping, the hook returns without acknowledging, so the broker keeps
 * those messages for the next session instead of tidecast dropping them.
 * `TakeoverDetector` tells another client on our session from a broker restart.
 */
export class MqttConnection {
  readonly #opts: MqttConnectionOptions;
  readonly #now: () => number;
  #client: MqttClient | null = null;
  #accepting = false;
  /** Set while the connection's writes are held for the rest of this turn (`#coalesceWrites`). */
  #corked = false;
  #backoffMs: number;
  #connectedOnce: Promise<void> | null = null;
  /** Bumped when a connection closes: acks of its messages become stale. */
  #generation = 0;
  /** Messages received, for logs and tests. */
  received = 0;
  readonly #takeover: TakeoverDetector;

  constructor(options: MqttConnectionOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#backoffMs = options.config.reconnectPeriodMs;
    this.#takeover = new TakeoverDetector({ clientId: options.config.clientId, log: options.log, now: this.#now, onTakeover: options.onTakeover });
  }

  /** Which connection this is (acks of an earlier one are stale). */
  get generation(): number {
    return this.#generation;
  }

  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  /** Connect and subscribe; resolves on the first successful subscription. Keeps retrying until then. */
  start(): Promise<void> {
    if (this.#connectedOnce) return this.#connectedOnce;
    const c = this.#opts.config;
    const log = this.#opts.log;
    const options: IClientOptions = {
      clientId: c.clientId,
      clean: false,
      protocolVersion: c.protocolVersion,
      keepalive: c.keepaliveS,
      reconnectPeriod: c.reconnectPeriodMs,
      connectTimeout: c.connectTimeoutMs,
      resubscribe: false, // we subscribe on every connect ourselves
      username: c.username,
      password: this.#opts.secrets.password,
      ca: this.#opts.secrets.ca,
      cert: this.#opts.secrets.cert,
      key: this.#opts.secrets.key,
      rejectUnauthorized: c.tls?.rejectUnauthorized ?? true,
      will: { topic: c.availabilityTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
      // mqtt.js logs a dozen debug lines per packet, each call allocating its arguments even when
      // disabled: without DEBUG=mqttjs* its log is a no-op.
      ...(/mqttjs/.test(process.env.DEBUG ?? '') ? {} : { log: noLog }),
      ...(c.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0xffffffff, maximumPacketSize: c.maxPayloadBytes + PACKET_OVERHEAD_BYTES } } : {}),
    };
    const client = mqtt.connect(c.url, options);
    this.#client = client;
    this.#accepting = true;
    client.handleMessage = (packet: IPublishPacket, done: (err?: Error) => void) => {
      if (!this.#accepting) return; // no PUBACK: the broker redelivers to the next session
      this.received++;
      this.#coalesceWrites(client);
      try {
        this.#opts.onMessage({ topic: packet.topic, payload: packet.payload as Buffer, receivedAt: this.#now(), qos: packet.qos, dup: packet.dup === true }, new PacketAck(this, done));
      } catch (err) {
        // The handler promises not to throw; if it does, the message stays with the broker.
        log.error({ err, topic: packet.topic }, 'message handler failed; message left unacknowledged');
      }
    };
    this.#connectedOnce = new Promise<void>((resolve) => {
      client.on('connect', (connack) => {
        this.#takeover.connected();
        MqttConnection.#noDelay(client);
        this.#backoffMs = c.reconnectPeriodMs;
        client.options.reconnectPeriod = c.reconnectPeriodMs;
        log.info({ url: redactUrl(c.url), clientId: c.clientId, sessionPresent: connack.sessionPresent }, 'connected to broker');
        client.subscribe(
          this.#opts.filters.map((f) => f),
          { qos: 1 },
          (err, granted) => {
            if (err) {
              log.error({ err }, 'subscribe failed');
              return;
            }
            const refused = (granted ?? []).filter((g) => g.qos === 128);
            if (refused.length > 0) log.error({ filters: refused.map((g) => g.topic) }, 'broker refused subscriptions');
            log.info({ filters: this.#opts.filters }, 'subscribed');
            client.publish(c.availabilityTopic, 'online', { qos: 1, retain: true });
            resolve();
          },
        );
      });
    });
    client.on('disconnect', (packet) => {
      const reasonCode = packet.reasonCode ?? 0;
      log.warn({ reasonCode, reason: packet.properties?.reasonString }, 'broker sent DISCONNECT');
      this.#takeover.disconnected(reasonCode);
    });
    client.on('close', () => {
      this.#generation++;
      this.#takeover.closed(this.#accepting);
      if (!this.#accepting) return;
      // Exponential backoff: mqtt.js reads reconnectPeriod each time it schedules a reconnect.
      log.warn({ retryInMs: this.#backoffMs }, 'disconnected from broker');
      client.options.reconnectPeriod = this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, c.reconnectMaxMs);
    });
    client.on('error', (err) => log.warn({ err: { message: err.message, code: (err as { code?: unknown }).code } }, 'broker connection error'));
    return this.#connectedOnce;
  }

  /**
   * Turn Nagle's algorithm off on the connection's socket (a new one each
   * connect). With it on, a write waits while an earlier segment is not yet
   * acknowledged, and the broker's kernel may hold that acknowledgement up to
   * its delayed-ACK timeout (40 ms on Linux): a turn's PUBACKs then sat up to
   * 40 ms, the broker's in-flight window (20 messages for Mosquitto) filled,
   * and every message behind them waited. The writes are few already: a
   * turn's PUBACKs leave in one (`#coalesceWrites`).
   */
  static #noDelay(client: MqttClient): void {
    const socket = client.stream as (typeof client.stream & { setNoDelay?: (on: boolean) => unknown }) | undefined;
    socket?.setNoDelay?.(true);
  }

  /**
   * Hold the connection's writes until this turn of the event loop has
   * handled every packet it read. mqtt.js handles one packet per tick and
   * writes each PUBACK on its own (one socket write per QoS 1 message, about
   * 14 µs of the main thread on loopback); corked, the PUBACKs of the
   * messages one read brought (the broker sends up to its in-flight window
   * at once) leave in one write. Each still follows its message's durable
   * log write.
   */
  #coalesceWrites(client: MqttClient): void {
    if (this.#corked) return;
    const stream = client.stream as (typeof client.stream & { cork?: () => void; uncork?: () => void }) | undefined;
    if (!stream?.cork || !stream.uncork) return;
    stream.cork();
    this.#corked = true;
    setImmediate(() => {
      this.#corked = false;
      stream.uncork!();
    });
  }

  /** Publish (fire and forget; QoS 1/2 are retried by mqtt.js across reconnects). */
  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void {
    this.#client?.publish(topic, payload, { qos, retain });
  }

  /** Stop acknowledging new messages (they stay with the broker); first phase of shutdown. */
  pause(): void {
    this.#accepting = false;
  }

  /**
   * Publish `offline`, wait briefly for outgoing messages, disconnect. Safe to
   * call twice. Every wait is bounded: a paused connection holds an incoming
   * message unacknowledged, and mqtt.js then reads no further packets (not
   * even our PUBACKs), so nothing here may wait on the broker indefinitely.
   */
  async stop(): Promise<void> {
    this.#accepting = false;
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    const bounded = (p: Promise<unknown>, ms: number): Promise<unknown> =>
      Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, ms).unref())]);
    if (client.connected) await bounded(client.publishAsync(this.#opts.config.availabilityTopic, 'offline', { qos: 1, retain: true }), 1000);
    await bounded(client.endAsync(false), 1000);
    await bounded(client.endAsync(true), 1000);
  }
}
