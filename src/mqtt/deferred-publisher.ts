/** Where forecasts, discovery configs and stats go out: a broker connection's `publish`. */
export interface Publisher {
  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void;
}

/**
 * The publisher the forecast sink is built with, before the broker connection
 * exists: recovery replays the input log before the daemon connects (a
 * replayed forecast must not overtake the live ones), so what it publishes
 * waits here, in order, until `connect` hands over the connection.
 */
export class DeferredPublisher implements Publisher {
  #target: Publisher | null = null;
  #waiting: Array<[string, string, 0 | 1 | 2, boolean]> = [];

  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void {
    if (this.#target) this.#target.publish(topic, payload, qos, retain);
    else this.#waiting.push([topic, payload, qos, retain]);
  }

  /** Publications still waiting for the connection. */
  get waiting(): number {
    return this.#target ? 0 : this.#waiting.length;
  }

  /** Send what waited, then publish straight through `target`; returns how many waited. */
  connect(target: Publisher): number {
    const waited = this.#waiting;
    this.#waiting = [];
    this.#target = target;
    for (const [t, p, q, r] of waited) target.publish(t, p, q, r);
    return waited.length;
  }
}
