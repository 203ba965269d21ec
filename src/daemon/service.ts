import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * A long-lived part of the daemon (zigbee2mqtt's extensions, fastify's
 * plugins): its constructor does no I/O, `start()` acquires, `stop()`
 * releases and is safe to call twice.
 */
export interface Service {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/**
 * Services started one after the other, stopped in reverse order by one
 * loop: the composition root's whole lifecycle. A start that fails stops
 * what had started before it. A stop while a service is still starting (a
 * signal while the broker does not answer) stops that one first, and no
 * service starts after it.
 */
export class ServiceGroup {
  readonly #log: Logger;
  readonly #started: Service[] = [];
  #starting: Service | null = null;
  #stopped = false;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Start one more service (after those already started). */
  async start(service: Service): Promise<void> {
    if (this.#stopped) throw new TidecastError(ErrorCodes.STOPPED, `not starting ${service.name}: stopping`);
    this.#starting = service;
    try {
      await service.start();
    } finally {
      this.#starting = null;
    }
    // Stopped while it started: the stop loop already stopped it.
    if (this.#stopped) throw new TidecastError(ErrorCodes.STOPPED, `${service.name} started while stopping`);
    this.#started.push(service);
  }

  /** The services started so far, in start order. */
  get started(): readonly string[] {
    return this.#started.map((s) => s.name);
  }

  /** Stop every started service, last started first; a failing stop is logged and the loop goes on. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const starting = this.#starting;
    const stopping = starting ? [...this.#started, starting] : this.#started.splice(0);
    this.#started.length = 0;
    while (stopping.length > 0) {
      const s = stopping.pop()!;
      try {
        await s.stop();
      } catch (err) {
        this.#log.error({ err, service: s.name }, 'service failed to stop');
      }
    }
  }
}
