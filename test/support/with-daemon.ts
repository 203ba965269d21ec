import type Database from 'better-sqlite3';
import type { Daemon } from '../../src/daemon/daemon.js';
import { waitReady, type Child } from './child.js';
import { openTestBed, using, type DaemonStartOptions, type TestBed, type TestBedOptions } from './test-bed.js';
import type { ConfigInput } from './test-config.js';

/** Config overrides for testConfig, or a function of the test's temp dir that prepares what they name (cards, model copies, a database) and returns them. */
export type Overrides = ConfigInput | ((dir: string) => ConfigInput | Promise<ConfigInput>);

/** A test bed with one in-process daemon started on it. */
export interface DaemonContext extends TestBed {
  readonly daemon: Daemon;
  readonly configFile: string;
  /** The daemon's own connection to its database. */
  readonly db: Database.Database;
  /** The base URL of its HTTP endpoint (http://127.0.0.1:<port>); empty with HTTP off. */
  readonly http: string;
  /** The n of a `SELECT count(*) n …` (with its parameters) on the daemon's own connection. */
  count(sql: string, ...params: unknown[]): number;
}

/** A test bed with the daemon as a child process (the built CLI's `run`), ready. */
export interface ProcessContext extends TestBed {
  readonly child: Child;
  readonly configFile: string;
  /** The base URL its "http endpoint listening" line gave, if any. */
  readonly http: string | undefined;
}

const resolve = async (overrides: Overrides, dir: string): Promise<ConfigInput> => (typeof overrides === 'function' ? overrides(dir) : overrides);

/** A test bed and an in-process Daemon on testConfig(overrides), started; close() stops the daemon, then the broker, then removes the dir. */
export async function openDaemon(overrides: Overrides = {}, options: TestBedOptions & DaemonStartOptions = {}): Promise<DaemonContext> {
  const bed = await openTestBed(options);
  try {
    const configFile = bed.writeConfig(await resolve(overrides, bed.dir));
    const daemon = await bed.startDaemon(configFile, options);
    const db = daemon.store!.db;
    const address = daemon.httpAddress;
    return {
      ...bed,
      daemon,
      configFile,
      db,
      http: address ? `http://${address.host}:${address.port}` : '',
      count: (sql, ...params) => (db.prepare(sql).get(...params) as { n: number }).n,
    };
  } catch (err) {
    await bed.close().catch(() => undefined);
    throw err;
  }
}

/** Run `fn` against an in-process daemon on testConfig(overrides) and a real broker; everything is torn down afterwards, in reverse order, even when `fn` throws. */
export async function withDaemon<T>(overrides: Overrides, fn: (ctx: DaemonContext) => Promise<T>, options: TestBedOptions & DaemonStartOptions = {}): Promise<T> {
  return using(await openDaemon(overrides, options), fn);
}

/** Run `fn` against the daemon as a child process on testConfig(overrides), ready; it is SIGKILLed afterwards if still running, then the broker stops and the dir goes. */
export async function withDaemonProcess<T>(overrides: Overrides, fn: (ctx: ProcessContext) => Promise<T>, options: TestBedOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<T> {
  const bed = await openTestBed(options);
  return using(bed, async () => {
    const configFile = bed.writeConfig(await resolve(overrides, bed.dir));
    const child = bed.spawn(['run', '--config', configFile], options.env);
    const http = await waitReady(child);
    return fn({ ...bed, child, configFile, http });
  });
}
