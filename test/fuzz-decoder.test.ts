import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError, createDecoder } from '../src/streams/decoder.js';
import type { DeadLetterReason, Decoder, Sample } from '../src/streams/decoder.js';
import { CSV_COLUMNS, FEATURES, hostilePayload, hostileSamples, hostileTopicLevel, publishableTopicLevel, validPayload } from './support/hostile.js';

/** Fixed so a failure reproduces; FUZZ_SEED tries another. */
const SEED = Number(process.env['FUZZ_SEED'] ?? 0x7ec0de);
/** Payloads per decoder: five decoders make 100,000. */
const RUNS = 20_000;
const ARRIVAL = Date.UTC(2015, 0, 1);
const F: readonly string[] = FEATURES;

/** Every DeadLetterReason; the type checks below fail the build if the union and this list drift apart. */
const REASONS = [
  'no_route',
  'too_large',
  'bad_json',
  'bad_csv',
  'missing_field',
  'wrong_type',
  'non_finite',
  'bad_timestamp',
  'bad_stream_id',
  'late',
  'unknown_feature',
  'too_many_samples',
  'stream_limit',
  'internal',
] as const satisfies readonly DeadLetterReason[];
const allReasonsListed: [Exclude<DeadLetterReason, (typeof REASONS)[number]>] extends [never] ? true : never = true;
const REASON_SET: ReadonlySet<string> = new Set(REASONS);

interface Case {
  readonly name: string;
  readonly decoder: Decoder;
  /** Every feature must be in an accepted sample (otherwise: some, all among the features). */
  readonly complete: boolean;
  /** Reasons the hostile mix must provoke from this decoder. */
  readonly reasons: readonly DeadLetterReason[];
}

const JSON_REASONS: readonly DeadLetterReason[] = ['bad_json', 'wrong_type', 'missing_field', 'non_finite'];
const CASES: readonly Case[] = [
  {
    name: 'json, mapped features, epoch_ms ts',
    decoder: createDecoder({ type: 'json', features: Object.fromEntries(F.map((f) => [f, f])), timestamp: { field: 'ts', format: 'epoch_ms' }, partial: false }, F),
    complete: true,
    reasons: [...JSON_REASONS, 'bad_timestamp'],
  },
  { name: 'json, arrival time', decoder: createDecoder({ type: 'json', partial: false }, F), complete: true, reasons: JSON_REASONS },
  {
    name: 'json, partial, epoch_ms ts',
    decoder: createDecoder({ type: 'json', partial: true, timestamp: { field: 'ts', format: 'epoch_ms' } }, F),
    complete: false,
    reasons: [...JSON_REASONS, 'bad_timestamp'],
  },
  { name: 'number, feature from the topic', decoder: createDecoder({ type: 'number', feature: '{feature}' }, F), complete: false, reasons: ['unknown_feature', 'wrong_type', 'non_finite'] },
  {
    name: 'csv, ISO date column',
    decoder: createDecoder({ type: 'csv', columns: CSV_COLUMNS, timestamp: { field: 'date', format: 'iso' }, separator: ',' }, F),
    complete: true,
    reasons: ['bad_csv', 'wrong_type', 'non_finite', 'bad_timestamp'],
  },
];

/** A payload as a short printable string for failure messages. */
function show(payload: Buffer): string {
  const head = JSON.stringify(payload.subarray(0, 160).toString('latin1'));
  return `${payload.length} bytes ${head}${payload.length > 160 ? '…' : ''}`;
}

/** Decodes one payload: a finite sample or a DecodeError with a known reason, anything else fails. Returns the outcome. */
function decodeChecked(c: Case, payload: Buffer, params: Record<string, string>): DeadLetterReason | 'accepted' {
  let sample: Sample;
  try {
    sample = c.decoder(payload, ARRIVAL, params);
  } catch (err) {
    if (!(err instanceof DecodeError)) {
      const stack = err instanceof Error ? (err.stack ?? String(err)).split('\n').slice(0, 6).join('\n') : String(err);
      throw new Error(`${c.name}: threw something other than a DecodeError for ${show(payload)}:\n${stack}`);
    }
    assert.ok(REASON_SET.has(err.reason), `${c.name}: unknown reason ${JSON.stringify(err.reason)}`);
    assert.ok(typeof err.message === 'string' && err.message.length > 0, `${c.name}: ${err.reason} without a message`);
    return err.reason;
  }
  assert.ok(Number.isFinite(sample.ts), `${c.name}: accepted ts ${sample.ts} for ${show(payload)}`);
  const keys = Object.keys(sample.values);
  assert.ok(keys.length > 0, `${c.name}: accepted an empty sample for ${show(payload)}`);
  for (const k of keys) {
    assert.ok(F.includes(k), `${c.name}: accepted unknown feature ${JSON.stringify(k)}`);
    const v = sample.values[k];
    assert.ok(typeof v === 'number' && Number.isFinite(v), `${c.name}: accepted ${k}=${String(v)} for ${show(payload)}`);
  }
  if (c.complete) assert.deepEqual(keys.sort(), [...F].sort(), `${c.name}: accepted a sample missing features for ${show(payload)}`);
  return 'accepted';
}

/** fc.assert's report, with the seed and a readable (short) counterexample. */
function reporter(name: string, seed: number) {
  return (d: fc.RunDetails<[Buffer, string]>): void => {
    if (!d.failed) return;
    const why = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
    const ex = d.counterexample ? `payload ${show(d.counterexample[0])}, level ${JSON.stringify(d.counterexample[1].slice(0, 80))}` : 'none';
    assert.fail(
      `${name}: property failed after ${d.numRuns} runs (seed ${seed}, path "${d.counterexamplePath}", ${d.numShrinks} shrinks)\n` +
        `  counterexample: ${ex}\n  ${why}\n  rerun: fc.assert(..., { seed: ${seed}, path: "${d.counterexamplePath}" })`,
    );
  };
}

describe('decoder fuzzing', () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: ${RUNS} hostile payloads decode or dead-letter with a reason`, (t) => {
      const seen = new Map<string, number>();
      const seed = SEED + i;
      // The number decoder takes its feature from the topic: mostly real names, some hostile levels.
      const level = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...F) }, { weight: 1, arbitrary: hostileTopicLevel() });
      fc.assert(
        fc.property(hostilePayload(), level, (payload, lv) => {
          const outcome = decodeChecked(c, payload, { feature: lv });
          seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        }),
        { numRuns: RUNS, seed, reporter: reporter(c.name, seed) },
      );
      const mix = [...seen].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}=${n}`).join(' ');
      t.diagnostic(mix);
      assert.ok((seen.get('accepted') ?? 0) > 0, `${c.name}: nothing accepted (seed ${seed}): ${mix}`);
      const reasons = [...seen.keys()].filter((k) => k !== 'accepted');
      assert.ok(reasons.length >= 3, `${c.name}: fewer than 3 reasons (seed ${seed}): ${mix}`);
      for (const r of c.reasons) assert.ok(seen.has(r), `${c.name}: never saw ${r} (seed ${seed}): ${mix}`);
    });
  }

  it('valid payloads are always accepted by the JSON decoders', () => {
    const json = CASES.filter((c) => c.name.startsWith('json'));
    fc.assert(
      fc.property(validPayload(), (payload) => {
        for (const c of json) assert.equal(decodeChecked(c, payload, {}), 'accepted', `${c.name}: rejected ${show(payload)}`);
      }),
      { numRuns: 2000, seed: SEED },
    );
  });
});

describe('hostile inputs', () => {
  it('hostileSamples is deterministic per seed', () => {
    const a = hostileSamples(SEED, 200);
    const b = hostileSamples(SEED, 200);
    assert.equal(a.length, 200);
    assert.deepEqual(a, b);
    assert.notDeepEqual(hostileSamples(SEED + 1, 200), a);
  });

  it('publishableTopicLevel refuses wildcards, separators, NUL and lone surrogates', () => {
    for (const s of ['site1', '', 'a\u0001b', '\u007f', '\u0085', '$x', '🌧️', 'é'.repeat(1000)]) assert.ok(publishableTopicLevel(s), JSON.stringify(s));
    for (const s of ['a+b', '#', 'a/b', 'a\u0000', 'x\ud800', '\udc00y', '\udfff\ud800']) assert.ok(!publishableTopicLevel(s), JSON.stringify(s));
    const levels = fc.sample(hostileTopicLevel(), { seed: SEED, numRuns: 2000 });
    const publishable = levels.filter(publishableTopicLevel).length;
    assert.ok(publishable > 1000 && publishable < 2000, `publishable ${publishable} of 2000`);
  });
});

void allReasonsListed;
