import fc from 'fast-check';

/** Hostile inputs for the decoders and the topic → stream id path: property tests and live-daemon runs share them. */

/** The weather models' features: the names hostile JSON objects and CSV lines fill in. */
export const FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind'] as const;

/** CSV columns the hostile lines aim at: an ISO date, then the features. */
export const CSV_COLUMNS = ['date', ...FEATURES] as const;

const MIN_TS = Date.UTC(2000, 0, 1);
const MAX_TS = Date.UTC(2030, 0, 1);

/** Byte sequences that are not UTF-8: bad continuation, lone continuations, overlongs, surrogates, > U+10FFFF, truncated. */
const BAD_UTF8: readonly (readonly number[])[] = [
  [0xc3, 0x28],
  [0x80],
  [0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xf0, 0x80, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xc3],
  [0xe2, 0x82],
];

const finiteDouble = fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });

/** A finite number as JSON/CSV text: small integers, any finite double, tiny and signed forms. */
const finiteNumberText: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  fc.constantFrom('0', '-0', '0.5', '1e-7', '1E3', '2.5e+2', '1e-99999'),
);

/** Numbers JSON.parse or Number() turn into ±Infinity, including 400+ digit integers. */
const hugeNumberText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('1e400', '-1e999', '1E309', '-1e400', '1.7976931348623159e308'),
  fc.bigInt({ min: 10n ** 399n, max: 10n ** 420n }).map(String),
  fc.bigInt({ min: 10n ** 399n, max: 10n ** 420n }).map((n) => `-${n}`),
);

const NAN_WORDS = ['NaN', 'Infinity', '-Infinity', 'nan', '+Infinity', 'inf', '-nan', 'NAN'] as const;

/** JSON values of the wrong type for a number, including objects that String() cannot convert. */
const wrongTypeText = fc.constantFrom(
  '"12.5"',
  '"abc"',
  '""',
  '" "',
  '[]',
  '[1]',
  '[1,2,3]',
  'null',
  'true',
  'false',
  '{}',
  '{"value":1}',
  '{"toString":1}',
  '{"valueOf":"x","toString":null}',
  '[{"toString":1}]',
  '{"__proto__":{"x":1}}',
  '{"constructor":{"prototype":1}}',
);

/** `[[[...1...]]]` or `{"a":{"a":...1...}}` at the given depth, optionally missing its closers. */
function nestedText(depth: number, shape: 'array' | 'object', closed: boolean): string {
  const open = shape === 'array' ? '['.repeat(depth) : '{"a":'.repeat(depth);
  const close = shape === 'array' ? ']'.repeat(depth) : '}'.repeat(depth);
  return `${open}1${closed ? close : close.slice(0, depth >> 1)}`;
}

const nestedAt = (min: number, max: number, closed?: boolean): fc.Arbitrary<string> =>
  fc
    .tuple(fc.integer({ min, max }), fc.constantFrom('array' as const, 'object' as const), closed === undefined ? fc.boolean() : fc.constant(closed))
    .map(([d, s, c]) => nestedText(d, s, c));

/** A value for a feature field: mostly numbers, with every kind of wrong one. */
const featureValueText: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: finiteNumberText },
  { weight: 2, arbitrary: hugeNumberText },
  { weight: 2, arbitrary: fc.constantFrom(...NAN_WORDS).map((w) => JSON.stringify(w)) },
  { weight: 4, arbitrary: wrongTypeText },
  { weight: 1, arbitrary: nestedAt(1, 50, true) },
);

/** A `ts` value: valid epoch ms, and negative, too large, words, ISO text, wrong types, unconvertible objects. */
const tsText: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: MIN_TS, max: MAX_TS }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: MIN_TS, max: MAX_TS }).map((n) => `"${n}"`) },
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      '-1',
      '-1420070400000',
      '1e20',
      '1e400',
      '253402300800000',
      '1420070400000.5',
      '0',
      '"yesterday"',
      '"2015-13-45T25:61:00Z"',
      '"2015-01-01T00:00:00Z"',
      '"0000-00-00"',
      '"NaN"',
      '"Infinity"',
      '""',
      '" "',
      'null',
      'true',
      '[]',
      '[1420070400000]',
      '{}',
      '{"toString":1}',
      '[{"toString":1}]',
    ),
  },
  { weight: 1, arbitrary: nestedAt(1, 8000, true) },
);

const key = (k: string): string => JSON.stringify(k);

/** An object's fields: each of ts and the features present (usually) with a hostile value, plus extra and duplicate keys. */
const jsonObjectText: fc.Arbitrary<string> = fc
  .tuple(
    fc.option(tsText.map((v) => `${key('ts')}:${v}`), { nil: undefined, freq: 8 }),
    fc.tuple(...FEATURES.map((f) => fc.option(featureValueText.map((v) => `${key(f)}:${v}`), { nil: undefined, freq: 8 }))),
    fc.array(
      fc.oneof(
        fc.constantFrom('"x":1', '"__proto__":null', '"toString":1', '"temp_max":"dup"', '"":0', '"ts":null'),
        fc.tuple(fc.string({ maxLength: 8 }), featureValueText).map(([k, v]) => `${key(k)}:${v}`),
      ),
      { maxLength: 3 },
    ),
    fc.nat(),
  )
  .map(([ts, features, extra, rotate]) => {
    const fields = [ts, ...features, ...extra].filter((f): f is string => f !== undefined);
    const r = fields.length === 0 ? 0 : rotate % fields.length;
    return `{${[...fields.slice(r), ...fields.slice(0, r)].join(',')}}`;
  });

/** Inserts `bytes` into `text`'s UTF-8 at a position chosen by `at`. */
function splice(text: string, bytes: readonly number[], at: number): Buffer {
  const b = Buffer.from(text, 'utf8');
  const i = b.length === 0 ? 0 : at % (b.length + 1);
  return Buffer.concat([b.subarray(0, i), Buffer.from(bytes), b.subarray(i)]);
}

/** A payload the decoders should accept: `{"ts": <epoch ms>, "precipitation": n, "temp_max": n, "temp_min": n, "wind": n}`. */
export function validPayload(): fc.Arbitrary<Buffer> {
  return fc
    .record({ ts: fc.integer({ min: MIN_TS, max: MAX_TS }), precipitation: finiteDouble, temp_max: finiteDouble, temp_min: finiteDouble, wind: finiteDouble })
    .map((o) => Buffer.from(JSON.stringify(o)));
}

const csvDate = fc.integer({ min: MIN_TS, max: MAX_TS }).map((ms) => new Date(ms).toISOString());

/** A CSV cell: numbers, dates, and the same non-numbers as the JSON fields. */
const csvCell: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: finiteNumberText },
  { weight: 2, arbitrary: csvDate.map((d) => d.slice(0, 10)) },
  { weight: 1, arbitrary: hugeNumberText },
  { weight: 1, arbitrary: fc.constantFrom(...NAN_WORDS) },
  { weight: 2, arbitrary: fc.constantFrom('', ' ', 'abc', '"1.5"', '0x10', '1,5', 'yesterday', '2015-13-45', '\t', 'null') },
);

/** CSV lines in the `date,precipitation,temp_max,temp_min,wind` layout: well formed ones, bad cells, wrong column counts. */
const csvLine: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(csvDate, fc.array(finiteNumberText, { minLength: 4, maxLength: 4 })).map(([d, n]) => [d.slice(0, 10), ...n].join(',')),
  fc.tuple(fc.oneof(csvDate, csvCell), fc.array(csvCell, { minLength: 4, maxLength: 4 })).map(([d, n]) => [d, ...n].join(',')),
  fc.array(csvCell, { maxLength: 9 }).map((c) => c.join(',')),
  fc
    .tuple(fc.array(csvCell, { minLength: 5, maxLength: 5 }), fc.constantFrom(';', '\t', ', ', ',,'))
    .map(([c, sep]) => c.join(sep)),
);

/** One MiB and a few bytes of `{"x":"aaaa…`, unterminated, closed, or closed with the features after it. */
const largePayload: fc.Arbitrary<Buffer> = fc
  .tuple(fc.integer({ min: 1, max: 64 }), fc.constantFrom('open', 'closed', 'fields'))
  .map(([extra, end]) => {
    const tail = end === 'open' ? '' : end === 'closed' ? '"}' : `","ts":${MIN_TS},"precipitation":0,"temp_max":1,"temp_min":0,"wind":2}`;
    return Buffer.concat([Buffer.from('{"x":"'), Buffer.alloc((1 << 20) + extra, 'a'), Buffer.from(tail)]);
  });

/** Whole payloads that are one token: empty, whitespace, words, literals, huge and plain numbers. */
const tokenPayload: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', ' ', '\t\n  \r\n', '\u0000', 'null', 'true', '"str"', '[]', '[1,2]', '{}', '"{}"', '12 13', '1e400', '-1e999', 'NaN', 'Infinity', '-Infinity', 'nan'),
  fc.constantFrom(...NAN_WORDS),
  hugeNumberText,
  fc.tuple(fc.constantFrom('', ' ', '\n', '\t', '\r\n'), finiteNumberText, fc.constantFrom('', ' ', '\n', '\r\n')).map(([a, n, b]) => `${a}${n}${b}`),
);

/** Text spoiled at the byte level: invalid UTF-8 inside it, a BOM or UTF-16 encoding, truncation, trailing garbage. */
const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(fc.oneof(jsonObjectText, validPayload().map((b) => b.toString('utf8')), finiteNumberText, csvLine), fc.constantFrom(...BAD_UTF8), fc.nat(), fc.constantFrom('utf8', 'bom', 'utf16', 'truncate', 'garbage', 'nul' as const))
  .map(([text, bytes, at, how]) => {
    switch (how) {
      case 'utf8':
        return splice(text, bytes, at);
      case 'bom':
        return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
      case 'utf16':
        return Buffer.from(text, 'utf16le');
      case 'truncate':
        return Buffer.from(text).subarray(0, at % (Buffer.byteLength(text) + 1));
      case 'garbage':
        return Buffer.from(`${text}}]x`);
      default:
        return splice(text, [0], at);
    }
  });

/**
 * Random and adversarial payloads: random bytes and invalid UTF-8, deeply nested JSON (depth 10k–100k),
 * huge numbers, NaN/Infinity words, objects with wrong-typed fields and bad `ts` values, CSV lines with wrong
 * column counts, empty and whitespace payloads, BOM-prefixed JSON, 1 MiB payloads, and some valid payloads.
 * Costly shapes (deep nesting, 1 MiB) are a small share so 100k samples stay fast.
 */
export function hostilePayload(): fc.Arbitrary<Buffer> {
  const text = (a: fc.Arbitrary<string>): fc.Arbitrary<Buffer> => a.map((s) => Buffer.from(s, 'utf8'));
  return fc.oneof(
    { weight: 120, arbitrary: validPayload() },
    { weight: 300, arbitrary: text(jsonObjectText) },
    { weight: 100, arbitrary: mutated },
    { weight: 100, arbitrary: text(tokenPayload) },
    { weight: 150, arbitrary: text(csvLine) },
    { weight: 60, arbitrary: fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)) },
    { weight: 30, arbitrary: fc.array(fc.constantFrom(...BAD_UTF8), { minLength: 1, maxLength: 4 }).map((s) => Buffer.from(s.flat())) },
    { weight: 2, arbitrary: text(nestedAt(10_000, 100_000)) },
    { weight: 2, arbitrary: largePayload },
  );
}

const CONTROL_CHARS = [
  ...Array.from({ length: 0x1f }, (_, i) => String.fromCharCode(i + 1)),
  '\u007f',
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i)),
];

/**
 * Would-be stream id levels of a topic: plain ids, control characters (U+0001–U+001F, U+007F, U+0080–U+009F),
 * `+`, `#`, `/`, `$`, NUL, 1000+ characters, empty, unicode, emoji and lone surrogates.
 */
export function hostileTopicLevel(): fc.Arbitrary<string> {
  const word = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_'), minLength: 1, maxLength: 12 });
  return fc.oneof(
    { weight: 4, arbitrary: word },
    { weight: 1, arbitrary: fc.constantFrom(...FEATURES) },
    { weight: 2, arbitrary: fc.tuple(word, fc.string({ unit: fc.constantFrom(...CONTROL_CHARS), minLength: 1, maxLength: 3 }), word).map((p) => p.join('')) },
    { weight: 2, arbitrary: fc.tuple(word, fc.constantFrom('+', '#', '/', '$', '\u0000', '//', '+/#'), fc.option(word, { nil: '' })).map((p) => p.join('')) },
    { weight: 1, arbitrary: fc.constantFrom('', '+', '#', '$SYS', '$', '/', '\u0000', ' ', '.', '..', '{site}', '%2F') },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1000, max: 4000 }), fc.constantFrom('a', 'é', '🌧')).map(([n, c]) => c.repeat(n)) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }) },
    { weight: 1, arbitrary: fc.constantFrom('🌧️', '🌡', '👩‍👩‍👧', '🏳️‍🌈', 'ß', 'İ', 'ﬀ', '\u200b', '\u202e', '\ufeff') },
    { weight: 1, arbitrary: fc.tuple(word, fc.constantFrom('\ud800', '\udc00', '\udbff', '\udfff\ud800')).map(([w, s]) => `${w}${s}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  );
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Whether a broker would route a topic with `s` as one of its (non-first) levels: false for `+`, `#`, NUL,
 * lone surrogates (not UTF-8), and `/` (it changes the level count). Control characters and empty levels pass.
 */
export function publishableTopicLevel(s: string): boolean {
  return !/[+#/\u0000]/.test(s) && !LONE_SURROGATE.test(s);
}

/** A deterministic list of hostile (topic level, payload) pairs for live tests. */
export function hostileSamples(seed: number, count: number): Array<{ level: string; payload: Buffer }> {
  return fc.sample(fc.record({ level: hostileTopicLevel(), payload: hostilePayload() }), { seed, numRuns: count });
}
