import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { packageRoot } from '../src/paths.js';
import { BenchBroker, benchMessage, endSession, metric, percentile, startDaemon, waitCount, writeBenchConfig, type BenchShape } from './support.js';

const STREAMS = 10_000;
/** Leading part of each latency run left out of its percentiles (reported as its maximum). */
const WARMUP_S = 3;

export interface ThroughputResult {
  qos: 0 | 1;
  messages: number;
  tidecast_msgs_per_s: number;
  bare_msgs_per_s: number;
  /** The naive per-message daemon (bench/naive-daemon.ts), same broker, same messages. */
  naive_msgs_per_s: number;
  ratio: number;
  /** tidecast / naive. */
  vs_naive: number;
  /** Messages the bare subscriber / tidecast got through (QoS 0 may drop under load). */
  bare_received: number;
  tidecast_processed: number;
  /** Where the machine's CPU went in each run: µs of CPU per message by process, and the share of all cores busy. */
  cpu: { bare: CpuShare; naive: CpuShare; tidecast: CpuShare };
}

/** CPU per message of the publisher, the broker and the consumer (bare subscriber, naive daemon or tidecast, every thread), over one run. */
export interface CpuShare {
  publisher_us: number;
  broker_us: number;
  consumer_us: number;
  /** All three together, as a share of every core of the machine over the run's wall time. */
  machine_busy: number;
  /** tidecast only: its consumer_us by thread (tidecast_thread_cpu_seconds_total over the same run). */
  threads?: Record<string, number>;
}

export interface LatencyPoint {
  load: number;
  rate_per_s: number;
  messages: number;
  committed_ms: { p50: number; p99: number; p999: number };
  received_ms: { p50: number; p99: number; p999: number };
  /** Worst publish → committed of the warm-up messages (the first WARMUP_S seconds, left out of the percentiles). */
  warmup_max_committed_ms: number;
}

export interface E2eBenchResult {
  scenario: 'e2e';
  streams: number;
  throughput: ThroughputResult[];
  /** QoS 1 msgs/s with forecasts published back (the lower of two runs): the rate the latency loads are fractions of. */
  latency_base_msgs_per_s: number;
  /** Latency at fractions of latency_base_msgs_per_s; `half` is the 0.5 point. */
  latency: LatencyPoint[];
  /** Other shapes of load, QoS 0. */
  scenarios: ScenarioResult[];
  /** Checkpoint holds at the 0.5 load (absent with --quick). */
  checkpoint?: CheckpointHold;
  half: LatencyPoint | null;
}

const TICK_S = 1 / Number(process.env.CLK_TCK ?? 100);

/** CPU seconds a process has used so far, all its threads (Linux /proc; 0 elsewhere). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S;
  } catch {
    return 0;
  }
}

/**
 * Meters the CPU of the broker and the consumer from now (`consumer`: a pid,
 * or 'self' for this process): `stop` when the run's messages are through,
 * then `share` with the publisher's own figure (it reports its CPU as it exits).
 */
function cpuMeter(brokerPid: number | undefined, consumer: number | 'self'): { stop(): void; share(messages: number, publisherCpuS: number): CpuShare } {
  const consumerCpu = (): number => {
    if (consumer !== 'self') return cpuSeconds(consumer);
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const t0 = performance.now();
  const start = [cpuSeconds(brokerPid), consumerCpu()];
  let used = [0, 0];
  let wall = 0;
  return {
    stop(): void {
      used = [cpuSeconds(brokerPid), consumerCpu()].map((x, i) => x - start[i]!);
      wall = (performance.now() - t0) / 1000;
    },
    share(messages: number, publisherCpuS: number): CpuShare {
      const us = (x: number): number => Math.round((x / Math.max(1, messages)) * 1e6 * 10) / 10;
      return { publisher_us: us(publisherCpuS), broker_us: us(used[0]!), consumer_us: us(used[1]!), machine_busy: round((publisherCpuS + used[0]! + used[1]!) / (wall * os.cpus().length)) };
    },
  };
}

/** Run the publisher process; resolves when it reports "start" (with the time) and when it is done. */
export function publisher(args: object): { started: Promise<number>; done: Promise<{ sent: number; seconds: number; cpu_s: number }> } {
  const proc = spawn(process.execPath, [path.join(packageRoot, 'dist', 'bench', 'publisher.js'), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onStart: (t: number) => void = () => undefined;
  const started = new Promise<number>((r) => (onStart = r));
  const done = new Promise<{ sent: number; seconds: number; cpu_s: number }>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('start\n')) onStart(performance.now());
    });
    proc.once('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as { sent: number; seconds: number; cpu_s: number });
      else reject(new Error(`publisher exited ${code}: ${out}`));
    });
  });
  return { started, done };
}

/** A subscriber that only counts: the ceiling of what the broker and this machine deliver. */
async function bare(url: string, qos: 0 | 1, count: number, streams = STREAMS, shape: BenchShape = 'telemetry', brokerPid?: number): Promise<{ perS: number; received: number; cpu: CpuShare }> {
  const sub = await mqtt.connectAsync(url, { clientId: `bare-${qos}`, clean: true });
  let received = 0;
  sub.on('message', () => received++);
  await sub.subscribeAsync(shape === 'features' ? 'sensors/+/+/+' : 'sensors/+/+/telemetry', { qos });
  const pub = publisher({ url, qos, streams, count, window: 500, shape });
  const t0 = await pub.started;
  const meter = cpuMeter(brokerPid, 'self');
  const { n, at } = await waitCount(() => received, count, 3000, 5);
  meter.stop();
  const cpu = meter.share(n, (await pub.done).cpu_s);
  await sub.endAsync();
  return { perS: n / ((at - t0) / 1000), received: n, cpu };
}

/** The naive per-message daemon (bench/naive-daemon.ts) as a child process: messages whose predictions are committed per second. */
async function naive(dir: string, url: string, qos: 0 | 1, count: number, brokerPid?: number): Promise<{ perS: number; processed: number; cpu: CpuShare }> {
  const proc = spawn(process.execPath, [path.join(packageRoot, 'dist', 'bench', 'naive-daemon.js'), JSON.stringify({ url, qos, db: path.join(dir, `naive-q${qos}.db`) })], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let processed = 0;
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const lines = out.split('\n');
    out = lines.pop()!;
    for (const l of lines) if (l.startsWith('{')) processed = (JSON.parse(l) as { processed: number }).processed;
    if (lines.includes('ready')) onReady();
  });
  let onReady: () => void = () => undefined;
  await new Promise<void>((r) => (onReady = r));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    const pub = publisher({ url, qos, streams: STREAMS, count, window: 500 });
    const t0 = await pub.started;
    const meter = cpuMeter(brokerPid, proc.pid!);
    // Counted in commits of 500: allow for the last partial one.
    const { n, at } = await waitCount(() => processed, count - 500, 5000, 50);
    meter.stop();
    const cpu = meter.share(n, (await pub.done).cpu_s);
    return { perS: n / ((at - t0) / 1000), processed: n, cpu };
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
}

/** tidecast as a child process: messages fully processed (forecast committed) per second. */
async function tidecast(
  dir: string,
  url: string,
  qos: 0 | 1,
  count: number,
  o: { name?: string; streams?: number; shape?: BenchShape; models?: readonly string[]; publish?: boolean; brokerPid?: number; history?: number } = {},
): Promise<{ perS: number; processed: number; cpu: CpuShare }> {
  const name = o.name ?? `tidecast-q${qos}`;
  const models = o.models ?? ['weather-lstm'];
  const shape = o.shape ?? 'telemetry';
  const daemon = await startDaemon(writeBenchConfig(dir, url, { name, models, shape, publish: o.publish }));
  // Forecasts committed (one per model per step) → messages fully processed.
  const perForecast = (shape === 'features' ? 4 : 1) / models.length;
  try {
    // tidecast subscribes at QoS 1; the publisher's QoS sets what the broker delivers (the minimum of the two).
    // Stored history first (as fast as it goes, until the count stops moving), then the measured messages: the steps after it.
    const first = (o.history ?? 0) * (o.streams ?? STREAMS) * (shape === 'features' ? 4 : 1);
    if (first > 0) {
      await publisher({ url, qos: 0, streams: o.streams ?? STREAMS, count: first, window: 500, shape }).done;
      await waitCount(async () => (await daemon.committed()) * perForecast, first, 10_000, 200);
    }
    const base = first > 0 ? (await daemon.committed()) * perForecast : 0;
    const pub = publisher({ url, qos, streams: o.streams ?? STREAMS, count, window: 500, shape, first });
    const t0 = await pub.started;
    const meter = cpuMeter(o.brokerPid, daemon.child.proc.pid!);
    const threads0 = await daemon.threadCpu();
    const { n: total, at } = await waitCount(async () => (await daemon.committed()) * perForecast, base + count, 5000, 50);
    const n = total - base;
    meter.stop();
    const threads1 = await daemon.threadCpu();
    const cpu = meter.share(n, (await pub.done).cpu_s);
    cpu.threads = Object.fromEntries(Object.entries(threads1).map(([k, v]) => [k, Math.round(((v - (threads0[k] ?? 0)) / Math.max(1, n)) * 1e7) / 10]));
    return { perS: n / ((at - t0) / 1000), processed: n, cpu };
  } finally {
    await daemon.stop();
    await endSession(url, name);
  }
}

/**
 * Checkpoints under load. A checkpoint holds no message: it captures streams a
 * chunk per turn of the event loop while messages flow. `mean_ms`/`max_le_ms`:
 * the longest such turn of each checkpoint (messages wait at most that long),
 * from tidecast_checkpoint_seconds; `write_mean_ms`: a whole checkpoint, first
 * chunk to committed record, from tidecast_checkpoint_write_seconds.
 */
export interface CheckpointHold {
  rate_per_s: number;
  interval_s: number;
  checkpoints: number;
  mean_ms: number;
  /** Upper bound of the histogram bucket that holds the slowest checkpoint. */
  max_le_ms: number;
  write_mean_ms: number;
}

/**
 * The latency points run shorter than the default checkpoint interval (30 s),
 * so no periodic checkpoint falls inside them: this run measures what one
 * costs, at `rate` QoS 1 over the bench's 10,000 streams, one every 2 s.
 */
async function checkpointHold(dir: string, url: string, rate: number): Promise<CheckpointHold> {
  const interval = 2;
  const daemon = await startDaemon(writeBenchConfig(dir, url, { name: 'checkpoints', extra: `durability: { checkpointIntervalS: ${interval} }` }));
  try {
    const count = Math.round(rate * 10);
    const pub = publisher({ url, qos: 1, streams: STREAMS, count, window: 500, ratePerS: rate });
    await pub.done;
    await waitCount(daemon.committed, count, 5000, 100);
    const text = await (await fetch(`${daemon.http}/metrics`)).text();
    const n = metric(text, 'tidecast_checkpoint_seconds_count');
    const buckets = text.split('\n').filter((l) => l.startsWith('tidecast_checkpoint_seconds_bucket')).map((l) => ({ le: Number(/le="([^"]+)"/.exec(l)![1]), n: Number(l.slice(l.lastIndexOf(' ') + 1)) }));
    const max = buckets.find((b) => b.n >= n)?.le ?? Infinity;
    const writes = metric(text, 'tidecast_checkpoint_write_seconds_count');
    return {
      rate_per_s: Math.round(rate),
      interval_s: interval,
      checkpoints: n,
      mean_ms: round((metric(text, 'tidecast_checkpoint_seconds_sum') / n) * 1000),
      max_le_ms: max * 1000,
      write_mean_ms: round((metric(text, 'tidecast_checkpoint_write_seconds_sum') / writes) * 1000),
    };
  } finally {
    await daemon.stop();
    await endSession(url, 'checkpoints');
  }
}

/** A scenario beside the main one: tidecast and the bare subscriber on the same messages. */
export interface ScenarioResult {
  name: string;
  streams: number;
  messages: number;
  qos: 0 | 1;
  bare_msgs_per_s: number;
  tidecast_msgs_per_s: number;
  ratio: number;
}

/** `history`: steps per stream the daemon stores first (through the same broker, not measured); the measured messages follow them. */
const SCENARIOS: ReadonlyArray<{ name: string; streams: number; messages: number; shape: BenchShape; models: readonly string[]; history?: number }> = [
  { name: 'challenger: weather-lstm and weather-gru on one route', streams: STREAMS, messages: 100_000, shape: 'telemetry', models: ['weather-lstm', 'weather-gru'] },
  { name: '4 topics joined into one step (one feature per message)', streams: STREAMS, messages: 200_000, shape: 'features', models: ['weather-lstm'] },
  { name: '100,000 streams', streams: 100_000, messages: 200_000, shape: 'telemetry', models: ['weather-lstm'] },
  { name: 'a store already holding 100 steps of every stream', streams: STREAMS, messages: 100_000, shape: 'telemetry', models: ['weather-lstm'], history: 100 },
];

/**
 * One latency point: publish paced at `rate` (QoS 1, forecasts published
 * back), time to commit (from the database) and to the forecast coming back.
 * The first WARMUP_S seconds at the same rate touch every stream once and
 * warm the process (JIT, onnxruntime's first runs at each batch size, every
 * stream's first allocation); the percentiles are over the `seconds` after
 * them, the warm-up's worst case is reported apart.
 */
async function latencyAt(dir: string, url: string, rate: number, seconds: number, index: number): Promise<LatencyPoint & { load: number }> {
  const name = `latency-${index}`;
  const daemon = await startDaemon(writeBenchConfig(dir, url, { name, publish: true }));
  const warm = Math.round(rate * WARMUP_S);
  const count = Math.max(200, Math.round(rate * seconds));
  const total = warm + count;
  const sent = new Map<string, { at: number; warm: boolean }>();
  const back: Array<{ warm: boolean; ms: number }> = [];
  try {
    const sub = await mqtt.connectAsync(url, { clientId: `${name}-listen`, clean: true });
    sub.on('message', (_t, p) => {
      const f = JSON.parse(p.toString()) as { stream: string; issued_at: string };
      const s = sent.get(`${f.stream}@${Date.parse(f.issued_at)}`);
      if (s !== undefined) back.push({ warm: s.warm, ms: performance.timeOrigin + performance.now() - s.at });
    });
    await sub.subscribeAsync('forecast/#', { qos: 1 });
    const pub = await mqtt.connectAsync(url, { clientId: `${name}-pub`, clean: true });
    const started = performance.now();
    for (let k = 0; k < total; ) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      for (; k < due; k++) {
        const at = performance.timeOrigin + performance.now();
        const m = benchMessage(k, STREAMS, at);
        sent.set(`${m.stream}@${m.tsMs}`, { at, warm: k < warm });
        void pub.publishAsync(m.topic, m.payload, { qos: 1 });
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    await waitCount(() => back.length, total, 5000, 20);
    await pub.endAsync();
    await sub.endAsync();
  } finally {
    await daemon.stop();
    await endSession(url, name);
  }
  const db = new Database(path.join(dir, `${name}.db`), { readonly: true });
  const rows = db.prepare('SELECT s.name AS stream, f.issued_at, f.created_at FROM forecasts f JOIN stream_ids s ON s.sid = f.sid').all() as Array<{ stream: string; issued_at: number; created_at: number }>;
  db.close();
  const committedAll = rows.flatMap((r) => {
    const s = sent.get(`${r.stream}@${r.issued_at}`);
    return s ? [{ warm: s.warm, ms: r.created_at - s.at }] : [];
  });
  const committed = committedAll.filter((x) => !x.warm).map((x) => x.ms).sort((a, b) => a - b);
  const warmupMax = Math.max(0, ...committedAll.filter((x) => x.warm).map((x) => x.ms));
  const received = back.filter((x) => !x.warm).map((x) => x.ms).sort((a, b) => a - b);
  const pct = (xs: number[]): LatencyPoint['committed_ms'] => ({ p50: round(percentile(xs, 50)), p99: round(percentile(xs, 99)), p999: round(percentile(xs, 99.9)) });
  return { load: 0, rate_per_s: Math.round(rate), messages: count, committed_ms: pct(committed), received_ms: pct(received), warmup_max_committed_ms: round(warmupMax) };
}

const round = (x: number): number => Math.round(x * 100) / 100;

export async function e2eBench(opts: { messages?: number; latencySeconds?: number; latency?: boolean; scenarios?: boolean } = {}): Promise<E2eBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-e2e-'));
  const broker = new BenchBroker(dir);
  await broker.start();
  const count = opts.messages ?? 100_000;
  try {
    const throughput: ThroughputResult[] = [];
    for (const qos of [0, 1] as const) {
      const b = await bare(broker.url, qos, count, STREAMS, 'telemetry', broker.pid);
      const nv = await naive(dir, broker.url, qos, count, broker.pid);
      const t = await tidecast(dir, broker.url, qos, count, { brokerPid: broker.pid });
      throughput.push({
        qos,
        messages: count,
        tidecast_msgs_per_s: Math.round(t.perS),
        bare_msgs_per_s: Math.round(b.perS),
        naive_msgs_per_s: Math.round(nv.perS),
        ratio: round(t.perS / b.perS),
        vs_naive: round(t.perS / nv.perS),
        bare_received: b.received,
        tidecast_processed: t.processed,
        cpu: { bare: b.cpu, naive: nv.cpu, tidecast: t.cpu },
      });
    }
    // The latency runs publish every forecast back: their 100% is tidecast's QoS 1 rate with publishing on,
    // the lower of two runs (one run on this shared machine can come out high, which puts 80% past what it sustains).
    let max = 0;
    if (opts.latency !== false) {
      const rates: number[] = [];
      for (const run of [0, 1]) rates.push((await tidecast(dir, broker.url, 1, count, { name: `tidecast-q1-publish-${run}`, publish: true })).perS);
      max = Math.round(Math.min(...rates));
    }
    const latency: LatencyPoint[] = [];
    for (const [i, load] of (opts.latency === false ? [] : [0.1, 0.25, 0.5, 0.8, 0.9]).entries()) {
      const p = await latencyAt(dir, broker.url, max * load, opts.latencySeconds ?? 8, i);
      latency.push({ ...p, load });
    }
    const checkpoint = opts.latency === false ? undefined : await checkpointHold(dir, broker.url, max * 0.5);
    const scenarios: ScenarioResult[] = [];
    for (const [i, sc] of (opts.scenarios === false ? [] : SCENARIOS).entries()) {
      const b = await bare(broker.url, 0, sc.messages, sc.streams, sc.shape);
      const t = await tidecast(dir, broker.url, 0, sc.messages, { name: `scenario-${i}`, streams: sc.streams, shape: sc.shape, models: sc.models, history: sc.history });
      scenarios.push({ name: sc.name, streams: sc.streams, messages: sc.messages, qos: 0, bare_msgs_per_s: Math.round(b.perS), tidecast_msgs_per_s: Math.round(t.perS), ratio: round(t.perS / b.perS) });
    }
    return { scenario: 'e2e', streams: STREAMS, throughput, latency_base_msgs_per_s: max, latency, half: latency.find((p) => p.load === 0.5) ?? null, checkpoint, scenarios };
  } finally {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function e2eTable(r: E2eBenchResult): string {
  const lines = [
    `e2e: ${r.streams} streams of weather-lstm through Mosquitto, tidecast (a child process, forecasts committed) vs a bare mqtt.js subscriber that only counts`,
    '',
    '| QoS | messages | bare msgs/s | naive script msgs/s | tidecast msgs/s | tidecast / bare | tidecast / naive |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...r.throughput.map((t) => `| ${t.qos}${t.qos === 1 ? ' (durable ack)' : ''} | ${t.messages} | ${t.bare_msgs_per_s} | ${t.naive_msgs_per_s} | ${t.tidecast_msgs_per_s} | ${t.ratio} | ${t.vs_naive} |`),
    ...cpuLines(r.throughput),
    '',
    `latency, QoS 1, publish → forecast committed / → forecast received back over MQTT (ms), after a ${WARMUP_S} s warm-up at the same rate; load is a fraction of ${r.latency_base_msgs_per_s} msgs/s, tidecast's QoS 1 rate with forecasts published (the lower of two runs)`,
    '',
    '| load | msgs/s | committed p50 | p99 | p99.9 | received p50 | p99 | p99.9 | warm-up max |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.latency.map((p) => `| ${p.load} | ${p.rate_per_s} | ${p.committed_ms.p50} | ${p.committed_ms.p99} | ${p.committed_ms.p999} | ${p.received_ms.p50} | ${p.received_ms.p99} | ${p.received_ms.p999} | ${p.warmup_max_committed_ms} |`),
  ];
  if (r.checkpoint) {
    const c = r.checkpoint;
    lines.push(
      '',
      `checkpoints under load (QoS 1 at ${c.rate_per_s} msgs/s, one every ${c.interval_s} s; the latency points above are shorter than the default 30 s interval, so none falls inside them): ${c.checkpoints} checkpoints, each written in chunks while messages flow (mean ${c.write_mean_ms} ms from the first chunk to the committed record); the longest turn of the event loop one took (messages wait at most that long): mean ${c.mean_ms} ms, the slowest ≤ ${c.max_le_ms} ms`,
    );
  }
  if (r.scenarios.length > 0) {
    lines.push(
      '',
      'scenarios, QoS 0, publisher as fast as it can (messages fully processed per second)',
      '',
      '| scenario | streams | messages | bare msgs/s | tidecast msgs/s | tidecast / bare |',
      '|---|---:|---:|---:|---:|---:|',
      ...r.scenarios.map((c) => `| ${c.name} | ${c.streams} | ${c.messages} | ${c.bare_msgs_per_s} | ${c.tidecast_msgs_per_s} | ${c.ratio} |`),
    );
  }
  return lines.join('\n');
}

/**
 * Where the CPU went in each throughput run, and what a target ratio leaves
 * the consumer: every core's time per message at that rate, less what the
 * publisher and the broker took per message in tidecast's run.
 */
function cpuLines(runs: readonly ThroughputResult[]): string[] {
  const withCpu = runs.filter((t) => t.cpu);
  if (withCpu.length === 0) return [];
  const cores = os.cpus().length;
  const lines = [
    '',
    `CPU per message (µs, every thread of each process) and the share of the machine's ${cores} cores busy, same runs`,
    '',
    '| QoS | consumer | msgs/s | publisher | broker | consumer | machine busy |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const t of withCpu) {
    const row = (name: string, rate: number, c: CpuShare): string => `| ${t.qos} | ${name} | ${rate} | ${c.publisher_us} | ${c.broker_us} | ${c.consumer_us} | ${c.machine_busy} |`;
    lines.push(row('bare subscriber', t.bare_msgs_per_s, t.cpu.bare), row('naive script', t.naive_msgs_per_s, t.cpu.naive), row('tidecast', t.tidecast_msgs_per_s, t.cpu.tidecast));
  }
  const names = [...new Set(withCpu.flatMap((t) => Object.keys(t.cpu.tidecast.threads ?? {})))];
  if (names.length > 0) {
    lines.push('', "tidecast's CPU per message by thread (µs, tidecast_thread_cpu_seconds_total), same runs", '', `| QoS | ${names.join(' | ')} |`, `|---|${names.map(() => '---:').join('|')}|`);
    for (const t of withCpu) lines.push(`| ${t.qos} | ${names.map((k) => t.cpu.tidecast.threads?.[k] ?? '').join(' | ')} |`);
  }
  lines.push('');
  for (const t of withCpu) {
    const at = 0.8 * t.bare_msgs_per_s;
    const budget = (cores * 1e6) / at - t.cpu.tidecast.publisher_us - t.cpu.tidecast.broker_us;
    lines.push(
      `QoS ${t.qos}: at 0.8 × bare (${Math.round(at)} msgs/s) the machine has ${Math.round((cores * 1e6) / at)} µs of CPU per message; the publisher and the broker took ${Math.round(t.cpu.tidecast.publisher_us + t.cpu.tidecast.broker_us)} of it in tidecast's run, leaving ${Math.round(budget)} µs for tidecast, which used ${t.cpu.tidecast.consumer_us}.`,
    );
  }
  return lines;
}

/** Latency against load as a small standalone SVG (p50 and p99, committed and received back). */
export function latencySvg(r: E2eBenchResult): string {
  const W = 640, H = 360, L = 60, R = 20, T = 30, B = 50;
  const xs = r.latency.map((p) => p.rate_per_s);
  const series = [
    { name: 'committed p50', color: '#1f77b4', dash: '', get: (p: LatencyPoint) => p.committed_ms.p50 },
    { name: 'committed p99', color: '#1f77b4', dash: '6 4', get: (p: LatencyPoint) => p.committed_ms.p99 },
    { name: 'received p50', color: '#d62728', dash: '', get: (p: LatencyPoint) => p.received_ms.p50 },
    { name: 'received p99', color: '#d62728', dash: '6 4', get: (p: LatencyPoint) => p.received_ms.p99 },
  ];
  const ymax = Math.max(1, ...r.latency.flatMap((p) => series.map((s) => s.get(p))).filter(Number.isFinite)) * 1.1;
  const xmax = Math.max(1, ...xs) * 1.05;
  const x = (v: number): number => L + (v / xmax) * (W - L - R);
  const y = (v: number): number => H - B - (v / ymax) * (H - T - B);
  const ticks = (max: number): number[] => {
    const step = 10 ** Math.floor(Math.log10(max / 4));
    const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => max / s <= 6) ?? step * 10;
    return Array.from({ length: Math.floor(max / nice) + 1 }, (_, i) => i * nice);
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">tidecast latency against load (QoS 1, ${r.streams} streams, weather-lstm, after ${WARMUP_S} s warm-up)</text>`,
    ...ticks(ymax).map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`),
    ...ticks(xmax).map((v) => `<text x="${x(v)}" y="${H - B + 16}" text-anchor="middle">${v}</text>`),
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">offered load, messages/s</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">latency, ms</text>`,
  ];
  series.forEach((s, i) => {
    const pts = r.latency.map((p) => `${x(p.rate_per_s).toFixed(1)},${y(s.get(p)).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
    for (const p of r.latency) parts.push(`<circle cx="${x(p.rate_per_s).toFixed(1)}" cy="${y(s.get(p)).toFixed(1)}" r="3" fill="${s.color}"/>`);
    const ly = T + 10 + i * 16;
    parts.push(`<line x1="${L + 12}" x2="${L + 40}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/><text x="${L + 46}" y="${ly + 4}">${s.name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
