/** A cycle of event time a card may feed its model as a derived input. */
export type CalendarCycle = 'hourOfDay' | 'dayOfWeek' | 'dayOfYear';

/** A derived input: sin or cos of the step's phase in a cycle (models/model-card.schema.json, `calendar`). */
export interface CalendarInput {
  readonly name: string;
  readonly cycle: CalendarCycle;
  readonly fn: 'sin' | 'cos';
}

const DAY_MS = 86_400_000;
/** The mean Gregorian year, in days: the day-of-year phase follows the seasons, not the calendar's leap days. */
export const YEAR_DAYS = 365.2425;

/**
 * The phase in [0, 1) of an event time (ms since the epoch, UTC) in a cycle:
 * hourOfDay, the fraction of its UTC day gone; dayOfWeek, of its week from
 * Monday 00:00 UTC (1970-01-01 was a Thursday, 3 days in); dayOfYear, of a
 * mean Gregorian year counted from 1970-01-01. A trainer computes the same
 * (models/train.py, `calendar_phase`).
 */
export function cyclePhase(cycle: CalendarCycle, ts: number): number {
  const days = ts / DAY_MS;
  const x = cycle === 'hourOfDay' ? days : cycle === 'dayOfWeek' ? (days + 3) / 7 : days / YEAR_DAYS;
  return x - Math.floor(x);
}

/** A calendar input's value at an event time: sin or cos of 2π × its phase. */
export function calendarValue(input: CalendarInput, ts: number): number {
  const a = 2 * Math.PI * cyclePhase(input.cycle, ts);
  return input.fn === 'sin' ? Math.sin(a) : Math.cos(a);
}
