/**
 * The benches' load generator, run as its own process so that it does not
 * share an event loop with what it measures. Argument: one JSON object
 * { url, qos, streams, count, window, ratePerS?, shape? }. Prints "start" when connected
 * and about to publish, then one JSON line { sent, seconds, cpu_s } when done
 * (cpu_s: the CPU this process used from "start" on).
 * Without ratePerS it publishes as fast as the broker takes it (QoS 1: at most
 * `window` unacknowledged); with it, paced in 10 ms ticks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { benchMessage, type BenchShape } from './support.js';

const o = JSON.parse(process.argv[2]!) as { url: string; qos: 0 | 1; streams: number; count: number; window: number; ratePerS?: number; first?: number; shape?: BenchShape };
const client = await mqtt.connectAsync(o.url, { clientId: `bench-pub-${process.pid}`, clean: true });
const first = o.first ?? 0;
process.stdout.write('start\n');
const cpuAtStart = process.cpuUsage();
const started = performance.now();
let sent = 0;
if (o.ratePerS) {
  const perTick = o.ratePerS / 100;
  let due = 0;
  while (sent < o.count) {
    due += perTick;
    const pending: Array<Promise<unknown>> = [];
    for (; sent < Math.min(o.count, Math.floor(due)); sent++) {
      const m = benchMessage(first + sent, o.streams, performance.timeOrigin + performance.now(), o.shape);
      pending.push(client.publishAsync(m.topic, m.payload, { qos: o.qos }));
    }
    const next = started + ((sent / o.ratePerS) * 1000);
    await sleep(Math.max(0, next - performance.now()));
    if (o.qos === 0) await Promise.all(pending);
  }
} else {
  for (; sent < o.count; ) {
    const batch: Array<Promise<unknown>> = [];
    for (let i = 0; i < o.window && sent < o.count; i++, sent++) {
      const m = benchMessage(first + sent, o.streams, undefined, o.shape);
      batch.push(client.publishAsync(m.topic, m.payload, { qos: o.qos }));
    }
    await Promise.all(batch);
  }
}
const seconds = (performance.now() - started) / 1000;
await client.endAsync();
const cpu = process.cpuUsage(cpuAtStart);
process.stdout.write(JSON.stringify({ sent, seconds, cpu_s: (cpu.user + cpu.system) / 1e6 }) + '\n');
