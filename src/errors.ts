/**
 * The one catalogue of tidecast's coded errors. Callers match on `code`, never on
 * message text; messages are written for the person reading the log.
 */
export const ErrorCodes = {
  /** The model file does not exist or cannot be read. */
  MODEL_NOT_FOUND: 'TIDECAST_ERR_MODEL_NOT_FOUND',
  /** onnxruntime could not parse or load the model file. */
  MODEL_CORRUPT: 'TIDECAST_ERR_MODEL_CORRUPT',
  /** No configured execution provider could run the model, or a strict model's first choice failed (exit code 69). */
  PROVIDER: 'TIDECAST_ERR_PROVIDER',
  /** The model card is missing required fields or is not valid JSON. */
  CARD_INVALID: 'TIDECAST_ERR_CARD_INVALID',
  /** The model's inputs/outputs cannot be mapped to data input, output and states. */
  SIGNATURE: 'TIDECAST_ERR_SIGNATURE',
  /** A state input has no output of the same shape to carry it to the next step. */
  STATE_UNPAIRED: 'TIDECAST_ERR_STATE_UNPAIRED',
  /** The card's feature list does not match the model's input width. */
  FEATURE_COUNT: 'TIDECAST_ERR_FEATURE_COUNT',
  /** The card's targets × horizons do not match the model's output width. */
  OUTPUT_COUNT: 'TIDECAST_ERR_OUTPUT_COUNT',
  /** A step was submitted with the wrong number of features. */
  STEP_SHAPE: 'TIDECAST_ERR_STEP_SHAPE',
  /** The configuration is invalid (exit code 78). */
  CONFIG: 'TIDECAST_ERR_CONFIG',
  /** A message could not be turned into a sample (the reason is a dead-letter reason). */
  DECODE: 'TIDECAST_ERR_DECODE',
  /** The SQLite store failed. */
  STORE: 'TIDECAST_ERR_STORE',
  /** The store cannot write right now (disk full, locked, I/O error); the write is retried. */
  STORE_UNAVAILABLE: 'TIDECAST_ERR_STORE_UNAVAILABLE',
  /** Another tidecast holds this store's lock (exit code 75: try again once it has stopped). */
  LOCKED: 'TIDECAST_ERR_LOCKED',
  /** The engine was used after stop(). */
  STOPPED: 'TIDECAST_ERR_STOPPED',
  /** The HTTP endpoint could not listen (the port is taken, the address is not this machine's); exit code 75. */
  HTTP: 'TIDECAST_ERR_HTTP',
  /** A broken invariant: a bug in tidecast (please report it); exit code 1. */
  INTERNAL: 'TIDECAST_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** An error with a stable code and an optional cause. */
export class TidecastError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TidecastError';
    this.code = code;
  }
}
