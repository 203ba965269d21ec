import { ErrorCodes, TidecastError } from '../errors.js';

/**
 * A topic filter with named wildcards: `sensors/+site/+device/telemetry`
 * subscribes as `sensors/+/+/telemetry` and matches `sensors/north/t1/telemetry`
 * to `{ site: 'north', device: 't1' }`. A trailing `#name` captures the rest of
 * the topic. Plain `+` and `#` work too, unnamed. Matching follows MQTT 3.1.1
 * §4.7: `+` is exactly one level, `#` is the remaining levels (zero or more),
 * and wildcards never match topics starting with `$` at the first level.
 */
export class TopicPattern {
  /** The filter as the broker sees it. */
  readonly filter: string;
  /** The named wildcards, in order. */
  readonly names: readonly string[];
  readonly #levels: ReadonlyArray<{ kind: 'literal' | 'one' | 'rest'; text: string; name: string | null }>;

  constructor(pattern: string) {
    if (pattern.length === 0) throw new TidecastError(ErrorCodes.CONFIG, 'a topic filter cannot be empty');
    const levels = pattern.split('/');
    const names: string[] = [];
    this.#levels = levels.map((level, i) => {
      const kind = level.startsWith('+') ? 'one' : level.startsWith('#') ? 'rest' : 'literal';
      if (kind === 'literal' && /[+#]/.test(level)) throw new TidecastError(ErrorCodes.CONFIG, `"${level}": + and # must stand at the start of a level`);
      if (kind === 'rest' && i !== levels.length - 1) throw new TidecastError(ErrorCodes.CONFIG, '# must be the last level');
      const name = kind === 'literal' ? null : level.slice(1) || null;
      if (name !== null) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new TidecastError(ErrorCodes.CONFIG, `"${level}": a wildcard name is letters, digits and _`);
        if (names.includes(name)) throw new TidecastError(ErrorCodes.CONFIG, `"${name}" is named twice`);
        names.push(name);
      }
      return { kind, text: level, name };
    });
    this.names = names;
    this.filter = this.#levels.map((l) => (l.kind === 'one' ? '+' : l.kind === 'rest' ? '#' : l.text)).join('/');
  }

  /** The named wildcards' values, or null when the topic does not match. */
  match(topic: string): Record<string, string> | null {
    const parts = topic.split('/');
    if (topic.startsWith('$') && this.#levels[0]?.kind !== 'literal') return null;
    const params: Record<string, string> = {};
    for (let i = 0; i < this.#levels.length; i++) {
      const level = this.#levels[i]!;
      if (level.kind === 'rest') {
        if (level.name !== null) params[level.name] = parts.slice(i).join('/');
        return params;
      }
      const part = parts[i];
      if (part === undefined) return null;
      if (level.kind === 'literal') {
        if (part !== level.text) return null;
      } else if (level.name !== null) {
        params[level.name] = part;
      }
    }
    return parts.length === this.#levels.length ? params : null;
  }
}

/** Templates compiled so far (they come from the configuration: a handful). */
const compiled = new Map<string, ReturnType<typeof compileTemplate>>();

/** Fill `{name}` placeholders; unknown names are left as they are. */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  let fill = compiled.get(template);
  if (!fill) compiled.set(template, (fill = compileTemplate(template)));
  return fill(values);
}

/**
 * A template compiled once into its literal parts and names, for the data
 * path (a stream id per message): no regular expression per call. A given
 * `topic` fills `{topic}` (over a wildcard of that name).
 */
export function compileTemplate(template: string): (values: Readonly<Record<string, string>>, topic?: string) => string {
  const parts: Array<{ text: string } | { name: string; whole: string }> = [];
  let last = 0;
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (m.index! > last) parts.push({ text: template.slice(last, m.index) });
    parts.push({ name: m[1]!, whole: m[0] });
    last = m.index! + m[0].length;
  }
  if (last < template.length) parts.push({ text: template.slice(last) });
  return (values, topic) => {
    let out = '';
    for (const p of parts) out += 'text' in p ? p.text : topic !== undefined && p.name === 'topic' ? topic : (values[p.name] ?? p.whole);
    return out;
  };
}
