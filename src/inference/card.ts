import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { ErrorCodes, TidecastError } from '../errors.js';
import { modelsDir } from '../paths.js';
import type { SignatureHint } from './signature.js';

/** Mean and standard deviation per column, for standardising values. */
export interface MeanStd {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** A model card: what a forecaster expects and produces (models/model-card.schema.json). */
export interface ModelCard {
  readonly name: string;
  readonly description?: string;
  readonly mode: 'stateful' | 'windowed';
  readonly window?: number | null;
  readonly stepSeconds: number;
  readonly features: ReadonlyArray<{ name: string; unit?: string }>;
  readonly targets: ReadonlyArray<{ name: string; unit?: string }>;
  readonly horizons: readonly number[];
  readonly outputLayout?: 'horizon-major';
  readonly scaler?: { features: MeanStd; targets: MeanStd };
  readonly signature?: SignatureHint;
  readonly provenance?: Record<string, unknown>;
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
  if (card.scaler) {
    for (const key of ['features', 'targets'] as const) {
      const want = card[key].length;
      for (const stat of ['mean', 'std'] as const) {
        if (card.scaler[key][stat].length !== want) {
          problems.push(`/scaler/${key}/${stat}: has ${card.scaler[key][stat].length} values for ${want} ${key}`);
        }
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

/** Number of output values per step the card promises (targets × horizons). */
export function cardOutputSize(card: ModelCard): number {
  return card.targets.length * card.horizons.length;
}
