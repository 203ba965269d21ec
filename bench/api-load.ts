import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import os, { setPriority } from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { BenchBroker, benchMessage, endSession, percentile, startDaemon, waitCount, writeBenchConfig } from './support.js';

export interface ApiLoadPhase {
  api_clients: number;
  messages: number;
  /** Publish → forecast committed, ms: the path through tidecast's acknowledgement of each message. */
  committed_ms: { p50: number; p99: number };
  /** GET /healthz, ms, probed every 20 ms. */
  healthz_ms: { p50: number; p99: number; max: number };
  /** API answers by status (200 answered, 503 refused past the bound). */
  api_answers: Record<string, number>;
}

export interface ApiLoadResult {
  scenario: 'api-load';
  streams: number;
  rate_per_s: number;
  phases: ApiLoadPhase[];
  /** p99 commit latency with the API clients / without (the lower of two runs each). */
  p99_ratio: number;
}

const STREAMS = 2000;
const RATE = 1500;
const SECONDS = 6;
const CLIENTS = 200;

/** The API clients, in a child process at the lowest priority (as clients elsewhere would be); `stop` gives their answers by status. */
async function startClients(base: string, clients: number): Promise<{ stop(): Promise<Record<string, number>> }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./api-clients.js', import.meta.url)), base, String(clients)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => {
    const check = (): void => (out.includes('started') ? resolve() : void setTimeout(check, 10));
    check();
  });
  try {
    setPriority(child.pid!, 19);
  } catch {
    // left at normal priority
  }
  return {
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      return JSON.parse(out.split('\n').filter((l) => l.startsWith('{')).pop() ?? '{}') as Record<string, number>;
    },
  };
}

function get(base: string, p: string): Promise<number> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, path: p, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * MQTT under API load: QoS 1 messages paced at RATE to STREAMS streams, the
 * time from publishing each to its forecast being committed (the path
 * through tidecast's acknowledgement), and /healthz probed every 20 ms;
 * once with no API clients and once with 200 of them looping over the
 * stream list and distinct series, alternated (twice each) on one daemon.
 * The clients run in a child process at nice 19, standing for browsers on
 * other machines: what is measured is what answering them costs tidecast.
 */
export async function apiLoadBench(): Promise<ApiLoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-api-load-'));
  const broker = new BenchBroker(dir);
  await broker.start();
  const name = 'api-load';
  const daemon = await startDaemon(writeBenchConfig(dir, broker.url, { name }));
  const phases: ApiLoadPhase[] = [];
  try {
    const pub = await mqtt.connectAsync(broker.url, { clientId: `${name}-pub`, clean: true });
    let k = 0;
    // Every stream once, and a few steps of history for the stream list to show.
    for (; k < STREAMS * 3; k++) {
      const m = benchMessage(k, STREAMS);
      void pub.publishAsync(m.topic, m.payload, { qos: 1 });
      if (k % 500 === 499) await new Promise((r) => setTimeout(r, 5));
    }
    await waitCount(() => daemon.committed(), STREAMS * 3, 10_000);
    for (const clients of [0, CLIENTS, 0, CLIENTS]) {
      let done = false;
      const load = clients > 0 ? await startClients(daemon.http, clients) : null;
      const health: number[] = [];
      const probe = (async () => {
        while (!done) {
          const t = performance.now();
          await get(daemon.http, '/healthz');
          health.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const sent = new Map<string, number>();
      const total = RATE * SECONDS;
      const first = k;
      const started = performance.now();
      while (k < first + total) {
        const due = Math.min(first + total, first + Math.floor(((performance.now() - started) / 1000) * RATE) + 1);
        for (; k < due; k++) {
          const at = performance.timeOrigin + performance.now();
          const m = benchMessage(k, STREAMS, at);
          sent.set(`${m.stream}@${m.tsMs}`, at);
          void pub.publishAsync(m.topic, m.payload, { qos: 1 });
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      await waitCount(() => daemon.committed(), k, 10_000);
      done = true;
      const answers = (await load?.stop()) ?? {};
      await probe;
      const db = new Database(path.join(dir, `${name}.db`), { readonly: true });
      const rows = db.prepare('SELECT s.name AS stream, f.issued_at, f.created_at FROM forecasts f JOIN stream_ids s ON s.sid = f.sid WHERE f.created_at >= ?').all(Math.floor(performance.timeOrigin + started) - 1000) as Array<{ stream: string; issued_at: number; created_at: number }>;
      db.close();
      const committed = rows.flatMap((r) => {
        const at = sent.get(`${r.stream}@${r.issued_at}`);
        return at === undefined ? [] : [r.created_at - at];
      });
      committed.sort((a, b) => a - b);
      health.sort((a, b) => a - b);
      const r2 = (x: number): number => Math.round(x * 100) / 100;
      phases.push({
        api_clients: clients,
        messages: committed.length,
        committed_ms: { p50: r2(percentile(committed, 50)), p99: r2(percentile(committed, 99)) },
        healthz_ms: { p50: r2(percentile(health, 50)), p99: r2(percentile(health, 99)), max: r2(health[health.length - 1] ?? NaN) },
        api_answers: answers,
      });
    }
    await pub.endAsync();
  } finally {
    await daemon.stop();
    await endSession(broker.url, name);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const best = (clients: number): number => Math.min(...phases.filter((p) => p.api_clients === clients).map((p) => p.committed_ms.p99));
  return { scenario: 'api-load', streams: STREAMS, rate_per_s: RATE, phases, p99_ratio: Math.round((best(CLIENTS) / best(0)) * 100) / 100 };
}

export function apiLoadTable(r: ApiLoadResult): string {
  const lines = [
    `api-load: QoS 1 at ${r.rate_per_s} msgs/s to ${r.streams} streams for ${SECONDS} s, publish → forecast committed, with and without ${CLIENTS} concurrent API clients (alternated, one daemon); /healthz probed every 20 ms`,
    '',
    '| API clients | messages | committed p50 ms | p99 ms | /healthz p50 ms | p99 ms | max ms | API answers |',
    '|---:|---:|---:|---:|---:|---:|---:|---|',
    ...r.phases.map((p) => `| ${p.api_clients} | ${p.messages} | ${p.committed_ms.p50} | ${p.committed_ms.p99} | ${p.healthz_ms.p50} | ${p.healthz_ms.p99} | ${p.healthz_ms.max} | ${Object.entries(p.api_answers).map(([s, n]) => `${s}: ${n}`).join(', ') || '–'} |`),
    '',
    `p99 commit latency with ${CLIENTS} API clients / without (the lower of two runs each): ${r.p99_ratio}`,
  ];
  return lines.join('\n');
}
