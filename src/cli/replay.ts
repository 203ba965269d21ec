import { parseArgs } from 'node:util';
import { ExitCodes } from '../exit-codes.js';
import type { CliIo } from './io.js';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { fillTemplate } from '../streams/topic-pattern.js';

export interface ReplayOptions {
  file: string;
  url: string;
  /** Topic template over the CSV's column names, e.g. weather/{location}/daily. */
  topic: string;
  /** Messages per second; 0 publishes as fast as the connection takes them. */
  rate: number;
  qos: 0 | 1;
  signal?: AbortSignal;
  /** Progress output (stderr). */
  progress(line: string, final: boolean): void;
}

/** Parse a simple CSV (no quoted separators): header row, then one object per row; numeric cells become numbers. */
export function parseCsv(text: string): Array<Record<string, string | number>> {
  const [header, ...lines] = text.trim().split(/\r?\n/);
  const cols = header!.split(',').map((c) => c.trim());
  return lines.filter((l) => l.trim() !== '').map((line) => {
    const cells = line.split(',');
    const row: Record<string, string | number> = {};
    cols.forEach((c, i) => {
      const v = (cells[i] ?? '').trim();
      row[c] = v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
    });
    return row;
  });
}

const slug = (v: string | number): string => String(v).toLowerCase().replace(/[^a-z0-9._-]+/g, '-');

/** Publish every row of a CSV as a JSON message on the topic its columns fill in. */
export async function replayCsv(opts: ReplayOptions): Promise<number> {
  const rows = parseCsv(readFileSync(opts.file, 'utf8'));
  const client = await mqtt.connectAsync(opts.url, { clientId: `tidecast-replay-${process.pid}` });
  const started = Date.now();
  let sent = 0;
  const bar = (final: boolean): void => {
    const width = 30;
    const done = rows.length === 0 ? width : Math.round((sent / rows.length) * width);
    const rate = sent / Math.max(0.001, (Date.now() - started) / 1000);
    opts.progress(`[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${sent}/${rows.length} messages, ${rate.toFixed(0)}/s`, final);
  };
  try {
    for (const row of rows) {
      if (opts.signal?.aborted) break;
      const values = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, slug(v)]));
      const topic = fillTemplate(opts.topic, values);
      await client.publishAsync(topic, JSON.stringify(row), { qos: opts.qos });
      sent++;
      if (sent % 100 === 0) bar(false);
      if (opts.rate > 0) {
        const due = started + (sent * 1000) / opts.rate;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait, undefined, { signal: opts.signal }).catch(() => undefined);
      }
    }
  } finally {
    bar(true);
    await client.endAsync();
  }
  return sent;
}

/** `tidecast replay`: publish each row of a CSV file as a JSON message. */
export default async function replayCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { url: { type: 'string' }, topic: { type: 'string' }, rate: { type: 'string', default: '0' }, qos: { type: 'string', default: '1' } },
  });
  if (positionals.length !== 1 || !values.url || !values.topic || !['0', '1'].includes(values.qos!)) {
    io.err('usage: tidecast replay <file.csv> --url mqtt://HOST:PORT --topic TEMPLATE [--rate N] [--qos 0|1]');
    return ExitCodes.USAGE;
  }
  const stop = io.onStopSignal();
  const tty = io.stderrIsTty;
  try {
    const sent = await replayCsv({
      file: positionals[0]!,
      url: values.url,
      topic: values.topic,
      rate: Number(values.rate),
      qos: Number(values.qos) as 0 | 1,
      signal: stop.signal,
      progress: (line, final) => {
        if (tty) io.writeErr(`\r${line}${final ? '\n' : ''}`);
        else if (final) io.err(line);
      },
    });
    io.out(`published ${sent} messages`);
  } finally {
    stop.dispose();
  }
  return 0;
}
