import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { ModelConfig } from '../config/config.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { cardInputSize, cardOutputSize, defaultCardPath, describeOutputSize, readCard, type ModelCard } from './card.js';
import type { Logger } from '../log.js';
import { createSession, type ProviderFailure, type ProviderSpec } from './providers.js';
import { detectSignature, type ModelSignature, type SignatureHint, type TensorInfo } from './signature.js';

/** How to load a model. */
export interface LoadModelOptions {
  /** Card file; undefined looks beside the model (`name.card.json`), null loads without a card. */
  card?: string | null;
  /** Threads onnxruntime may use inside one run (default 1: the daemon shares a small box). */
  intraOpThreads?: number;
  /** Execution providers in order of preference (default ['cpu']); each is tried until one works. */
  providers?: readonly ProviderSpec[];
  /** A failed first-choice provider is fatal (TIDECAST_ERR_PROVIDER) instead of falling back. */
  strictProviders?: boolean;
  /** Where provider fallbacks are logged. */
  log?: Logger;
  /** How the graph's inputs and outputs map to features, forecast and states; overrides the card's `signature`. */
  signature?: SignatureHint;
  /** Force windowed mode with this window, e.g. to run a stateful model the naive way. */
  window?: number;
}

/** How a configured model (`models.NAME` in tidecast.yaml) is loaded: the daemon, its hot reload and check-config agree. */
export function loadOptionsFor(m: ModelConfig, log?: Logger): LoadModelOptions {
  return { card: m.card, intraOpThreads: m.threads, providers: m.providers, strictProviders: m.strictProviders, signature: m.signature, log };
}

/** An onnxruntime session with its detected signature, card and run mode. */
export interface LoadedModel {
  readonly name: string;
  readonly path: string;
  readonly session: ort.InferenceSession;
  /** The options `session` was created with (a session thread creates its own with them). */
  readonly sessionOptions: ort.InferenceSession.SessionOptions;
  readonly signature: ModelSignature;
  readonly card: ModelCard | null;
  readonly cardPath: string | null;
  /** stateful: one step per run, state carried; windowed: the last `window` steps per run. */
  readonly mode: 'stateful' | 'windowed';
  readonly window: number | null;
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** The execution provider the session runs on. */
  readonly provider: string;
  /** Providers tried before it, and why each failed. */
  readonly providerFailures: readonly ProviderFailure[];
  /** sha256 of the model file (first 16 hex digits): a checkpointed state is only restored into the same graph. */
  readonly fingerprint: string;
}

function tensorInfos(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorInfo[] {
  return meta.map((m) => ({ name: m.name, shape: m.isTensor ? [...m.shape] : [] }));
}

function resolveMode(sig: ModelSignature, card: ModelCard | null, forcedWindow: number | undefined, file: string): Pick<LoadedModel, 'mode' | 'window'> {
  if (forcedWindow !== undefined) return { mode: 'windowed', window: forcedWindow };
  if (card?.mode === 'windowed') {
    const window = card.window ?? 0;
    if (sig.fixedTime !== null && sig.fixedTime !== window) {
      throw new TidecastError(ErrorCodes.SIGNATURE, `${file}: card window ${window} differs from the graph's fixed time length ${sig.fixedTime}`);
    }
    return { mode: 'windowed', window };
  }
  if (sig.states.length === 0) {
    // No state to carry: the model can only see what it is given each run.
    if (sig.fixedTime !== null && sig.fixedTime > 1) return { mode: 'windowed', window: sig.fixedTime };
    if (sig.inputTimeAxis >= 0) {
      throw new TidecastError(
        ErrorCodes.SIGNATURE,
        `${file}: the model has no state inputs and a dynamic time axis; set mode "windowed" and a window in its card, ` +
          'or export it with its state as inputs and outputs (h0/c0 -> hn/cn)',
      );
    }
    return { mode: 'stateful', window: null };
  }
  if (sig.fixedTime !== null && sig.fixedTime !== 1) {
    throw new TidecastError(ErrorCodes.SIGNATURE, `${file}: a stateful model needs a dynamic or length-1 time axis, the graph fixes it at ${sig.fixedTime}`);
  }
  return { mode: 'stateful', window: null };
}

/** A model file's identity: the first 16 hex digits of its sha256. */
export function fingerprintOf(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
}

/**
 * Load an exported ONNX forecaster: create the session, read its card, detect
 * its signature and check the two agree. Every refusal is a coded TidecastError.
 */
export async function loadModel(file: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const abs = path.resolve(file);
  if (!existsSync(abs) || !statSync(abs).isFile()) {
    throw new TidecastError(ErrorCodes.MODEL_NOT_FOUND, `model file not found: ${abs}`);
  }
  let cardPath: string | null = null;
  if (options.card !== null) {
    const candidate = options.card ?? defaultCardPath(abs);
    if (options.card !== undefined || existsSync(candidate)) cardPath = path.resolve(candidate);
  }
  const card = cardPath === null ? null : readCard(cardPath);
  const name = card?.name ?? path.basename(abs).replace(/\.onnx$/i, '');

  const created = await createSession(abs, {
    providers: options.providers,
    strict: options.strictProviders,
    intraOpThreads: options.intraOpThreads,
    log: options.log,
    model: name,
  });
  const session = created.session;
  try {
    const inputs = tensorInfos(session.inputMetadata);
    const outputs = tensorInfos(session.outputMetadata);
    const hint = card?.signature || options.signature ? { ...card?.signature, ...options.signature } : undefined;
    const signature = detectSignature(inputs, outputs, hint);
    if (card && cardInputSize(card) !== signature.featureCount) {
      const calendar = card.calendar?.length ? ` and ${card.calendar.length} calendar inputs (${card.calendar.map((c) => c.name).join(', ')})` : '';
      throw new TidecastError(
        ErrorCodes.FEATURE_COUNT,
        `${abs}: the card lists ${card.features.length} features (${card.features.map((f) => f.name).join(', ')})${calendar} ` +
          `but input "${signature.input}" takes ${signature.featureCount}`,
      );
    }
    if (card && signature.outputSize !== null && signature.outputSize !== cardOutputSize(card)) {
      throw new TidecastError(
        ErrorCodes.OUTPUT_COUNT,
        `${abs}: the card promises ${describeOutputSize(card)} = ${cardOutputSize(card)} values ` +
          `but output "${signature.output}" has ${signature.outputSize} per step`,
      );
    }
    const provider = created.provider;
    const providerFailures = created.failures;
    return { name, path: abs, session, sessionOptions: created.options, signature, card, cardPath, inputs, outputs, provider, providerFailures, fingerprint: fingerprintOf(abs), ...resolveMode(signature, card, options.window, abs) };
  } catch (err) {
    await session.release();
    throw err;
  }
}
