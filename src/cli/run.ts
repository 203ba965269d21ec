import { parseArgs } from 'node:util';
import { ConfigError, findConfigFile, loadConfig } from '../config/load-config.js';
import { Daemon } from '../daemon/daemon.js';
import type { TidecastError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { SystemdNotifier } from '../systemd/notifier.js';
import type { CliIo } from './io.js';

/** `tidecast run`: the daemon, with systemd's notify protocol and watchdog, SIGHUP reload, two-phase stop. */
export default async function run(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const file = findConfigFile(values.config, process.env, process.cwd());
  const loaded = loadConfig(file, process.env);
  const log = createLogger(loaded.config.log.level);
  log.info({ config: loaded.file, overrides: loaded.overrides }, 'configuration loaded');
  const stop = io.onStopSignal();
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
