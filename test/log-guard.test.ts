import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { LogGuard } from '../src/store/log-guard.js';
import { ManualClock } from './support/manual-clock.js';

function capture(): { log: pino.Logger; messages: string[] } {
  const messages: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      messages.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), messages };
}

describe('input log guard', () => {
  it('retries a failed write with backoff until it goes through, then reports recovery once', () => {
    const { log, messages } = capture();
    const clock = new ManualClock();
    let tries = 0;
    let recovered = 0;
    const at: number[] = [clock.now()];
    // The fault: the first two retries fail again (a full disk), the third writes.
    const guard: LogGuard = new LogGuard({
      log,
      retry: () => {
        tries++;
        at.push(clock.now());
        if (tries < 3) {
          guard.fail(new Error('SQLITE_FULL'), 'input log (QoS 0 group)');
          return false;
        }
        return true;
      },
      othersFailing: () => false,
      recovered: () => recovered++,
      clock,
    });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    assert.equal(guard.failure?.message, 'SQLITE_FULL');
    // One timer however many writes failed.
    assert.equal(clock.pending, 1);
    clock.advance(49);
    assert.equal(tries, 0, 'no retry before 50 ms');
    clock.advance(5000);
    assert.equal(tries, 3);
    // Backing off: 50 ms, then 100, then 200.
    assert.deepEqual(at.slice(1).map((t, i) => t - at[i]!), [50, 100, 200]);
    assert.equal(clock.pending, 0, 'no timer once it went through');
    assert.equal(guard.failure, null);
    assert.equal(recovered, 1);
    // One error for the whole failure, however many writes failed; one warning when it cleared.
    assert.deepEqual(messages, ['store cannot write: holding messages unacknowledged and retrying', 'store writable again; queued writes committed']);
  });

  it('stays quiet and waits while the writer still fails', () => {
    const { log, messages } = capture();
    const clock = new ManualClock();
    let recovered = 0;
    const guard = new LogGuard({ log, retry: () => true, othersFailing: () => true, recovered: () => recovered++, clock });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    clock.advance(50);
    assert.equal(guard.failure, null, 'the log itself wrote again');
    assert.equal(recovered, 0, 'recovery is the writer\'s to report');
    assert.deepEqual(messages, []);
  });

  it('stops retrying once cancelled', () => {
    const { log } = capture();
    const clock = new ManualClock();
    let tries = 0;
    const guard = new LogGuard({ log, retry: () => ++tries > 0, othersFailing: () => false, recovered: () => undefined, clock });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    guard.cancel();
    assert.equal(clock.pending, 0);
    clock.advance(5000);
    assert.equal(tries, 0);
  });
});
