/** What a step of one stream is to the engine: the request handed in, the result handed back (`StepRunner`, `InferenceEngine`). */

/**
 * Writes a step's model input (scaled, in the model's feature order, then
 * any calendar inputs of its event time, which it finds in the step's
 * context) from the caller's own values straight into a batch tensor: a step
 * then needs no input vector of its own while it waits for its batch.
 */
export interface InputReader<C = unknown> {
  read(values: object, into: Float32Array, at: number, context: C | undefined): void;
}

/** One step of one stream: its feature vector, already scaled for the model; or, with `reader`, the values it reads that vector from. */
export interface StepRequest<C = unknown> {
  readonly streamId: string;
  readonly input: Float32Array | object;
  readonly reader?: InputReader<C>;
  /** Caller's data carried through to the result untouched (e.g. the sample's time). */
  readonly context?: C;
  /** Start this stream over (zero state, empty window) before this step: a gap in its data. */
  readonly resetBefore?: boolean;
  /** The stream's slot (`StepRunner.slotOf`), when the caller took it already. */
  readonly slot?: number;
}

/**
 * What a step produced.
 * - `ok`: `output` holds the model's output for this step.
 * - `warming`: a windowed stream has fewer steps than the window; no output yet.
 * - `reset`: the model produced NaN or Infinity (`reason` says where); nothing
 *   was committed and the stream's state was reset to zero.
 */
export interface StepResult<C = unknown> {
  readonly streamId: string;
  readonly status: 'ok' | 'warming' | 'reset';
  readonly output: Float32Array | null;
  readonly reason?: 'non_finite_output' | 'non_finite_state';
  /** The request's `context`. */
  readonly context?: C;
}
