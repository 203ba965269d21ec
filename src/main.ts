#!/usr/bin/env node
/**
 * The process edge: arguments, signals, stdout and exit codes live here and
 * nowhere else. Exit codes: 0 ok, 1 runtime failure, 64 usage error,
 * 65 the model or card was refused (see TIDECAST_ERR_* in the message),
 * 130 interrupted.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runEngineDemo } from './demo/engine-demo.js';
import { TidecastError } from './errors.js';
import { loadModel } from './inference/model.js';
import { createLogger } from './log.js';
import { formatInspect, inspectReport } from './inspect.js';
import { packageRoot } from './paths.js';

const EXIT_USAGE = 64;
const EXIT_MODEL = 65;

const HELP = `tidecast: streaming LSTM/GRU forecasts for sensor streams

Usage:
  tidecast demo [--model NAME] [--rate DAYS_PER_S] [--duration S] [--from DATE]
      Replay Seattle and New York daily weather (vega-datasets) as two live
      streams through the stateful engine and print actual vs forecast.
  tidecast inspect <model.onnx> [--card FILE | --no-card] [--json]
      Show a model's inputs, outputs, detected state pairs, layout, mode and card.
  tidecast --version | --help
`;

const out = (line: string): void => void process.stdout.write(line + '\n');

async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, card: { type: 'string' }, 'no-card': { type: 'boolean' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: tidecast inspect <model.onnx> [--card FILE | --no-card] [--json]\n');
    return EXIT_USAGE;
  }
  const model = await loadModel(positionals[0]!, { card: values['no-card'] ? null : values.card });
  const report = inspectReport(model);
  out(values.json ? JSON.stringify(report, null, 2) : formatInspect(report));
  await model.session.release();
  return 0;
}

async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string', default: 'weather-lstm' },
      rate: { type: 'string', default: '8' },
      duration: { type: 'string', default: '0' },
      from: { type: 'string', default: '2015-01-01' },
    },
  });
  const rate = Number(values.rate);
  const durationS = Number(values.duration);
  if (!(rate > 0) || !(durationS >= 0)) {
    process.stderr.write('--rate must be > 0 and --duration >= 0\n');
    return EXIT_USAGE;
  }
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const s = await runEngineDemo({ model: values.model!, rate, durationS, liveFrom: values.from!, signal: abort.signal, log: createLogger('warn', 2), write: out });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  out('');
  out(`summary: ${s.model}, ${s.streams} streams, ${s.days} days shown, ${s.steps} steps in ${s.batches} batches`);
  if (s.scored > 0) {
    out(`live 1-day temp_max MAE over ${s.scored} forecasts: model ${s.maeModel.toFixed(2)} °C, persistence ${s.maePersistence.toFixed(2)} °C`);
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo':
      return demo(rest);
    case 'inspect':
      return inspect(rest);
    case '--version':
    case '-v':
      out((JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      out(HELP);
      return command === undefined ? EXIT_USAGE : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      return EXIT_USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof TidecastError) {
      process.stderr.write(`tidecast: ${err.code}: ${err.message}\n`);
      process.exitCode = EXIT_MODEL;
    } else if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`tidecast: ${err.message}\n`);
      process.exitCode = EXIT_USAGE;
    } else {
      process.stderr.write(`tidecast: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
