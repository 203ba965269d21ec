import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { ErrorCodes, TidecastError } from '../errors.js';
import { modelsDir, packageRoot } from '../paths.js';
import { TopicPattern } from '../streams/topic-pattern.js';
import { redactUrl } from './redact.js';
import type { LoadedConfig, ModelConfig, TidecastConfig } from './config.js';
import type * as Schema from './config.generated.js';

/** Where the schema lives: shipped beside the example configs so editors can use it. */
export const schemaPath = path.join(packageRoot, 'config', 'tidecast.schema.json');

/** Invalid configuration: every problem, each as `path: message`. Exit code 78 (EX_CONFIG). */
export class ConfigError extends TidecastError {
  readonly problems: readonly string[];

  constructor(file: string, problems: readonly string[]) {
    super(ErrorCodes.CONFIG, `invalid configuration ${file}:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

/**
 * The config file to use: `--config`, then `$TIDECAST_CONFIG`, then
 * /etc/tidecast/tidecast.yaml, then ./config/tidecast.yaml.
 */
export function findConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string {
  const candidates = [flag, env.TIDECAST_CONFIG, '/etc/tidecast/tidecast.yaml', path.join(cwd, 'config', 'tidecast.yaml')];
  for (const c of candidates) {
    if (c === undefined || c === '') continue;
    // An explicit choice is used even if missing, so the error names it.
    if (c === flag || c === env.TIDECAST_CONFIG || existsSync(c)) return path.resolve(cwd, c);
  }
  return path.join(cwd, 'config', 'tidecast.yaml');
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface SchemaNode { properties?: Record<string, SchemaNode>; additionalProperties?: SchemaNode | boolean; items?: SchemaNode; $ref?: string }

const norm = (s: string): string => s.toLowerCase().replace(/[_-]/g, '');

function parseEnvValue(raw: string): Json {
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
}

/**
 * Apply `TIDECAST_<PATH>` overrides: path segments separated by `__`, each
 * matched to the schema's key ignoring case, `_` and `-` (TIDECAST_MQTT__URL,
 * TIDECAST_MQTT__CLIENT_ID, TIDECAST_ROUTES__0__TOPIC, TIDECAST_STORE__PATH).
 * Values are parsed as JSON when they parse, else taken as strings.
 */
function applyEnv(doc: Record<string, Json>, env: NodeJS.ProcessEnv, schema: SchemaNode, problems: string[]): string[] {
  const applied: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    // TIDECAST_FAULT_*: fault injection for the reliability tests (store/writer.ts), not settings.
    if (!name.startsWith('TIDECAST_') || name === 'TIDECAST_CONFIG' || name.startsWith('TIDECAST_FAULT_') || raw === undefined) continue;
    const segments = name.slice('TIDECAST_'.length).split('__');
    let node: SchemaNode | undefined = schema;
    let target: Json = doc;
    const keys: Array<string | number> = [];
    for (const seg of segments) {
      if (Array.isArray(target) && /^\d+$/.test(seg)) {
        keys.push(Number(seg));
        node = node?.items;
      } else {
        const known = Object.keys(node?.properties ?? {}).find((k) => norm(k) === norm(seg));
        const existing = target && typeof target === 'object' && !Array.isArray(target) ? Object.keys(target).find((k) => norm(k) === norm(seg)) : undefined;
        const key = known ?? existing;
        if (key === undefined) {
          node = undefined;
          break;
        }
        keys.push(key);
        node = known ? node?.properties?.[known] : typeof node?.additionalProperties === 'object' ? node.additionalProperties : undefined;
      }
      const next: Json | undefined = target !== null && typeof target === 'object' ? (target as Record<string, Json>)[keys[keys.length - 1] as string] : undefined;
      if (keys.length < segments.length) {
        if (next === undefined || next === null || typeof next !== 'object') {
          (target as Record<string, Json>)[keys[keys.length - 1] as string] = {};
        }
        target = (target as Record<string, Json>)[keys[keys.length - 1] as string]!;
      }
    }
    if (node === undefined || keys.length !== segments.length) {
      problems.push(`${name}: no such setting (environment overrides are TIDECAST_ + the setting's path joined by __, e.g. TIDECAST_MQTT__URL)`);
      continue;
    }
    (target as Record<string, Json>)[keys[keys.length - 1] as string] = parseEnvValue(raw);
    applied.push(name);
  }
  return applied;
}

function ajvProblem(e: ErrorObject): string {
  const at = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('')
    .replace(/^\./, '');
  const where = at === '' ? '(top level)' : at;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${where}: unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    case 'required':
      return `${where}: missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'enum':
      return `${where}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${where}: ${e.message ?? 'is invalid'}`;
  }
}

let compiled: ReturnType<Ajv['compile']> | undefined;
let schemaDoc: SchemaNode | undefined;

function validator(): { validate: ReturnType<Ajv['compile']>; schema: SchemaNode } {
  if (!compiled || !schemaDoc) {
    schemaDoc = JSON.parse(readFileSync(schemaPath, 'utf8')) as SchemaNode;
    compiled = new Ajv({ allErrors: true, useDefaults: true, discriminator: true, strict: false }).compile(schemaDoc);
  }
  return { validate: compiled, schema: schemaDoc };
}

function readSecret(file: string, what: string, problems: string[]): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    problems.push(`${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** Checks the schema cannot express: references between sections, files that must exist. */
function crossCheck(cfg: TidecastConfig, problems: string[]): void {
  cfg.routes.forEach((route, i) => {
    let pattern: TopicPattern | undefined;
    try {
      pattern = new TopicPattern(route.topic);
    } catch (err) {
      problems.push(`routes[${i}].topic: ${(err as Error).message}`);
    }
    for (const m of route.models) {
      if (!(m in cfg.models)) problems.push(`routes[${i}].models: "${m}" is not defined under models (defined: ${Object.keys(cfg.models).join(', ')})`);
    }
    if (pattern) {
      for (const v of route.stream.matchAll(/\{([^}]*)\}/g)) {
        const name = v[1]!;
        if (name !== 'topic' && !pattern.names.includes(name)) {
          problems.push(`routes[${i}].stream: {${name}} is not a named wildcard of "${route.topic}" (names: ${pattern.names.join(', ') || 'none'}, or {topic})`);
        }
      }
    }
  });
  const alertNames = new Set<string>();
  cfg.alerts.forEach((a, i) => {
    const kinds = [a.above, a.below, a.label].filter((x) => x !== undefined).length;
    if (kinds !== 1) problems.push(`alerts[${i}]: give exactly one of above, below and label (it has ${kinds})`);
    if (alertNames.has(a.name)) problems.push(`alerts[${i}].name: "${a.name}" is used twice`);
    alertNames.add(a.name);
    if (!(a.model in cfg.models)) problems.push(`alerts[${i}].model: "${a.model}" is not defined under models (defined: ${Object.keys(cfg.models).join(', ')})`);
    if (a.clearProbability !== undefined && a.clearProbability > a.probability) problems.push(`alerts[${i}].clearProbability: ${a.clearProbability} is above probability (${a.probability}): the alert would never stay on`);
    if (a.route !== undefined) {
      // An unnamed route is route<i> (routes.ts).
      const names = cfg.routes.map((r, k) => r.name ?? `route${k}`);
      const route = cfg.routes[names.indexOf(a.route)];
      if (!route) problems.push(`alerts[${i}].route: no route is named "${a.route}" (routes: ${names.join(', ')})`);
      else if (!route.models.includes(a.model)) problems.push(`alerts[${i}].route: route "${a.route}" does not run model "${a.model}"`);
    }
  });
  for (const [name, m] of Object.entries(cfg.models)) {
    if (!existsSync(m.path)) problems.push(`models.${name}.path: file not found: ${m.path}`);
  }
  const forget = cfg.store.forgetStreamsAfterDays;
  if (forget < cfg.store.retentionDays) {
    problems.push(`store.forgetStreamsAfterDays: ${forget} is less than store.retentionDays (${cfg.store.retentionDays}): a forgotten stream's rows would outlive its id`);
  }
  const scheme = /^([a-z]+):/.exec(cfg.mqtt.url)?.[1] ?? '';
  if (cfg.mqtt.tls !== undefined && !TLS_SCHEMES.has(scheme)) {
    problems.push(`mqtt.tls: set, but mqtt.url "${redactUrl(cfg.mqtt.url)}" is not a TLS URL, so the connection would be plaintext (use mqtts://, tls:// or wss://, or remove the tls block)`);
  }
}

const TLS_SCHEMES = new Set(['mqtts', 'tls', 'wss']);

/**
 * A secret file's path: `$CREDENTIALS_DIRECTORY` (or `${CREDENTIALS_DIRECTORY}`)
 * at its start is replaced by that variable, which systemd sets to where the
 * unit's `LoadCredential=` files are (readable by the service alone, even
 * under `DynamicUser=`); other paths are relative to the config file.
 */
function secretPath(p: string, what: string, env: NodeJS.ProcessEnv, resolve: (p: string) => string, problems: string[]): string | undefined {
  const m = /^\$(?:CREDENTIALS_DIRECTORY\b|\{CREDENTIALS_DIRECTORY\})(.*)$/.exec(p);
  if (!m) return resolve(p);
  const dir = env.CREDENTIALS_DIRECTORY;
  if (!dir) {
    problems.push(`${what}: names $CREDENTIALS_DIRECTORY, which is not set (systemd sets it for a unit with LoadCredential=)`);
    return undefined;
  }
  return path.join(dir, m[1]!);
}

/** Read, override from the environment, validate, resolve paths and read secrets; all problems at once. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = {}): LoadedConfig {
  const problems: string[] = [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`(file): cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  const yaml = parseDocument(text, { prettyErrors: true });
  if (yaml.errors.length > 0) throw new ConfigError(file, yaml.errors.map((e) => `(yaml): ${e.message.split('\n')[0]}`));
  const doc = (yaml.toJS() ?? {}) as Record<string, Json>;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, ['(top level): must be a mapping of settings']);

  const { validate, schema } = validator();
  const overrides = applyEnv(doc, env, schema, problems);
  if (!validate(doc)) problems.push(...(validate.errors ?? []).map(ajvProblem));
  if (problems.length > 0) throw new ConfigError(file, problems);

  // ajv has checked the document and filled in the schema's defaults: it has the generated type now.
  const valid = doc as unknown as Schema.TidecastConfig;
  const dir = path.dirname(path.resolve(file));
  const resolve = (p: string): string => path.resolve(dir, p);
  const models: Record<string, ModelConfig> = {};
  for (const [name, m] of Object.entries(valid.models)) {
    models[name] = { ...m, path: m.path === undefined ? path.join(modelsDir, `${name}.onnx`) : resolve(m.path), ...(m.card === undefined ? {} : { card: resolve(m.card) }) };
  }
  const store = valid.store;
  const cfg: TidecastConfig = {
    ...valid,
    models,
    store: { ...store, path: store.path === ':memory:' ? store.path : resolve(store.path), forgetStreamsAfterDays: store.forgetStreamsAfterDays ?? store.retentionDays },
  };
  crossCheck(cfg, problems);

  const secrets: { password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer; httpToken?: string } = {};
  const mq = cfg.mqtt;
  const secret = (p: string | undefined, what: string): Buffer | undefined => {
    const file = p === undefined ? undefined : secretPath(p, what, env, resolve, problems);
    return file === undefined ? undefined : readSecret(file, what, problems);
  };
  const pw = secret(mq.passwordFile, 'mqtt.passwordFile');
  if (pw) secrets.password = pw.toString('utf8').replace(/\r?\n$/, '');
  secrets.ca = secret(mq.tls?.caFile, 'mqtt.tls.caFile');
  secrets.cert = secret(mq.tls?.certFile, 'mqtt.tls.certFile');
  secrets.key = secret(mq.tls?.keyFile, 'mqtt.tls.keyFile');
  const token = secret(cfg.http.tokenFile, 'http.tokenFile')?.toString('utf8').trim();
  if (token !== undefined) {
    if (token.length < 16) problems.push('http.tokenFile: the token must be at least 16 characters (e.g. `openssl rand -hex 32`)');
    else secrets.httpToken = token;
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { config: deepFreeze(cfg), file: path.resolve(file), overrides, secrets };
}
