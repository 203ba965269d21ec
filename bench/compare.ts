/**
 * Two builds of tidecast side by side: `npm run bench:compare -- --against DIR
 * [--qos 0|1] [--pairs N] [--messages N]`. DIR is another checkout of
 * tidecast, built (`npx tsc -p tsconfig.json` there; a git worktree of an
 * older commit with this one's node_modules linked will do). Each pair runs
 * the two daemons one after the other (alternating which goes first) on the
 * same broker and the same load as `bench e2e` (10,000 streams of
 * weather-lstm, the publisher as fast as it goes), and meters each daemon's
 * CPU (every thread, /proc) while its messages go through. On a shared
 * machine one run's CPU per message moves by a quarter from run to run;
 * pairs, and the median and geometric mean of their ratios, are what hold.
 * Writes nothing in either working tree.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, publisher } from './e2e.js';
import * as here from './support.js';

type Support = Pick<typeof here, 'startDaemon' | 'writeBenchConfig' | 'waitCount' | 'endSession'>;

/** One daemon of a build through `count` messages: its CPU per message (µs) and its rate. */
async function run(s: Support, dir: string, url: string, name: string, qos: 0 | 1, count: number, first: number): Promise<{ us: number; perS: number }> {
  const daemon = await s.startDaemon(s.writeBenchConfig(dir, url, { name, models: ['weather-lstm'], shape: 'telemetry' }));
  try {
    const pub = publisher({ url, qos, streams: 10_000, count, window: 500, first });
    const t0 = await pub.started;
    const pid = daemon.child.proc.pid!;
    const c0 = cpuSeconds(pid);
    const { n, at } = await s.waitCount(daemon.committed, count, 5000, 100);
    const c1 = cpuSeconds(pid);
    await pub.done;
    if (n < count) throw new Error(`${name}: ${n} of ${count} messages committed`);
    return { us: ((c1 - c0) / n) * 1e6, perS: n / ((at - t0) / 1000) };
  } finally {
    await daemon.stop();
    await s.endSession(url, name);
  }
}

const r1 = (x: number): string => x.toFixed(1);

const { values } = parseArgs({ options: { against: { type: 'string' }, qos: { type: 'string', default: '0' }, pairs: { type: 'string', default: '4' }, messages: { type: 'string', default: '200000' } } });
if (!values.against) {
  process.stderr.write('usage: npm run bench:compare -- --against DIR [--qos 0|1] [--pairs N] [--messages N] (DIR: another built checkout)\n');
  process.exit(64);
}
const other = path.resolve(values.against);
const qos = Number(values.qos) === 1 ? 1 : 0;
const [pairs, count] = [Number(values.pairs), Number(values.messages)];
const builds: Support[] = [here, (await import(path.join(other, 'dist', 'bench', 'support.js'))) as Support];
const dir = mkdtempSync(path.join(os.tmpdir(), 'tidecast-bench-compare-'));
const broker = new here.BenchBroker(dir);
await broker.start();
const got: Array<Array<{ us: number; perS: number }>> = [[], []];
try {
  let first = 0;
  for (let p = 0; p < pairs; p++) {
    for (const b of p % 2 === 0 ? [1, 0] : [0, 1]) {
      got[b]!.push(await run(builds[b]!, dir, broker.url, `compare-${b}-${p}`, qos, count, first));
      first += count;
    }
  }
} finally {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}
const ratios = got[0]!.map((x, i) => x.us / got[1]![i]!.us);
const geomean = Math.exp(ratios.reduce((a, r) => a + Math.log(r), 0) / ratios.length);
const lines = [
  `compare: tidecast CPU per message (µs, every thread), QoS ${qos}, ${count} messages a run over 10,000 streams of weather-lstm, ${pairs} pairs`,
  '',
  '| pair | this µs | against µs | this / against | this msgs/s | against msgs/s |',
  '|---:|---:|---:|---:|---:|---:|',
  ...ratios.map((r, i) => `| ${i + 1} | ${r1(got[0]![i]!.us)} | ${r1(got[1]![i]!.us)} | ${r.toFixed(3)} | ${Math.round(got[0]![i]!.perS)} | ${Math.round(got[1]![i]!.perS)} |`),
  '',
  `this / against: median of the pairs' ratios ${here.median(ratios).toFixed(3)}, geometric mean ${geomean.toFixed(3)}; medians ${r1(here.median(got[0]!.map((x) => x.us)))} against ${r1(here.median(got[1]!.map((x) => x.us)))} µs`,
];
process.stdout.write(JSON.stringify({ bench: 'compare', qos, messages: count, against: other, this_us: got[0]!.map((x) => x.us), against_us: got[1]!.map((x) => x.us), median_ratio: here.median(ratios), geomean_ratio: geomean }) + '\n');
process.stdout.write(lines.join('\n') + '\n');
