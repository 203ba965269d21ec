import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { EmbeddedBroker } from '../../src/demo/embedded-broker.js';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p)) ?? null;

/** True when Debian's mosquitto is installed (the tests' broker of choice). */
export const haveMosquitto = MOSQUITTO !== null && spawnSync(MOSQUITTO, ['-h']).error === undefined;

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * A real MQTT broker for a test: Mosquitto on a free loopback port with its own
 * config and persistence file (so a restart keeps persistent sessions), or the
 * embedded aedes broker where Mosquitto is not installed.
 */
export class TestBroker {
  readonly kind: 'mosquitto' | 'aedes' = haveMosquitto ? 'mosquitto' : 'aedes';
  port = 0;
  #dir: string;
  #proc: ChildProcess | null = null;
  #aedes: EmbeddedBroker | null = null;
  log = '';

  readonly #saveEveryChange: boolean;
  readonly #persistence: boolean;

  /** `persistence: false` (benches): no autosave pauses; sessions do not survive a broker restart. */
  constructor(dir: string, options: { saveEveryChange?: boolean; persistence?: boolean } = {}) {
    this.#dir = dir;
    this.#saveEveryChange = options.saveEveryChange ?? false;
    this.#persistence = options.persistence ?? true;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Mosquitto's process id (undefined for the embedded broker, which runs in this process). */
  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    if (this.kind === 'aedes') {
      this.#aedes = new EmbeddedBroker();
      await this.#aedes.start(this.port);
      return;
    }
    const conf = path.join(this.#dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${this.port} 127.0.0.1`,
        'allow_anonymous true',
        // Started as root, mosquitto drops to user "mosquitto", which cannot write
        // the test's private temp dir: stay the user running the tests.
        `user ${userInfo().username}`,
        `persistence ${this.#persistence}`,
        `persistence_location ${this.#dir}/`,
        'autosave_interval 1',
        // Save after every change (slow): a SIGKILLed broker then loses nothing it acknowledged.
        ...(this.#saveEveryChange ? ['autosave_on_changes true'] : []),
        'max_queued_messages 1000000',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
      ].join('\n') + '\n',
    );
    const proc = spawn(MOSQUITTO!, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.#proc = proc;
    // Ready when a client can connect.
    for (let i = 0; i < 100; i++) {
      try {
        const c = await mqtt.connectAsync(this.url, { reconnectPeriod: 0, connectTimeout: 500 });
        await c.endAsync();
        return;
      } catch {
        await sleep(50);
      }
    }
    throw new Error(`mosquitto did not start on ${this.port}: ${this.log}`);
  }

  /** Stop the broker (SIGTERM: Mosquitto saves its persistence file; SIGKILL: only what autosave wrote survives). */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    if (this.#aedes) {
      await this.#aedes.stop();
      this.#aedes = null;
    }
    const proc = this.#proc;
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await exited;
    }
    this.#proc = null;
  }
}
