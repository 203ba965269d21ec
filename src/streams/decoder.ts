import type { DecoderConfig, TimestampConfig } from '../config/config.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { fillTemplate } from './topic-pattern.js';

/** Why a message was dead-lettered. Stable strings: they are stored and counted. */
export type DeadLetterReason =
  | 'no_route'
  | 'too_large'
  | 'bad_json'
  | 'bad_csv'
  | 'missing_field'
  | 'wrong_type'
  | 'non_finite'
  | 'bad_timestamp'
  | 'bad_stream_id'
  | 'late'
  | 'unknown_feature'
  | 'too_many_samples'
  | 'stream_limit'
  | 'internal';

/** One decoded reading: every feature the route's models need, at one time. */
export interface Sample {
  /** Event time, ms since the epoch (the payload's timestamp, or arrival time). */
  readonly ts: number;
  readonly values: Readonly<Record<string, number>>;
}

/** A message that cannot become a sample; `reason` is what gets stored and counted. */
export class DecodeError extends TidecastError {
  readonly reason: DeadLetterReason;

  constructor(reason: DeadLetterReason, message: string) {
    super(ErrorCodes.DECODE, message);
    this.reason = reason;
  }
}

/** Turns a payload into a sample; `params` are the topic's named wildcards. */
export type Decoder = (payload: Buffer, arrivalMs: number, params?: Readonly<Record<string, string>>) => Sample;

/** The value at a dotted path, given split into its keys. */
function fieldAt(obj: unknown, keys: readonly string[]): unknown {
  let cur: unknown = obj;
  for (const key of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** A short, safe rendering of a payload value for an error message (String() of a parsed object can throw). */
function show(raw: unknown): string {
  if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') return String(raw).slice(0, 40);
  return raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw;
}

function toNumber(raw: unknown, name: string, strings: boolean): number {
  let n: number;
  if (typeof raw === 'number') n = raw;
  else if (strings && typeof raw === 'string' && raw.trim() !== '') n = Number(raw);
  else throw new DecodeError('wrong_type', `${name}: expected a number, got ${raw === null ? 'null' : typeof raw}`);
  if (Number.isNaN(n) && typeof raw === 'string' && !/^\s*[+-]?nan\s*$/i.test(raw)) {
    throw new DecodeError('wrong_type', `${name}: "${raw.slice(0, 40)}" is not a number`);
  }
  if (!Number.isFinite(n)) throw new DecodeError('non_finite', `${name}: ${show(raw)} is not finite`);
  return n;
}

function parseTimestamp(raw: unknown, cfg: TimestampConfig): number {
  if (raw === undefined || raw === null) throw new DecodeError('missing_field', `timestamp field "${cfg.field}" is missing`);
  let ms: number;
  if (cfg.format === 'iso') {
    ms = typeof raw === 'string' ? Date.parse(raw) : NaN;
  } else {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    ms = cfg.format === 'epoch_s' ? n * 1000 : n;
  }
  // Years 1970..9999: catches seconds sent as ms and ms sent as seconds' garbage.
  if (!Number.isFinite(ms) || ms < 0 || ms > 253402300799999) {
    throw new DecodeError('bad_timestamp', `timestamp "${show(raw)}" is not a valid ${cfg.format} time`);
  }
  return Math.round(ms);
}

/** Build the decoder of a route for the given feature names (the union of its models' features). */
export function createDecoder(cfg: DecoderConfig, features: readonly string[]): Decoder {
  switch (cfg.type) {
    case 'json': {
      const paths = features.map((f) => [f, cfg.features?.[f] ?? f, (cfg.features?.[f] ?? f).split('.')] as const);
      const ts = cfg.timestamp;
      const tsKeys = ts?.field.split('.') ?? [];
      return (payload, arrivalMs) => {
        let doc: unknown;
        try {
          doc = JSON.parse(payload.toString('utf8'));
        } catch (err) {
          throw new DecodeError('bad_json', `payload is not JSON: ${(err as Error).message}`);
        }
        if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new DecodeError('wrong_type', 'payload must be a JSON object');
        const values: Record<string, number> = {};
        let found = 0;
        for (const [feature, p, keys] of paths) {
          const raw = fieldAt(doc, keys);
          if (raw === undefined) {
            if (cfg.partial) continue;
            throw new DecodeError('missing_field', `field "${p}" (feature ${feature}) is missing`);
          }
          values[feature] = toNumber(raw, `field "${p}"`, false);
          found++;
        }
        if (found === 0) throw new DecodeError('missing_field', `none of the fields ${paths.map(([, p]) => p).join(', ')} is present`);
        return { ts: ts ? parseTimestamp(fieldAt(doc, tsKeys), ts) : arrivalMs, values };
      };
    }
    case 'number': {
      const template = cfg.feature;
      if (!template.includes('{') && !features.includes(template)) {
        throw new TidecastError(ErrorCodes.CONFIG, `a number decoder's feature "${template}" is not a feature of the route's models (${features.join(', ')})`);
      }
      const known = new Set(features);
      return (payload, arrivalMs, params) => {
        const feature = fillTemplate(template, params ?? {});
        if (!known.has(feature)) throw new DecodeError('unknown_feature', `"${feature}" is not a feature of the route's models (${features.join(', ')})`);
        return { ts: arrivalMs, values: { [feature]: toNumber(payload.toString('utf8').trim(), 'payload', true) } };
      };
    }
    case 'csv': {
      const missing = features.filter((f) => !cfg.columns.includes(f));
      if (missing.length > 0) throw new TidecastError(ErrorCodes.CONFIG, `CSV columns lack the feature(s) ${missing.join(', ')}`);
      const idx = features.map((f) => [f, cfg.columns.indexOf(f)] as const);
      const ts = cfg.timestamp;
      const tsIdx = ts ? cfg.columns.indexOf(ts.field) : -1;
      if (ts && tsIdx < 0) throw new TidecastError(ErrorCodes.CONFIG, `CSV timestamp column "${ts.field}" is not among the columns`);
      return (payload, arrivalMs) => {
        const cells = payload.toString('utf8').trim().split(cfg.separator);
        if (cells.length !== cfg.columns.length) {
          throw new DecodeError('bad_csv', `expected ${cfg.columns.length} columns (${cfg.columns.join(cfg.separator)}), got ${cells.length}`);
        }
        const values: Record<string, number> = {};
        for (const [feature, i] of idx) values[feature] = toNumber(cells[i], `column ${feature}`, true);
        return { ts: ts ? parseTimestamp(cells[tsIdx]!.trim(), ts) : arrivalMs, values };
      };
    }
  }
}
