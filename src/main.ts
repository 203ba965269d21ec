#!/usr/bin/env node
/**
 * The process edge: which command runs, the exit code it ends with, stdout
 * and stderr, and the process's signals live here and nowhere else. Each
 * command is a module of its own under `cli/`, loaded only when asked for
 * (`tidecast run` does not load the demo's embedded broker).
 *
 * Exit codes: see exit-codes.ts (0 ok, also after a clean SIGTERM/SIGINT
 * stop; 1 runtime failure; 64 usage; 65 a model or card refused; 69 no
 * execution provider; 74 the SQLite store failed or is damaged; 75 another
 * tidecast holds the store; 78 invalid configuration; 130 a second signal).
 */
// Before the daemon allocates: see heap-growth.ts.
import './heap-growth.js';
// Before anything loads mqtt: see quiet-debug.ts.
import './mqtt/quiet-debug.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CliIo, Command } from './cli/io.js';
import { TidecastError } from './errors.js';
import { ExitCodes, exitCodeFor } from './exit-codes.js';
import { packageRoot } from './paths.js';

const HELP = `tidecast: stateful LSTM/GRU forecasts for MQTT sensor streams

Usage:
  tidecast run [--config FILE]
      Run the daemon. Config: --config, $TIDECAST_CONFIG,
      /etc/tidecast/tidecast.yaml, ./config/tidecast.yaml.
  tidecast check-config [--config FILE]
      Validate the configuration and load its models without starting;
      exit 78 if the configuration is invalid, 65 if a model is refused,
      69 if a model with strictProviders cannot use its first provider.
  tidecast demo [--url mqtt://HOST:PORT] [--duration S] [--db PATH] [--rate DAYS_PER_S] [--from DATE]
      Replay Seattle and New York daily weather as two MQTT sensor streams
      through the daemon (embedded broker unless --url) and show actual vs forecast.
  tidecast replay <file.csv> --url mqtt://HOST:PORT --topic TEMPLATE [--rate N] [--qos 0|1]
      Publish each CSV row as a JSON message; TEMPLATE uses column names: weather/{location}/daily.
  tidecast query [--db PATH | --config FILE] [--stream ID] [--limit N] [--json]
      Show the latest stored predictions.
  tidecast query --accuracy [--db PATH | --config FILE] [--stream ID] [--window N] [--json]
      Rolling online MAE, RMSE, bias and skill against persistence per stream,
      model, horizon and target, over the latest N scored forecasts (default 100).
  tidecast inspect <model.onnx> [--card FILE | --no-card] [--providers LIST [--strict-providers]] [--json]
      Show a model's inputs, outputs, state pairs, layout, mode and card; with
      --providers cuda,cpu, which execution provider it gets and why others failed.
  tidecast --version | --help
`;

const out = (line: string): void => void process.stdout.write(line + '\n');
const err = (line: string): void => void process.stderr.write(line + '\n');

/** Resolve on the first SIGTERM/SIGINT; a second one exits at once. */
function onStopSignal(): { signal: AbortSignal; dispose(): void } {
  const abort = new AbortController();
  const handler = (sig: NodeJS.Signals): void => {
    if (abort.signal.aborted) {
      err(`tidecast: second ${sig}, exiting now`);
      process.exit(ExitCodes.SECOND_SIGNAL);
    }
    abort.abort(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: abort.signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

const io: CliIo = {
  out,
  err,
  onStopSignal,
  stderrIsTty: process.stderr.isTTY === true,
  writeErr: (text) => void process.stderr.write(text),
};

/** Each command's module, imported when it runs. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./cli/run.js')).default,
  'check-config': async () => (await import('./cli/check-config.js')).default,
  demo: async () => (await import('./cli/demo.js')).default,
  replay: async () => (await import('./cli/replay.js')).default,
  query: async () => (await import('./cli/query.js')).default,
  inspect: async () => (await import('./cli/inspect.js')).default,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const load = command === undefined ? undefined : COMMANDS[command];
  if (load) return (await load())(rest, io);
  switch (command) {
    case '--version':
    case '-v':
      out((JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version);
      return 0;
    case '--help':
    case '-h':
    case 'help':
      out(HELP);
      return 0;
    default:
      err(command === undefined ? HELP : `unknown command "${command}"\n\n${HELP}`);
      return ExitCodes.USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const code = exitCodeFor(e);
    if (e instanceof TidecastError) err(`tidecast: ${e.code}: ${e.message}`);
    else if (code === ExitCodes.USAGE) err(`tidecast: ${(e as Error).message}`);
    else err(`tidecast: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = code;
  },
);
