import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { schemaPath } from '../src/config/load-config.js';
import { ErrorCodes, TidecastError } from '../src/errors.js';
import { configTypesSource, type SchemaNode } from '../scripts/config-types-source.js';
import { generatedTypesPath } from '../scripts/gen-config-types.js';

/** A root schema with one section, `s`, named SConfig by the generator. */
const section = (s: SchemaNode, extra: Record<string, SchemaNode> = {}): SchemaNode => ({ type: 'object', additionalProperties: false, properties: { s }, definitions: extra });
const object = (properties: Record<string, SchemaNode>, required: string[] = []): SchemaNode => ({ type: 'object', additionalProperties: false, properties, required });
const NO_NAMES = { '': 'Root' };

function refusal(schema: SchemaNode): string {
  try {
    configTypesSource(schema, NO_NAMES);
  } catch (err) {
    assert.ok(err instanceof TidecastError && err.code === ErrorCodes.CONFIG, String(err));
    return err.message;
  }
  assert.fail('expected the generator to refuse the schema');
}

describe('config types from the schema', () => {
  it('src/config/config.generated.ts is what config/tidecast.schema.json generates (else run npm run gen:config-types)', () => {
    const expected = configTypesSource(JSON.parse(readFileSync(schemaPath, 'utf8')) as SchemaNode);
    const committed = readFileSync(generatedTypesPath, 'utf8');
    if (committed !== expected) {
      const a = committed.split('\n');
      const b = expected.split('\n');
      const line = a.findIndex((l, i) => l !== b[i]);
      assert.fail(`config.generated.ts differs from the schema at line ${line + 1}:\n  committed: ${a[line]}\n  generated: ${b[line]}\nRun npm run gen:config-types and commit the result.`);
    }
  });

  it('a key with a default, or required, is always there; any other key is optional', () => {
    const out = configTypesSource(section(object({ withDefault: { type: 'integer', default: 3 }, needed: { type: 'string' }, maybe: { type: 'boolean' } }, ['needed'])), NO_NAMES);
    assert.match(out, /^ {2}readonly withDefault: number;$/m);
    assert.match(out, /^ {2}readonly needed: string;$/m);
    assert.match(out, /^ {2}readonly maybe\?: boolean;$/m);
    assert.match(out, /^ {2}readonly s\?: SConfig;$/m, 'a section without a default is optional');
    assert.match(configTypesSource(section({ type: 'object', additionalProperties: false, properties: {}, default: {} }), NO_NAMES), /^ {2}readonly s: SConfig;$/m);
  });

  it('enums and consts are literal unions; records, arrays and oneOf keep their element types', () => {
    const out = configTypesSource(
      section(
        object({
          level: { enum: ['a', "it's", 4] },
          kind: { const: 'json' },
          map: { type: 'object', additionalProperties: { enum: ['x', 'y'] } },
          list: { type: 'array', items: { type: 'string' } },
          either: { oneOf: [{ type: 'boolean' }, { const: 'auto' }] },
        }),
      ),
      NO_NAMES,
    );
    assert.match(out, /readonly level\?: 'a' \| 'it\\'s' \| 4;/);
    assert.match(out, /readonly kind\?: 'json';/);
    assert.match(out, /readonly map\?: Readonly<Record<string, 'x' \| 'y'>>;/);
    assert.match(out, /readonly list\?: readonly string\[\];/);
    assert.match(out, /readonly either\?: boolean \| 'auto';/);
  });

  it('defaults inside a oneOf count only with a discriminator (ajv fills in no others)', () => {
    const branch = (tag: string): SchemaNode => object({ type: { const: tag }, flag: { type: 'boolean', default: false } }, ['type']);
    const discriminated = configTypesSource(section({ type: 'object', required: ['type'], discriminator: { propertyName: 'type' }, oneOf: [branch('a'), branch('b')] }), NO_NAMES);
    assert.match(discriminated, /readonly flag: boolean;/);
    assert.match(refusal(section({ oneOf: [branch('a'), branch('b')] })), /s\/oneOf\/0\/properties\/flag: a default inside a oneOf without a discriminator/);
  });

  it('refuses what it cannot express exactly, naming the place in the schema', () => {
    assert.match(refusal(section({ type: 'object', properties: { a: { type: 'string' } } })), /#\/properties\/s: an object with properties needs additionalProperties: false/);
    assert.match(refusal(section({ anyOf: [{ type: 'string' }] })), /#\/properties\/s: the keyword "anyOf"/);
    assert.match(refusal(section({ type: ['string', 'null'] })), /#\/properties\/s: type \["string","null"\]/);
    assert.match(refusal(section({ $ref: '#/definitions/x' }, { x: { type: 'string' } })), /#\/definitions\/x: a \$ref to a definition without a name/);
    assert.match(refusal(section(object({ a: { type: 'string' } }, ['b']))), /requires "b", which is not among its properties/);
    assert.throws(() => configTypesSource(section({ type: 'string' }), { '': 'Root', '/properties/gone': 'Gone' }), /named Gone in TYPE_NAMES, but the schema has no such node/);
  });
});
