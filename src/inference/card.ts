import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { ErrorCodes, TidecastError } from '../errors.js';
import { modelsDir } from '../paths.js';
import type { CalendarInput } from './calendar.js';
import type { SignatureHint } from './signature.js';

/** Mean and standard deviation per column, for standardising values. */
export interface MeanStd {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/**
 * One thing a model outputs per horizon. With `labels` it is a classification
 * head: one output per label, read as logits (softmax applied by tidecast) or
 * as probabilities; without, one numeric value.
 */
export interface CardTarget {
  readonly name: string;
  readonly unit?: string;
  readonly description?: string;
  readonly labels?: readonly string[];
  readonly scores?: 'logits' | 'probabilities';
}

/** Held-out residuals (actual − forecast) of one numeric target at one horizon. */
export interface CellResiduals {
  readonly n?: number;
  readonly mae?: number;
  /** [probability, residual] pairs, probabilities increasing in (0, 1), residuals not decreasing. */
  readonly quantiles: ReadonlyArray<readonly [number, number]>;
}

/** What a trainer measured on held-out data to seed prediction intervals (models/model-card.schema.json, `calibration`). */
export interface CardCalibration {
  readonly from?: string;
  readonly to?: string;
  readonly method?: string;
  /** By `target@horizon`. */
  readonly residuals: Readonly<Record<string, CellResiduals>>;
}

/** A model card: what a forecaster expects and produces (models/model-card.schema.json). */
export interface ModelCard {
  readonly name: string;
  readonly description?: string;
  readonly mode: 'stateful' | 'windowed';
  readonly window?: number | null;
  readonly stepSeconds: number;
  readonly features: ReadonlyArray<{ name: string; unit?: string }>;
  /** Inputs derived from each step's event time, fed after the features, unscaled. */
  readonly calendar?: readonly CalendarInput[];
  readonly targets: readonly CardTarget[];
  readonly horizons: readonly number[];
  readonly outputLayout?: 'horizon-major';
  /** `targets` covers the numeric targets only (not classification targets). */
  readonly scaler?: { features: MeanStd; targets?: MeanStd };
  readonly signature?: SignatureHint;
  readonly provenance?: Record<string, unknown>;
  readonly calibration?: CardCalibration;
  readonly metrics?: Record<string, unknown>;
  readonly sha256?: string;
}

let validate: ReturnType<Ajv['compile']> | undefined;

function schemaValidator(): ReturnType<Ajv['compile']> {
  if (!validate) {
    const schema = JSON.parse(readFileSync(path.join(modelsDir, 'model-card.schema.json'), 'utf8')) as object;
    validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  }
  return validate;
}

const errorLine = (e: ErrorObject): string => `${e.instancePath || '/'}: ${e.message ?? 'invalid'}`;

/** Problems the schema cannot express: lengths that must agree across fields. */
function crossFieldProblems(card: ModelCard): string[] {
  const problems: string[] = [];
  if (card.mode === 'windowed' && !(typeof card.window === 'number' && card.window >= 1)) {
    problems.push('/window: must be a positive integer when mode is "windowed"');
  }
  const inputs = new Set(card.features.map((f) => f.name));
  card.calendar?.forEach((c, i) => {
    if (inputs.has(c.name)) problems.push(`/calendar/${i}/name: "${c.name}" is already an input`);
    inputs.add(c.name);
  });
  const seen = new Set<string>();
  card.targets.forEach((t, i) => {
    // A prediction is keyed by (stream, model, issue time, horizon, target): two targets of one name would collide.
    if (seen.has(t.name)) problems.push(`/targets/${i}/name: "${t.name}" is listed twice`);
    seen.add(t.name);
    if (t.scores !== undefined && t.labels === undefined) problems.push(`/targets/${i}/scores: only a target with labels (a classification head) has class scores`);
  });
  const cells = new Set(numericTargets(card).flatMap((t) => card.horizons.map((h) => `${t.name}@${h}`)));
  for (const [key, r] of Object.entries(card.calibration?.residuals ?? {})) {
    const at = `/calibration/residuals/${key}`;
    if (!cells.has(key)) problems.push(`${at}: not a numeric target@horizon of this card (${[...cells].join(', ')})`);
    r.quantiles.forEach(([p, v], i) => {
      const prev = r.quantiles[i - 1];
      if (!(p > 0 && p < 1)) problems.push(`${at}/quantiles/${i}: probability ${p} is not in (0, 1)`);
      else if (prev && !(p > prev[0] && v >= prev[1])) problems.push(`${at}/quantiles/${i}: probabilities must increase and residuals not decrease`);
    });
  }
  if (card.scaler) {
    const numeric = numericTargets(card).length;
    const scaled = [['features', card.scaler.features, card.features.length, 'features'], ['targets', card.scaler.targets, numeric, 'numeric targets']] as const;
    for (const [key, stats, want, what] of scaled) {
      if (!stats) {
        if (want > 0) problems.push(`/scaler/${key}: missing, and the card has ${want} ${what}`);
        continue;
      }
      for (const stat of ['mean', 'std'] as const) {
        if (stats[stat].length !== want) problems.push(`/scaler/${key}/${stat}: has ${stats[stat].length} values for ${want} ${what}`);
      }
    }
  }
  return problems;
}

/** Parse and check a card; every problem is reported at once as `path: message`. */
export function parseCard(text: string, source: string): ModelCard {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TidecastError(ErrorCodes.CARD_INVALID, `model card ${source} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const check = schemaValidator();
  const problems = check(json) ? crossFieldProblems(json as ModelCard) : (check.errors ?? []).map(errorLine);
  if (problems.length > 0) {
    throw new TidecastError(ErrorCodes.CARD_INVALID, `model card ${source} is invalid:\n  ${problems.join('\n  ')}`);
  }
  return json as ModelCard;
}

/** Read a card file. */
export function readCard(file: string): ModelCard {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TidecastError(ErrorCodes.CARD_INVALID, `cannot read model card ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseCard(text, file);
}

/** Where a model's card lives by convention: `name.onnx` → `name.card.json`. */
export function defaultCardPath(modelPath: string): string {
  return modelPath.replace(/\.onnx$/i, '') + '.card.json';
}

/** The targets that output one number each (no labels), in card order: the ones `scaler.targets` covers. */
export function numericTargets(card: ModelCard): CardTarget[] {
  return card.targets.filter((t) => t.labels === undefined);
}

/** Output values one target takes per horizon: 1, or one per label. */
export const targetWidth = (t: CardTarget): number => t.labels?.length ?? 1;

/** Values the model takes per step: the card's features, then its calendar inputs. */
export function cardInputSize(card: ModelCard): number {
  return card.features.length + (card.calendar?.length ?? 0);
}

/** Number of output values per step the card promises (horizons × the targets' widths). */
export function cardOutputSize(card: ModelCard): number {
  return card.horizons.length * card.targets.reduce((n, t) => n + targetWidth(t), 0);
}

/** "2 targets × 3 horizons", or with classification heads "(temp + rain: 2 labels) × 1 horizon": how the output width adds up. */
export function describeOutputSize(card: ModelCard): string {
  const h = `${card.horizons.length} horizon${card.horizons.length === 1 ? '' : 's'}`;
  if (card.targets.every((t) => t.labels === undefined)) return `${card.targets.length} target${card.targets.length === 1 ? '' : 's'} × ${h}`;
  return `(${card.targets.map((t) => (t.labels ? `${t.name}: ${t.labels.length} labels` : t.name)).join(' + ')}) × ${h}`;
}
