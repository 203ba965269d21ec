import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { publishAll } from '../test/support/fixtures.js';
import { BenchBroker, benchMessage, endSession, metric, rssBytes, startDaemon, waitCount, writeBenchConfig, type BenchDaemon } from './support.js';

const MiB = 1024 * 1024;
/** The memory bench's checkpoint interval: longer than its feed, so the first checkpoint writes every stream. */
const CHECKPOINT_S = 25;

export interface MemoryPoint {
  streams: number;
  rss_mib: number;
  bytes_per_stream: number;
  /** Raw bytes of one stream's hidden state (weather-lstm: h and c, 2 layers × 32 floats each). */
  state_bytes: number;
  /** The bound: 1.5 × state bytes + 200 bytes. */
  target_bytes_per_stream: number;
}

export interface MemoryBenchResult {
  scenario: 'memory';
  /** The engine alone (state slab and stream index), in a fresh process per point. */
  engine: MemoryPoint[];
  /** The whole daemon (engine, step assembly, residency), one message per stream through Mosquitto. */
  daemon: MemoryPoint[];
  /** The daemon at the last point once a checkpoint has written every stream (what a running daemon keeps). */
  daemon_checkpointed?: MemoryPoint;
  /** RSS the daemon grew from its first point to its last, per stream added: a stream's cost once the process has warmed up. */
  daemon_added_bytes_per_stream?: number;
}

export interface RecoveryBenchResult {
  scenario: 'recovery';
  streams: number;
  /** Process start to "ready" on an empty database: the floor (node, onnxruntime, broker). */
  empty_start_ms: number;
  /** Process start to "ready" with `streams` streams checkpointed by a clean stop. */
  checkpointed_start_ms: number;
  /** Of which restoring streams up front (only wall-clock routes need it; the bench's route loads lazily). */
  restore_ms: number;
  /** After SIGKILL with `replayed` inputs logged since the last checkpoint. */
  crash_start_ms: number;
  replayed: number;
}

function engineMemory(n: number): Promise<MemoryPoint> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--expose-gc', path.join(packageRoot, 'dist', 'bench', 'memory-child.js'), String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`memory-child ${n} exited ${code}`));
      const r = JSON.parse(out.trim()) as { streams: number; rss_before: number; rss_after: number; state_bytes: number };
      resolve(point(r.streams, r.rss_after, r.rss_after - r.rss_before, r.state_bytes));
    });
  });
}

function point(streams: number, rss: number, grown: number, stateBytes: number): MemoryPoint {
  return {
    streams,
    rss_mib: Math.round(rss / MiB),
    bytes_per_stream: Math.round(grown / streams),
    state_bytes: stateBytes,
    target_bytes_per_stream: Math.round(1.5 * stateBytes + 200),
  };
}

/** Publish one message to each of streams [from, to) and wait until the daemon has committed them all. */
async function feed(url: string, daemon: BenchDaemon, from: number, to: number, streams: number): Promise<void> {
  const base = await daemon.committed();
  const msgs = Array.from({ length: to - from }, (_, i) => benchMessage(from + i, streams));
  await publishAll(url, `feed-${from}`, msgs, 500);
  const { n } = await waitCount(daemon.committed, base + (to - from), 10_000, 100);
  if (n < base + (to - from)) throw new Error(`the daemon committed ${n - base} of ${to - from}`);
}

export async function memoryBench(): Promise<MemoryBenchResult> {
  const engine: MemoryPoint[] = [];
  for (const n of [10_000, 100_000, 1_000_000]) engine.push(await engineMemory(n));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-memory-'));
  const broker = new BenchBroker(dir);
  await broker.start();
  const daemon: MemoryPoint[] = [];
  let checkpointed: MemoryPoint | undefined;
  try {
    // The first checkpoint comes after the feed (about 10 s here), and writes every stream.
    const d = await startDaemon(writeBenchConfig(dir, broker.url, { name: 'memory', extra: `durability: { checkpointIntervalS: ${CHECKPOINT_S} }` }));
    try {
      const idle = rssBytes(d.child.proc.pid!);
      let done = 0;
      for (const n of [10_000, 100_000]) {
        await feed(broker.url, d, done, n, 100_000);
        done = n;
        const rss = rssBytes(d.child.proc.pid!);
        daemon.push(point(n, rss, rss - idle, engine[0]!.state_bytes));
      }
      const checkpoints = async (): Promise<number> => metric(await (await fetch(`${d.http}/metrics`)).text(), 'tidecast_checkpoint_write_seconds_count');
      if ((await checkpoints()) > 0) throw new Error(`a checkpoint ran during the feed: raise CHECKPOINT_S (${CHECKPOINT_S} s)`);
      if ((await waitCount(checkpoints, 1, (CHECKPOINT_S + 60) * 1000, 250)).n < 1) throw new Error('no checkpoint within its interval');
      const rss = rssBytes(d.child.proc.pid!);
      checkpointed = point(done, rss, rss - idle, engine[0]!.state_bytes);
    } finally {
      await d.stop();
      await endSession(broker.url, 'memory');
    }
  } finally {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const [first, last] = [daemon[0]!, daemon[daemon.length - 1]!];
  const added = Math.round((last.bytes_per_stream * last.streams - first.bytes_per_stream * first.streams) / (last.streams - first.streams));
  return { scenario: 'memory', engine, daemon, daemon_checkpointed: checkpointed, daemon_added_bytes_per_stream: added };
}

export async function recoveryBench(streams = 100_000): Promise<RecoveryBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-recovery-'));
  const broker = new BenchBroker(dir);
  await broker.start();
  try {
    const config = writeBenchConfig(dir, broker.url, { name: 'recovery', extra: 'durability: { checkpointIntervalS: 3600 }' });
    const empty = await startDaemon(config);
    await feed(broker.url, empty, 0, streams, streams);
    await empty.stop(); // final checkpoint: every stream's state
    const warm = await startDaemon(config);
    // Streams of routes without wallClock load on their next message: nothing to restore up front.
    const restore = Number(warm.recovered?.ms ?? 0);
    // A crash with a backlog: a second step for a fifth of the streams, then SIGKILL before any checkpoint.
    const replayed = Math.round(streams / 5);
    await feed(broker.url, warm, streams, streams + replayed, streams);
    warm.child.proc.kill('SIGKILL');
    await warm.child.exit;
    const crash = await startDaemon(config);
    const replayedLogged = Number(crash.recovered?.replayedInputs ?? 0);
    await crash.stop();
    return {
      scenario: 'recovery',
      streams,
      empty_start_ms: Math.round(empty.readyMs),
      checkpointed_start_ms: Math.round(warm.readyMs),
      restore_ms: restore,
      crash_start_ms: Math.round(crash.readyMs),
      replayed: replayedLogged,
    };
  } finally {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function memoryTable(r: MemoryBenchResult): string {
  const row = (where: string, p: MemoryPoint): string =>
    `| ${where} | ${p.streams} | ${p.rss_mib} | ${p.bytes_per_stream} | ${p.state_bytes} | ${p.target_bytes_per_stream} | ${p.bytes_per_stream <= p.target_bytes_per_stream ? 'yes' : 'no'} |`;
  return [
    'memory: RSS growth per stream of weather-lstm versus its raw hidden state',
    '',
    '| measured | streams | RSS MiB | bytes/stream | state bytes | target | within |',
    '|---|---:|---:|---:|---:|---:|---|',
    ...r.engine.map((p) => row('engine', p)),
    ...r.daemon.map((p) => row('daemon', p)),
    ...(r.daemon_checkpointed ? [row('daemon, after a checkpoint of every stream', r.daemon_checkpointed)] : []),
    ...(r.daemon_added_bytes_per_stream !== undefined
      ? ['', `daemon: ${r.daemon_added_bytes_per_stream} bytes per stream added from ${r.daemon[0]!.streams} to ${r.daemon[r.daemon.length - 1]!.streams} streams (what a stream costs once the process has warmed up)`]
      : []),
  ].join('\n');
}

export function recoveryTable(r: RecoveryBenchResult): string {
  return [
    `recovery: process start to ready (ms), ${r.streams} streams`,
    '',
    '| empty database | checkpointed (clean stop) | of which restoring streams | after SIGKILL | inputs replayed |',
    '|---:|---:|---:|---:|---:|',
    `| ${r.empty_start_ms} | ${r.checkpointed_start_ms} | ${r.restore_ms} | ${r.crash_start_ms} | ${r.replayed} |`,
  ].join('\n');
}
