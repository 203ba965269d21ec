import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEAD_LETTER_KEEP, DeadLetterGate, keptPayload, keptText, type RefusalSummary } from '../src/streams/dead-letter-gate.js';

/** A gate on a manual clock, its timers run by hand. */
function gate(perMinute: number, perSourcePerMinute: number, warnPerMinute = 10) {
  const clock = { t: 1_000_000 };
  const timers: Array<{ at: number; fn: () => void }> = [];
  const summaries: RefusalSummary[] = [];
  const g = new DeadLetterGate({
    perMinute,
    perSourcePerMinute,
    warnPerMinute,
    now: () => clock.t,
    setTimer: (fn, ms) => void timers.push({ at: clock.t + ms, fn }),
    onSummary: (s) => summaries.push(s),
  });
  const advance = (ms: number): void => {
    clock.t += ms;
    const due = timers.filter((x) => x.at <= clock.t);
    timers.splice(0, timers.length, ...timers.filter((x) => x.at > clock.t));
    for (const t of due) t.fn();
  };
  return { g, clock, timers, summaries, advance };
}

describe('dead-letter gate', () => {
  it('stores at most perSourcePerMinute of one source and perMinute in all, then counts the rest', () => {
    const { g } = gate(50, 5);
    const stored = { a: 0, other: 0 };
    for (let i = 0; i < 100; i++) if (g.refuse('a', 'bad_json').store) stored.a++;
    for (let i = 0; i < 100; i++) if (g.refuse(`dev${i}`, 'no_route').store) stored.other++;
    assert.equal(stored.a, 5, 'one source: its cap');
    assert.equal(stored.other, 45, 'many sources: the rest of the minute\'s cap');
  });

  it('starts over each minute, and sums up a minute over its caps when it is over', () => {
    const { g, summaries, advance, timers } = gate(3, 2, 1);
    const verdicts = [g.refuse('s', 'bad_json'), g.refuse('s', 'bad_json'), g.refuse('s', 'late'), g.refuse('t', 'bad_json')];
    assert.deepEqual(verdicts.map((v) => v.store), [true, true, false, true]);
    assert.deepEqual(verdicts.map((v) => v.log), [true, false, false, false], 'one refusal logged a minute (warnPerMinute)');
    assert.equal(timers.length, 1, 'one summary scheduled');
    assert.equal(summaries.length, 0);
    advance(59_999);
    assert.equal(summaries.length, 0, 'not before the minute is over');
    advance(1);
    assert.deepEqual(summaries, [{ since: 1_000_000, refused: 4, unstored: 1, unlogged: 3, byReason: { bad_json: 3, late: 1 } }]);
    // A new minute: the source has its cap again.
    assert.equal(g.refuse('s', 'bad_json').store, true);
    assert.equal(g.refuse('s', 'bad_json').store, true);
  });

  it('a quiet minute (nothing over a cap) has no summary', () => {
    const { g, summaries, advance, timers } = gate(100, 100, 100);
    for (let i = 0; i < 50; i++) g.refuse(`s${i % 3}`, 'bad_json');
    assert.equal(timers.length, 0);
    advance(120_000);
    g.tick();
    assert.deepEqual(summaries, []);
  });

  it('keeps the first KiB of a payload, topic and detail', () => {
    const big = Buffer.alloc(60_000, 0x41);
    assert.equal(keptPayload(big).length, DEAD_LETTER_KEEP);
    const small = Buffer.from('{"x":');
    assert.equal(keptPayload(small), small, 'a short one as it is');
    const topic = 'x/'.repeat(5000);
    assert.equal(keptText(topic), `${topic.slice(0, DEAD_LETTER_KEEP)}… (10000 characters)`);
    assert.equal(keptText('short'), 'short');
  });
});
