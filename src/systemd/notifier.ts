import { createRequire } from 'node:module';
import type { Logger } from '../log.js';

/** The part of unix-dgram we use (it ships no types). */
interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', fn: (err: Error) => void): void;
}
interface UnixDgram {
  createSocket(type: 'unix_dgram'): UnixDgramSocket;
}

/**
 * The systemd notify protocol (sd_notify(3)): datagrams such as READY=1 to the
 * unix socket named by $NOTIFY_SOCKET. Node's dgram has no unix sockets, so this
 * uses unix-dgram, a small native addon with no library dependency (unlike
 * sd-notify, which links libsystemd and needs its headers to build), loaded
 * only when $NOTIFY_SOCKET is set. Without $NOTIFY_SOCKET every call is a no-op.
 */
export class SystemdNotifier {
  readonly #path: string | null;
  /** Watchdog interval requested by systemd, µs, or null. */
  readonly watchdogUsec: number | null;
  readonly #log: Logger;
  #socket: UnixDgramSocket | null = null;

  constructor(env: NodeJS.ProcessEnv, log: Logger) {
    this.#log = log.child({ component: 'systemd' });
    const path = env.NOTIFY_SOCKET ?? '';
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    this.watchdogUsec = Number.isFinite(usec) && usec > 0 && forUs ? usec : null;
    if (path === '') {
      this.#path = null;
      return;
    }
    if (path.startsWith('@')) {
      this.#log.warn({ socket: path }, 'abstract NOTIFY_SOCKET is not supported; systemd notifications disabled');
      this.#path = null;
      return;
    }
    this.#path = path;
    try {
      const unix = createRequire(import.meta.url)('unix-dgram') as UnixDgram;
      this.#socket = unix.createSocket('unix_dgram');
      this.#socket.on('error', (err) => this.#log.warn({ err }, 'systemd notify socket error'));
    } catch (err) {
      this.#log.warn({ err }, 'NOTIFY_SOCKET is set but the optional unix-dgram module is not installed; systemd notifications disabled');
      this.#path = null;
    }
  }

  get enabled(): boolean {
    return this.#path !== null && this.#socket !== null;
  }

  #send(state: string): void {
    if (!this.#socket || this.#path === null) return;
    const buf = Buffer.from(state);
    this.#socket.send(buf, 0, buf.length, this.#path, (err) => {
      if (err) this.#log.warn({ err, state }, 'systemd notify failed');
    });
  }

  ready(status?: string): void {
    this.#send(status ? `READY=1\nSTATUS=${status}` : 'READY=1');
  }

  watchdog(): void {
    this.#send('WATCHDOG=1');
  }

  stopping(): void {
    this.#send('STOPPING=1');
  }

  close(): void {
    this.#socket?.close();
    this.#socket = null;
  }
}
