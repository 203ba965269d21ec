import ort from 'onnxruntime-node';
import { ErrorCodes, TidecastError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';

/** An execution provider as configured: its name, or its name with options. */
export type ProviderSpec = string | { readonly name: string; readonly deviceId?: number };

/** A provider that could not be used, and why. */
export interface ProviderFailure {
  readonly provider: string;
  readonly reason: string;
}

export interface SessionOptions {
  /** In order of preference (default ['cpu']). */
  providers?: readonly ProviderSpec[];
  /** A failed first choice is fatal instead of falling back. */
  strict?: boolean;
  intraOpThreads?: number;
  log?: Logger;
  /** For messages: the model's name. */
  model?: string;
}

export interface CreatedSession {
  session: ort.InferenceSession;
  /** The options it was created with: a second session (on a worker thread) made with them runs on the same provider. */
  options: ort.InferenceSession.SessionOptions;
  /** The provider the session runs on. */
  provider: string;
  /** Providers tried before it, with the reason each failed. */
  failures: ProviderFailure[];
}

export const providerName = (p: ProviderSpec): string => (typeof p === 'string' ? p : p.name).toLowerCase();

/** onnxruntime's execution-provider option for one configured provider. */
function epOption(p: ProviderSpec): ort.InferenceSession.ExecutionProviderConfig {
  const name = providerName(p);
  if (typeof p === 'string' || p.deviceId === undefined) return name as ort.InferenceSession.ExecutionProviderConfig;
  return { name, deviceId: p.deviceId } as ort.InferenceSession.ExecutionProviderConfig;
}

/**
 * Create a session on the first provider that works. onnxruntime-node does not
 * fall back by itself: asked for ['cuda', 'cpu'] without the CUDA libraries it
 * throws. So each provider is tried on its own (with the CPU provider behind
 * it for the operators it lacks), every failure is logged with its reason, and
 * with `strict` the first failure is fatal (TIDECAST_ERR_PROVIDER).
 */
export async function createSession(file: string, options: SessionOptions = {}): Promise<CreatedSession> {
  const providers = options.providers && options.providers.length > 0 ? options.providers : ['cpu'];
  const log = options.log ?? silentLogger;
  const failures: ProviderFailure[] = [];
  for (const p of providers) {
    const name = providerName(p);
    const eps = name === 'cpu' ? [epOption(p)] : [epOption(p), 'cpu' as const];
    try {
      const sessionOptions: ort.InferenceSession.SessionOptions = {
        executionProviders: eps,
        intraOpNumThreads: options.intraOpThreads ?? 1,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
      };
      const session = await ort.InferenceSession.create(file, sessionOptions);
      if (failures.length > 0) log.warn({ model: options.model, provider: name, failed: failures }, `model runs on ${name}, not on ${failures[0]!.provider}`);
      return { session, options: sessionOptions, provider: name, failures };
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0]!.slice(0, 300);
      failures.push({ provider: name, reason });
      if (options.strict) {
        throw new TidecastError(
          ErrorCodes.PROVIDER,
          `${options.model ?? file}: execution provider ${name} is unavailable (${reason}); strictProviders forbids falling back`,
          { cause: err },
        );
      }
      log.warn({ model: options.model, provider: name, reason }, 'execution provider unavailable; trying the next');
    }
  }
  const detail = failures.map((f) => `${f.provider}: ${f.reason}`).join('; ');
  // The CPU provider is always there: when it fails too, the file is what is wrong.
  const corrupt = failures.some((f) => f.provider === 'cpu');
  throw new TidecastError(corrupt ? ErrorCodes.MODEL_CORRUPT : ErrorCodes.PROVIDER, `onnxruntime cannot load ${file}: ${detail}`);
}

/**
 * The execution providers this onnxruntime-node build knows: `bundled` ones
 * ship with it (cpu, and webgpu on linux x64); the others (cuda, tensorrt)
 * need their libraries installed (npm rebuild onnxruntime-node
 * --onnxruntime-node-install=cuda12). Whether one works shows only when a
 * session is created on it.
 */
export function knownProviders(): Array<{ name: string; bundled: boolean }> {
  try {
    return ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
  } catch {
    return [{ name: 'cpu', bundled: true }];
  }
}
