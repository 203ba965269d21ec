#!/usr/bin/env node
/**
 * The process edge: arguments, signals, stdout and exit codes live here and
 * nowhere else.
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
import { parseArgs } from 'node:util';
import { formatAccuracy, formatPredictions, queryAccuracy, queryPredictions } from './cli/query.js';
import { replayCsv } from './cli/replay.js';
import { ConfigError, findConfigFile, loadConfig } from './config/load-config.js';
import { redactUrl } from './config/redact.js';
import { Daemon } from './daemon/daemon.js';
import { runMqttDemo } from './demo/mqtt-demo.js';
import { ErrorCodes, TidecastError } from './errors.js';
import { loadModel, loadOptionsFor } from './inference/model.js';
import { formatInspect, inspectReport } from './inspect.js';
import { createHumanLogger, createLogger, setLogLevel } from './log.js';
import { SystemdNotifier } from './systemd/notifier.js';
import { packageRoot } from './paths.js';
import { ExitCodes } from './exit-codes.js';

const EXIT_USAGE = ExitCodes.USAGE;
const EXIT_MODEL = ExitCodes.MODEL;
const EXIT_UNAVAILABLE = ExitCodes.UNAVAILABLE;
const EXIT_STORE = ExitCodes.STORE;
const EXIT_LOCKED = ExitCodes.LOCKED;
const EXIT_CONFIG = ExitCodes.CONFIG;
const EXIT_SECOND_SIGNAL = ExitCodes.SECOND_SIGNAL;

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
      process.exit(EXIT_SECOND_SIGNAL);
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

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const file = findConfigFile(values.config, process.env, process.cwd());
  const loaded = loadConfig(file, process.env);
  const log = createLogger(loaded.config.log.level);
  log.info({ config: loaded.file, overrides: loaded.overrides }, 'configuration loaded');
  const stop = onStopSignal();
  const notifier = new SystemdNotifier(process.env, log);
  // TIDECAST_FAULT_CHECKPOINT_CHUNK: fault injection for the kill test (checkpoints written a few streams per chunk).
  const daemon = new Daemon({ loaded, log, checkpointChunk: Number(process.env.TIDECAST_FAULT_CHECKPOINT_CHUNK ?? 0) || undefined });
  // SIGHUP re-reads the configuration and applies what can change live: the log
  // level; and it reloads every model file (a changed one is swapped in between batches).
  const onHangup = (): void => {
    try {
      const level = loadConfig(file, process.env).config.log.level;
      setLogLevel(log, level);
      log.info({ level }, 'configuration reloaded: log level applied');
    } catch (e) {
      log.error({ problems: e instanceof ConfigError ? e.problems : [(e as Error).message] }, 'configuration reload failed; keeping the running settings');
    }
    void daemon.reloadModels('SIGHUP');
  };
  process.on('SIGHUP', onHangup);
  let watchdog: NodeJS.Timeout | null = null;
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  let fatal: TidecastError | null = null;
  try {
    const started = await Promise.race([daemon.start().then(() => true), stopped.then(() => false)]);
    if (started) {
      notifier.ready(`ready: ${Object.keys(loaded.config.models).join(', ')}`);
      if (notifier.watchdogUsec !== null) {
        // Ping at half the interval, and only while the pipeline makes progress.
        watchdog = setInterval(() => {
          if (daemon.progressed()) notifier.watchdog();
          else log.warn(daemon.stats(), 'no inference progress with steps queued: withholding the systemd watchdog ping');
        }, notifier.watchdogUsec / 2000);
        notifier.watchdog();
      }
    }
    // A store that cannot write without losing something (a damaged database) stops the daemon: exit 74.
    fatal = await Promise.race([stopped.then(() => null), daemon.failed]);
    if (fatal === null) log.info({ signal: stop.signal.reason as string }, 'signal received');
  } finally {
    notifier.stopping();
    if (watchdog) clearInterval(watchdog);
    process.off('SIGHUP', onHangup);
    await daemon.stop();
    notifier.close();
    log.flush();
  }
  if (fatal) throw fatal;
  return 0;
}

async function checkConfig(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const file = findConfigFile(values.config, process.env, process.cwd());
  const { config, overrides } = loadConfig(file, process.env);
  const used: string[] = [];
  for (const [name, m] of Object.entries(config.models)) {
    const model = await loadModel(m.path!, loadOptionsFor(m));
    await model.session.release();
    if (!model.card) throw new ConfigError(file, [`models.${name}: ${m.path} has no model card; the daemon needs one`]);
    const fell = model.providerFailures.map((f) => `${f.provider} unavailable: ${f.reason}`);
    used.push(`${name} on ${model.provider}${fell.length > 0 ? ` (${fell.join('; ')})` : ''}`);
  }
  out(`ok: ${file}`);
  out(`  broker ${redactUrl(config.mqtt.url)} as ${config.mqtt.clientId}; store ${config.store.path}`);
  out(`  models ${used.join(', ')}; routes ${config.routes.map((r) => `${r.topic} -> ${r.models.join('+')}`).join('; ')}`);
  if (overrides.length > 0) out(`  environment overrides: ${overrides.join(', ')}`);
  return 0;
}

async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      duration: { type: 'string', default: '0' },
      db: { type: 'string' },
      rate: { type: 'string', default: '8' },
      from: { type: 'string', default: '2015-01-01' },
    },
  });
  const rate = Number(values.rate);
  const durationS = Number(values.duration);
  if (!(rate > 0) || !(durationS >= 0)) {
    err('tidecast demo: --rate must be > 0 and --duration >= 0');
    return EXIT_USAGE;
  }
  const stop = onStopSignal();
  try {
    const s = await runMqttDemo({
      url: values.url,
      db: values.db,
      rate,
      durationS,
      liveFrom: values.from!,
      signal: stop.signal,
      log: createHumanLogger('warn'),
      write: out,
    });
    out('');
    out(`summary: ${s.messages} messages, ${s.predictions} forecasts, ${s.streams} streams, ${s.deadLetters} dead letters, ${s.daysShown} days shown`);
    if (s.scored > 0) out(`live 1-day temp_max MAE over ${s.scored} forecasts: model ${s.maeModel.toFixed(2)} °C, persistence ${s.maePersistence.toFixed(2)} °C`);
    if (s.rainScored > 0) out(`live dry/wet tomorrow over ${s.rainScored} calls: ${s.rainHits} right, accuracy ${(s.rainHits / s.rainScored).toFixed(3)}`);
    out(`database: ${s.db}  (tidecast query --db ${s.db})`);
  } finally {
    stop.dispose();
  }
  return 0;
}

async function replay(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { url: { type: 'string' }, topic: { type: 'string' }, rate: { type: 'string', default: '0' }, qos: { type: 'string', default: '1' } },
  });
  if (positionals.length !== 1 || !values.url || !values.topic || !['0', '1'].includes(values.qos!)) {
    err('usage: tidecast replay <file.csv> --url mqtt://HOST:PORT --topic TEMPLATE [--rate N] [--qos 0|1]');
    return EXIT_USAGE;
  }
  const stop = onStopSignal();
  const tty = process.stderr.isTTY;
  try {
    const sent = await replayCsv({
      file: positionals[0]!,
      url: values.url,
      topic: values.topic,
      rate: Number(values.rate),
      qos: Number(values.qos) as 0 | 1,
      signal: stop.signal,
      progress: (line, final) => {
        if (tty) process.stderr.write(`\r${line}${final ? '\n' : ''}`);
        else if (final) err(line);
      },
    });
    out(`published ${sent} messages`);
  } finally {
    stop.dispose();
  }
  return 0;
}

function query(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      db: { type: 'string' },
      config: { type: 'string' },
      stream: { type: 'string' },
      limit: { type: 'string', default: '20' },
      json: { type: 'boolean' },
      accuracy: { type: 'boolean' },
      window: { type: 'string', default: '100' },
    },
  });
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) {
    err('tidecast query: --limit must be a positive integer');
    return EXIT_USAGE;
  }
  const db = values.db ?? loadConfig(findConfigFile(values.config, process.env, process.cwd()), process.env).config.store.path;
  if (values.accuracy) {
    const window = Number(values.window);
    if (!Number.isInteger(window) || window < 1) {
      err('tidecast query: --window must be a positive integer');
      return EXIT_USAGE;
    }
    const acc = queryAccuracy(db, { stream: values.stream, window });
    if (values.json) for (const r of acc) out(JSON.stringify(r));
    else out(formatAccuracy(acc, window));
    return 0;
  }
  const rows = queryPredictions(db, { stream: values.stream, limit });
  if (values.json) for (const r of rows) out(JSON.stringify(r));
  else out(formatPredictions(rows));
  return 0;
}

async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      card: { type: 'string' },
      'no-card': { type: 'boolean' },
      providers: { type: 'string' },
      'strict-providers': { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) {
    err('usage: tidecast inspect <model.onnx> [--card FILE | --no-card] [--providers LIST [--strict-providers]] [--json]');
    return EXIT_USAGE;
  }
  const providers = values.providers?.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const model = await loadModel(positionals[0]!, { card: values['no-card'] ? null : values.card, providers, strictProviders: values['strict-providers'] });
  const report = inspectReport(model);
  out(values.json ? JSON.stringify(report, null, 2) : formatInspect(report));
  await model.session.release();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return run(rest);
    case 'check-config':
      return checkConfig(rest);
    case 'demo':
      return demo(rest);
    case 'replay':
      return replay(rest);
    case 'query':
      return query(rest);
    case 'inspect':
      return inspect(rest);
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
      return EXIT_USAGE;
  }
}

function exitCodeFor(e: unknown): number {
  if (e instanceof ConfigError) return EXIT_CONFIG;
  if (e instanceof TidecastError) {
    if (e.code === ErrorCodes.STORE) return EXIT_STORE;
    if (e.code === ErrorCodes.LOCKED) return EXIT_LOCKED;
    if (e.code === ErrorCodes.CONFIG) return EXIT_CONFIG;
    if (e.code === ErrorCodes.PROVIDER) return EXIT_UNAVAILABLE;
    return EXIT_MODEL;
  }
  if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return EXIT_USAGE;
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const code = exitCodeFor(e);
    if (e instanceof TidecastError) err(`tidecast: ${e.code}: ${e.message}`);
    else if (code === EXIT_USAGE) err(`tidecast: ${(e as Error).message}`);
    else err(`tidecast: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = code;
  },
);
