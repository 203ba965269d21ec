import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { calendarValue, cyclePhase, YEAR_DAYS } from '../src/inference/calendar.js';
import { parseCard } from '../src/inference/card.js';
import { CardScaler } from '../src/inference/scaler.js';
import { ErrorCodes } from '../src/errors.js';

const DAY = 86_400_000;

const card = (calendar: unknown) =>
  JSON.stringify({ name: 'm', mode: 'stateful', stepSeconds: 3600, features: [{ name: 'temp' }], targets: [{ name: 'temp' }], horizons: [1], calendar });

describe('calendar inputs', () => {
  it('phases: hour of the UTC day, day of the week from Monday, fraction of a mean Gregorian year since 1970', () => {
    assert.equal(cyclePhase('hourOfDay', Date.UTC(2024, 0, 1, 18)), 0.75);
    // 2024-01-01 was a Monday; 1970-01-01 a Thursday.
    assert.equal(cyclePhase('dayOfWeek', Date.UTC(2024, 0, 1)), 0);
    assert.ok(Math.abs(cyclePhase('dayOfWeek', Date.UTC(2024, 0, 7, 12)) - 6.5 / 7) < 1e-12);
    assert.equal(cyclePhase('dayOfWeek', 0), 3 / 7);
    assert.equal(cyclePhase('dayOfYear', 0), 0);
    assert.ok(Math.abs(cyclePhase('dayOfYear', (YEAR_DAYS / 4) * DAY) - 0.25) < 1e-12);
    // Before 1970 too: phases stay in [0, 1).
    assert.ok(Math.abs(cyclePhase('hourOfDay', -6 * 3_600_000) - 0.75) < 1e-12);
    assert.ok(Math.abs(calendarValue({ name: 's', cycle: 'dayOfYear', fn: 'sin' }, (YEAR_DAYS / 4) * DAY) - 1) < 1e-12);
    assert.ok(Math.abs(calendarValue({ name: 'c', cycle: 'hourOfDay', fn: 'cos' }, Date.UTC(2024, 5, 1, 12)) + 1) < 1e-12);
  });

  it('the scaler puts them after the scaled features, read from the step\'s event time', () => {
    const c = parseCard(card([{ name: 'hod_sin', cycle: 'hourOfDay', fn: 'sin' }, { name: 'hod_cos', cycle: 'hourOfDay', fn: 'cos' }]), 'test');
    const scaler = new CardScaler(c);
    const at6 = Date.UTC(2024, 0, 1, 6);
    const v = scaler.scaleInputs([21], at6);
    assert.equal(v.length, 3);
    assert.equal(v[0], 21);
    assert.ok(Math.abs(v[1]! - 1) < 1e-6 && Math.abs(v[2]!) < 1e-6);
    // The engine's reader writes the same into a batch tensor, finding the time in the step's context.
    const reader = scaler.readerFor(['temp'], (ctx: { ts: number } | undefined) => ctx!.ts);
    const into = new Float32Array(6).fill(NaN);
    reader.read({ temp: 21 }, into, 3, { ts: at6 });
    assert.deepEqual(Array.from(into.subarray(3)), Array.from(v));
    assert.ok(into.subarray(0, 3).every(Number.isNaN), 'nothing written before its row');
  });

  it('a card refuses an unknown cycle, a calendar input named like a feature, and a missing fn', () => {
    assert.throws(() => parseCard(card([{ name: 'x', cycle: 'monthOfYear', fn: 'sin' }]), 'c.json'), { code: ErrorCodes.CARD_INVALID });
    assert.throws(() => parseCard(card([{ name: 'temp', cycle: 'hourOfDay', fn: 'sin' }]), 'c.json'), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.CARD_INVALID);
      assert.match(err.message, /\/calendar\/0\/name: "temp" is already an input/);
      return true;
    });
    assert.throws(() => parseCard(card([{ name: 'x', cycle: 'hourOfDay' }]), 'c.json'), { code: ErrorCodes.CARD_INVALID });
  });
});
