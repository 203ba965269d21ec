import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { LogGuard } from '../src/store/log-guard.js';

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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('input log guard', () => {
  it('retries a failed write with backoff until it goes through, then reports recovery once', async () => {
    const { log, messages } = capture();
    let tries = 0;
    let recovered = 0;
    const at: number[] = [performance.now()];
    // The fault: the first two retries fail again (a full disk), the third writes.
    const guard: LogGuard = new LogGuard({
      log,
      retry: () => {
        tries++;
        at.push(performance.now());
        if (tries < 3) {
          guard.fail(new Error('SQLITE_FULL'), 'input log (QoS 0 group)');
          return false;
        }
        return true;
      },
      othersFailing: () => false,
      recovered: () => recovered++,
    });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    assert.equal(guard.failure?.message, 'SQLITE_FULL');
    for (let waited = 0; tries < 3 && waited < 5000; waited += 10) await sleep(10);
    assert.equal(tries, 3);
    // Backing off: 50 ms, then 100, then 200 (a timer may fire late on a busy machine, never early).
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    assert.ok(gaps[0]! >= 49 && gaps[1]! >= 99 && gaps[2]! >= 199, `retry gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`);
    assert.equal(guard.failure, null);
    assert.equal(recovered, 1);
    // One error for the whole failure, however many writes failed; one warning when it cleared.
    assert.deepEqual(messages, ['store cannot write: holding messages unacknowledged and retrying', 'store writable again; queued writes committed']);
  });

  it('stays quiet and waits while the writer still fails', async () => {
    const { log, messages } = capture();
    let recovered = 0;
    const guard = new LogGuard({ log, retry: () => true, othersFailing: () => true, recovered: () => recovered++ });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    await sleep(120);
    assert.equal(guard.failure, null, 'the log itself wrote again');
    assert.equal(recovered, 0, 'recovery is the writer\'s to report');
    assert.deepEqual(messages, []);
  });

  it('stops retrying once cancelled', async () => {
    const { log } = capture();
    let tries = 0;
    const guard = new LogGuard({ log, retry: () => ++tries > 0, othersFailing: () => false, recovered: () => undefined });
    guard.fail(new Error('SQLITE_FULL'), 'input log');
    guard.cancel();
    await sleep(120);
    assert.equal(tries, 0);
  });
});
