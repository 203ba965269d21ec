import { loadConfig } from '../../src/config/load-config.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { TestBroker } from './broker.js';
import { startChild, type Child } from './child.js';
import { countIn, publishAll } from './fixtures.js';
import { tempDir } from './temp-dir.js';
import { writeConfig, type ConfigInput } from './test-config.js';

export interface TestBedOptions {
  /** Mosquitto saves after every change, so a SIGKILLed broker loses nothing it acknowledged. */
  saveEveryChange?: boolean;
}

export interface DaemonStartOptions {
  /** Environment overrides the config is loaded with (TIDECAST_<PATH>); none by default. */
  env?: NodeJS.ProcessEnv;
  log?: Logger;
}

/**
 * A temp dir, a real broker started on a free port (TestBroker: Mosquitto, or
 * aedes where it is missing), and every daemon and child process a test starts
 * on them. close() tears all of it down in reverse order, and keeps going past
 * a step that fails.
 */
export interface TestBed {
  readonly dir: string;
  readonly broker: TestBroker;
  /** The broker's URL; its port stays the same when a test restarts it. */
  readonly url: string;
  /** Where the default config keeps its database: `<dir>/tidecast.db`. */
  readonly dbFile: string;
  /** testConfig(overrides) for this broker, written to `<dir>/<name>.yaml`; returns the file. */
  writeConfig(overrides?: ConfigInput, name?: string): string;
  /** An in-process Daemon on a config file, started; stopped at close(). */
  startDaemon(file: string, options?: DaemonStartOptions): Promise<Daemon>;
  /** The built CLI as a child process (startChild); SIGKILLed at close() if it still runs. */
  spawn(args: string[], env?: NodeJS.ProcessEnv): Child;
  /** Publish at QoS 1 from a fresh client, `window` messages in flight at a time. */
  publish(msgs: ReadonlyArray<{ topic: string; payload: string | Buffer }>, window?: number): Promise<void>;
  /** The n of a `SELECT count(*) n …` on a database file (default dbFile), read-only. */
  count(sql: string, file?: string): number;
  /** Run `cleanup` at close(), before everything set up earlier. */
  defer(cleanup: () => unknown): void;
  close(): Promise<void>;
}

/** A test bed, started. On a failed start what was set up is torn down again. */
export async function openTestBed(options: TestBedOptions = {}): Promise<TestBed> {
  const cleanups: Array<() => unknown> = [];
  const defer = (cleanup: () => unknown): void => void cleanups.push(cleanup);
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const errors: unknown[] = [];
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'test bed teardown failed');
    })());

  const tmp = tempDir();
  defer(tmp.remove);
  const broker = new TestBroker(tmp.dir, { saveEveryChange: options.saveEveryChange ?? false });
  defer(() => broker.stop());
  try {
    await broker.start();
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  let publishers = 0;
  const dbFile = `${tmp.dir}/tidecast.db`;
  return {
    dir: tmp.dir,
    broker,
    url: broker.url,
    dbFile,
    writeConfig: (overrides = {}, name = 'tidecast') => writeConfig(tmp.dir, { ...overrides, mqtt: { url: broker.url, ...overrides.mqtt } }, name),
    startDaemon: async (file, o = {}) => {
      const daemon = new Daemon({ loaded: loadConfig(file, o.env), log: o.log ?? silentLogger });
      // stop() is idempotent: a test may stop the daemon itself, and this waits for that stop.
      defer(() => daemon.stop());
      await daemon.start();
      return daemon;
    },
    spawn: (args, env) => {
      const child = startChild(args, env);
      defer(async () => {
        if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
        await child.exit;
      });
      return child;
    },
    publish: (msgs, window) => publishAll(broker.url, `test-pub-${++publishers}`, msgs, window),
    count: (sql, file = dbFile) => countIn(file, sql),
    defer,
    close,
  };
}

/** Run `fn` on a fresh test bed (temp dir and broker), torn down afterwards whether `fn` succeeds or throws. */
export async function withBroker<T>(fn: (bed: TestBed) => Promise<T>, options: TestBedOptions = {}): Promise<T> {
  return using(await openTestBed(options), fn);
}

/** `fn(context)`, then `context.close()`; an error of `fn` wins over one of the teardown. */
export async function using<C extends { close(): Promise<void> }, T>(context: C, fn: (context: C) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(context);
  } catch (err) {
    await context.close().catch(() => undefined);
    throw err;
  }
  await context.close();
  return result;
}
