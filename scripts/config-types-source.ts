import { ErrorCodes, TidecastError } from '../src/errors.js';

/** A JSON Schema (draft-07) node, as far as its TypeScript type goes. */
export type SchemaNode = boolean | SchemaObject;

export interface SchemaObject {
  readonly [keyword: string]: unknown;
  readonly type?: unknown;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode;
  readonly required?: readonly string[];
  readonly items?: SchemaNode;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly oneOf?: readonly SchemaNode[];
  readonly $ref?: string;
  readonly default?: unknown;
  readonly description?: string;
  readonly discriminator?: unknown;
  readonly definitions?: Readonly<Record<string, SchemaNode>>;
}

/**
 * Names of the types the code imports, by JSON pointer into the schema. Each
 * object section of the root is also named, `<Section>Config`; other objects
 * are written inline.
 */
export const TYPE_NAMES: Readonly<Record<string, string>> = {
  '': 'TidecastConfig',
  '/properties/models/additionalProperties': 'ModelConfig',
  '/properties/models/additionalProperties/properties/providers/items': 'ProviderConfig',
  '/properties/routes/items': 'RouteConfig',
  '/properties/routes/items/properties/resample': 'ResampleConfig',
  '/definitions/decoder': 'DecoderConfig',
  '/definitions/timestamp': 'TimestampConfig',
  '/definitions/timestamp/properties/format': 'TimestampFormat',
};

/** Keywords that say nothing about the type (annotations, or bounds a type cannot hold). */
const NO_TYPE = new Set(['description', 'title', 'default', '$schema', '$id', 'definitions', 'discriminator', 'examples',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength', 'pattern', 'format',
  'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties']);
const TYPED = new Set(['type', 'properties', 'additionalProperties', 'required', 'items', 'enum', 'const', 'oneOf', '$ref']);

const HEADER = `// Generated from config/tidecast.schema.json by \`npm run gen:config-types\`: edit the schema, not this file
// (test/config-types.test.ts fails while the two differ). These are the shapes ajv leaves after it has
// validated a file with useDefaults: a key the schema requires or gives a default is always there, any
// other key is optional. src/config/config.ts adds what loadConfig fills in beyond the schema.
`;

interface Context {
  /** Whether ajv's useDefaults fills in defaults here: not inside a oneOf without a discriminator. */
  readonly defaultsApply: boolean;
  /** Indentation of the line an object's closing brace goes on. */
  readonly indent: string;
}

interface Declaration {
  readonly name: string;
  readonly pointer: string;
  readonly node: SchemaNode;
  readonly defaultsApply: boolean;
}

const schemaProblem = (pointer: string, what: string): TidecastError =>
  new TidecastError(ErrorCodes.CONFIG, `config/tidecast.schema.json#${pointer}: ${what}`);

const literal = (v: unknown): string =>
  typeof v === 'string' ? `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : JSON.stringify(v);

const propertyKey = (k: string): string => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : literal(k));

/** A TSDoc comment, wrapped at about 100 columns; nothing when there is nothing to say. A default belongs to a key, not to a named type. */
function docComment(node: SchemaNode, indent: string, withDefault = true): string {
  if (typeof node === 'boolean') return '';
  const parts: string[] = [];
  if (typeof node.description === 'string') parts.push(node.description);
  // An object default is {} or a list of its keys' defaults, shown on the keys themselves.
  if (withDefault && node.default !== undefined && (typeof node.default !== 'object' || Array.isArray(node.default))) {
    parts.push(`Default: \`${JSON.stringify(node.default)}\`.`);
  }
  if (parts.length === 0) return '';
  const text = parts.join(' ').replace(/\*\//g, '*\\/');
  const width = 100 - indent.length - 3;
  if (text.length <= width - 4) return `${indent}/** ${text} */\n`;
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(line);
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`).join('\n')}\n${indent} */\n`;
}

function checkKeywords(node: SchemaObject, pointer: string): void {
  for (const k of Object.keys(node)) {
    if (!NO_TYPE.has(k) && !TYPED.has(k)) throw schemaProblem(pointer, `the keyword "${k}" is not one the type generator understands (scripts/config-types-source.ts)`);
  }
  if (node.$ref !== undefined && Object.keys(node).some((k) => k !== '$ref' && k !== 'description')) {
    throw schemaProblem(pointer, 'keywords beside $ref: draft-07 ignores them, so put them in the definition');
  }
}

/** A oneOf branch with the keywords of the node around it (decoder: `type: object` and `required: [type]` outside, properties in each branch). */
function withBase(base: SchemaObject, branch: SchemaNode): SchemaNode {
  if (typeof branch === 'boolean') return branch;
  const { oneOf: _oneOf, discriminator: _discriminator, description: _description, default: _default, ...rest } = base;
  if (Object.keys(rest).length === 0) return branch;
  if (rest.type !== undefined && branch.type !== undefined && rest.type !== branch.type) return false;
  return {
    ...rest,
    ...branch,
    properties: { ...rest.properties, ...branch.properties },
    required: [...(rest.required ?? []), ...(branch.required ?? [])],
  };
}

/** Writes the declarations: the root first, then each named type in the order first met. */
class ConfigTypesWriter {
  readonly #names: ReadonlyMap<string, string>;
  readonly #root: SchemaObject;
  readonly #queue: Declaration[] = [];
  readonly #met = new Map<string, Declaration>();

  constructor(root: SchemaObject, names: Readonly<Record<string, string>>) {
    this.#root = root;
    const all = new Map(Object.entries(names));
    for (const [key, node] of Object.entries(root.properties ?? {})) {
      const pointer = `/properties/${key}`;
      if (typeof node === 'object' && node.properties !== undefined && !all.has(pointer)) all.set(pointer, `${key[0]!.toUpperCase()}${key.slice(1)}Config`);
    }
    this.#names = all;
  }

  write(): string {
    this.#reference('', this.#root, { defaultsApply: true, indent: '' });
    const out: string[] = [HEADER];
    for (let i = 0; i < this.#queue.length; i++) {
      const d = this.#queue[i]!;
      const type = this.#typeOf(d.node, d.pointer, { defaultsApply: d.defaultsApply, indent: '' }, false);
      const object = typeof d.node === 'object' && d.node.properties !== undefined && d.node.oneOf === undefined;
      out.push(`${docComment(d.node, '', false)}${object ? `export interface ${d.name} ${type}` : `export type ${d.name} =${type.startsWith('\n') ? '' : ' '}${type};`}\n`);
    }
    const unused = [...this.#names].filter(([pointer]) => !this.#met.has(pointer));
    if (unused.length > 0) throw schemaProblem(unused[0]![0], `named ${unused[0]![1]} in TYPE_NAMES, but the schema has no such node`);
    return out.join('\n');
  }

  #reference(pointer: string, node: SchemaNode, ctx: Context): string {
    const name = this.#names.get(pointer);
    if (name === undefined) throw schemaProblem(pointer, 'a $ref to a definition without a name in TYPE_NAMES');
    const met = this.#met.get(pointer);
    if (met === undefined) {
      const d = { name, pointer, node, defaultsApply: ctx.defaultsApply };
      this.#met.set(pointer, d);
      this.#queue.push(d);
    } else if (met.defaultsApply !== ctx.defaultsApply) {
      throw schemaProblem(pointer, 'used both where ajv fills in defaults and where it does not (a oneOf without a discriminator), so its keys have no one type');
    }
    return name;
  }

  #typeOf(node: SchemaNode, pointer: string, ctx: Context, named = true): string {
    if (typeof node === 'boolean') return node ? 'unknown' : 'never';
    checkKeywords(node, pointer);
    if (named && this.#names.has(pointer)) return this.#reference(pointer, node, ctx);
    if (node.$ref !== undefined) {
      const m = /^#(\/definitions\/[^/]+)$/.exec(node.$ref);
      const target = m ? this.#root.definitions?.[m[1]!.slice('/definitions/'.length)] : undefined;
      if (!m || target === undefined) throw schemaProblem(pointer, `$ref ${node.$ref}: only #/definitions/NAME of this schema`);
      if (typeof target === 'object' && target.default !== undefined) throw schemaProblem(m[1]!, 'a default on a definition: put it on the property that uses it');
      return this.#reference(m[1]!, target, ctx);
    }
    if (node.const !== undefined) return literal(node.const);
    if (node.enum !== undefined) return node.enum.map(literal).join(' | ');
    if (node.oneOf !== undefined) {
      const branchCtx = { defaultsApply: ctx.defaultsApply && node.discriminator !== undefined, indent: `${ctx.indent}    ` };
      const members = node.oneOf.map((b, i) => this.#typeOf(withBase(node, b), `${pointer}/oneOf/${i}`, branchCtx));
      if (!members.some((m) => m.includes('\n'))) return members.join(' | ');
      return members.map((m) => `\n${ctx.indent}  | ${m}`).join('');
    }
    switch (node.type ?? (node.properties !== undefined ? 'object' : undefined)) {
      case 'object':
        return this.#objectType(node, pointer, ctx);
      case 'array': {
        if (node.items === undefined) throw schemaProblem(pointer, 'an array without items');
        const item = this.#typeOf(node.items, `${pointer}/items`, ctx);
        return /[\s|&]/.test(item) ? `ReadonlyArray<${item}>` : `readonly ${item}[]`;
      }
      case 'string':
        return 'string';
      case 'number':
      case 'integer':
        return 'number';
      case 'boolean':
        return 'boolean';
      default:
        throw schemaProblem(pointer, `type ${JSON.stringify(node.type)}: the type generator knows object, array, string, number, integer and boolean`);
    }
  }

  #objectType(node: SchemaObject, pointer: string, ctx: Context): string {
    const extra = node.additionalProperties;
    if (node.properties === undefined) {
      if (extra === undefined || typeof extra === 'boolean') throw schemaProblem(pointer, 'an object needs properties or an additionalProperties schema');
      return `Readonly<Record<string, ${this.#typeOf(extra, `${pointer}/additionalProperties`, ctx)}>>`;
    }
    if (extra !== false) throw schemaProblem(pointer, 'an object with properties needs additionalProperties: false (open objects have no exact type)');
    const required = new Set(node.required ?? []);
    for (const r of required) if (!(r in node.properties)) throw schemaProblem(pointer, `requires "${r}", which is not among its properties`);
    const inner = `${ctx.indent}  `;
    const lines = Object.entries(node.properties).map(([key, prop]) => {
      const at = `${pointer}/properties/${key}`;
      const hasDefault = typeof prop === 'object' && prop.default !== undefined;
      if (hasDefault && !ctx.defaultsApply) throw schemaProblem(at, 'a default inside a oneOf without a discriminator, which ajv does not fill in');
      const optional = !required.has(key) && !hasDefault;
      const type = this.#typeOf(prop, at, { defaultsApply: ctx.defaultsApply, indent: inner });
      return `${docComment(prop, inner)}${inner}readonly ${propertyKey(key)}${optional ? '?' : ''}:${type.startsWith('\n') ? '' : ' '}${type};`;
    });
    return `{\n${lines.join('\n')}\n${ctx.indent}}`;
  }
}

/**
 * TypeScript declarations for the configuration's JSON Schema, as a loaded
 * file looks once ajv has validated it with useDefaults. A schema construct it
 * cannot express exactly throws (TIDECAST_ERR_CONFIG), so the types cannot
 * silently drift from what the schema lets through.
 */
export function configTypesSource(schema: SchemaNode, names: Readonly<Record<string, string>> = TYPE_NAMES): string {
  if (typeof schema === 'boolean') throw schemaProblem('', 'the root must be an object schema');
  return new ConfigTypesWriter(schema, names).write();
}
