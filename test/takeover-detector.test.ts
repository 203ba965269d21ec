import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { TakeoverDetector } from '../src/mqtt/takeover-detector.js';

/** A detector on a manual clock, counting takeovers and keeping the errors it logs. */
function harness() {
  // Early enough that a close without a connection accepted would look short-lived, were it not told apart (0 is "not connected").
  const clock = { now: 1_000 };
  const errors: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'error' }, { write: (l: string) => void errors.push(JSON.parse(l) as Record<string, unknown>) });
  let takeovers = 0;
  const detector = new TakeoverDetector({ clientId: 'me', log, now: () => clock.now, onTakeover: () => takeovers++ });
  /** A connection accepted, closed `livedMs` later, then the next attempt `afterMs` later accepted at once. */
  const bounce = (livedMs: number, afterMs = 100): void => {
    detector.connected();
    clock.now += livedMs;
    detector.closed(true);
    clock.now += afterMs;
  };
  return { clock, detector, errors, bounce, takeovers: () => takeovers };
}

describe('TakeoverDetector', () => {
  it('MQTT 5 DISCONNECT reason 0x8E is a takeover at once; another reason is not', () => {
    const h = harness();
    h.detector.disconnected(0x8b);
    assert.equal(h.takeovers(), 0);
    h.detector.disconnected(0x8e);
    assert.equal(h.takeovers(), 1);
    assert.match(String(h.errors[0]!.why), /MQTT 5 reason code 0x8E/);
  });

  it('three connections closed within 10 s of being accepted, each reconnect taken at once, within a minute: a takeover', () => {
    const h = harness();
    for (let k = 0; k < 3; k++) h.bounce(2_000);
    assert.equal(h.takeovers(), 0, 'the third close is confirmed only by the next accepted connection');
    h.detector.connected();
    assert.equal(h.takeovers(), 1);
    assert.equal(h.errors[0]!.clientId, 'me');
    assert.match(String(h.errors[0]!.msg), /^session takeover: .*client id "me"/);
  });

  it('connections that lived 10 s or more do not count', () => {
    const h = harness();
    for (let k = 0; k < 4; k++) h.bounce(10_000);
    h.detector.connected();
    assert.equal(h.takeovers(), 0);
  });

  it('a close followed by failed attempts (the broker was away) does not count', () => {
    const h = harness();
    for (let k = 0; k < 4; k++) {
      h.bounce(2_000);
      h.detector.closed(true); // the reconnect attempt failed: closed without being accepted
    }
    h.detector.connected();
    assert.equal(h.takeovers(), 0);
  });

  it('short-lived connections more than a minute apart do not add up', () => {
    const h = harness();
    for (let k = 0; k < 4; k++) h.bounce(2_000, 40_000);
    h.detector.connected();
    assert.equal(h.takeovers(), 0);
  });

  it('a close while messages are no longer taken (stopping) does not count', () => {
    const h = harness();
    for (let k = 0; k < 2; k++) h.bounce(2_000);
    h.detector.connected();
    h.clock.now += 2_000;
    h.detector.closed(false);
    h.detector.connected();
    assert.equal(h.takeovers(), 0);
  });

  it('counts every takeover but logs at most one error a minute', () => {
    const h = harness();
    h.detector.disconnected(0x8e);
    h.clock.now += 59_000;
    h.detector.disconnected(0x8e);
    assert.deepEqual([h.takeovers(), h.errors.length], [2, 1]);
    h.clock.now += 1_000;
    h.detector.disconnected(0x8e);
    assert.deepEqual([h.takeovers(), h.errors.length], [3, 2]);
  });
});
