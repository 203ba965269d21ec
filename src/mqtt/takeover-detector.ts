import type { Logger } from '../log.js';

/** MQTT 5 DISCONNECT reason code 0x8E: another connection with the same client id took the session over. */
const SESSION_TAKEN_OVER = 0x8e;
/** A connection the broker closes this soon after accepting it counts toward a takeover (MQTT 3.1.1 gives no reason). */
const SHORT_LIVED_MS = 10_000;
/** This many short-lived connections within TAKEOVER_WINDOW_MS are a takeover. */
const TAKEOVER_CLOSES = 3;
const TAKEOVER_WINDOW_MS = 60_000;

export interface TakeoverDetectorOptions {
  /** Our client id, named in the log. */
  clientId: string;
  log: Logger;
  now: () => number;
  /** Called for each connection that looks taken over by another client with our client id. */
  onTakeover?: () => void;
}

/**
 * Tells a session takeover (another client connected with our client id, the
 * broker handing the session to each in turn) from a broker restart: MQTT 5
 * DISCONNECT reason 0x8E, or TAKEOVER_CLOSES connections within a minute that
 * the broker closed within SHORT_LIVED_MS of accepting them and whose very
 * next reconnect it took at once. Each is counted (`onTakeover`); an error is
 * logged at most once a minute.
 */
export class TakeoverDetector {
  readonly #opts: TakeoverDetectorOptions;
  /** When the current connection was accepted (0: not connected). */
  #connectedAt = 0;
  /** When recent connections the broker closed soon after accepting them ended (takeover detection). */
  #shortLived: number[] = [];
  /** When the last connection closed soon after being accepted, until the next attempt tells whether the broker took us straight back. */
  #closedShortly = 0;
  #takeoverLoggedAt = -Infinity;

  constructor(options: TakeoverDetectorOptions) {
    this.#opts = options;
  }

  /** The broker accepted a connection. */
  connected(): void {
    this.#connectedAt = this.#opts.now();
    if (this.#closedShortly > 0) this.#shortLivedConfirmed(this.#closedShortly);
    this.#closedShortly = 0;
  }

  /** The broker sent DISCONNECT with this reason code. */
  disconnected(reasonCode: number): void {
    if (reasonCode === SESSION_TAKEN_OVER) this.#takenOver(`the broker says another connection took the session over (MQTT 5 reason code 0x8E)`);
  }

  /** The connection (or an attempt) closed; `accepting`: whether messages are still taken (a close while stopping tells nothing). */
  closed(accepting: boolean): void {
    const connectedAt = this.#connectedAt;
    this.#connectedAt = 0;
    if (!accepting) return;
    // A failed attempt after a close (connectedAt 0): the broker was away, not someone else on our session.
    this.#closedShortly = connectedAt > 0 && this.#opts.now() - connectedAt < SHORT_LIVED_MS ? this.#opts.now() : 0;
  }

  /**
   * A connection the broker closed soon after accepting it (at `closedAt`),
   * and took the very next attempt back. Under MQTT 3.1.1 a session takeover
   * gives no reason: the broker accepts the other client and closes this
   * one, we reconnect at once (the broker is up) and close the other, about
   * once a reconnect period. Several such connections in a minute are that
   * pattern; a broker restart or a network fault fails the reconnect
   * attempts in between instead.
   */
  #shortLivedConfirmed(closedAt: number): void {
    const now = this.#opts.now();
    this.#shortLived = this.#shortLived.filter((t) => now - t < TAKEOVER_WINDOW_MS);
    this.#shortLived.push(closedAt);
    if (this.#shortLived.length >= TAKEOVER_CLOSES) {
      this.#takenOver(`the broker closed this connection ${this.#shortLived.length} times within ${SHORT_LIVED_MS / 1000} s of accepting it in the last minute, and took each reconnect at once`);
    }
  }

  #takenOver(why: string): void {
    this.#opts.onTakeover?.();
    const now = this.#opts.now();
    if (now - this.#takeoverLoggedAt < TAKEOVER_WINDOW_MS) return;
    this.#takeoverLoggedAt = now;
    const clientId = this.#opts.clientId;
    this.#opts.log.error(
      { clientId, why },
      `session takeover: another MQTT client is most likely connected with client id "${clientId}", and the two keep closing each other's connection (messages go to whichever holds the session). Give each tidecast its own mqtt.clientId; if none other runs, see the broker's log for why it closes this client`,
    );
  }
}
