import { ErrorCodes, TidecastError } from '../errors.js';

/** A dimension as onnxruntime reports it: a fixed size or a symbolic name. */
export type Dim = number | string;

/** Name and declared shape of one graph input or output. */
export interface TensorInfo {
  readonly name: string;
  readonly shape: readonly Dim[];
}

/** How the card (or config) may pin the mapping when detection cannot. */
export interface SignatureHint {
  input?: string;
  output?: string;
  layout?: 'batch-first' | 'time-major';
  states?: ReadonlyArray<{ input: string; output: string }>;
}

/** One recurrent state carried from a step's output back to the next step's input. */
export interface StatePair {
  readonly input: string;
  readonly output: string;
  readonly shape: readonly Dim[];
  /** Axis of `shape` that indexes streams. */
  readonly batchAxis: number;
  /** Elements one stream owns in this tensor (product of the non-batch dims). */
  readonly perStream: number;
}

/** Everything the engine needs to feed and read a recurrent model. */
export interface ModelSignature {
  readonly input: string;
  readonly output: string;
  /** `none`: the input has no time axis ([batch, features]). */
  readonly layout: 'batch-first' | 'time-major' | 'none';
  readonly inputShape: readonly Dim[];
  readonly inputBatchAxis: number;
  /** -1 when the input has no time axis. */
  readonly inputTimeAxis: number;
  /** A fixed time length declared by the graph (a window), or null when dynamic. */
  readonly fixedTime: number | null;
  readonly featureCount: number;
  readonly outputShape: readonly Dim[];
  readonly outputBatchAxis: number;
  /** -1 when the output has no time axis (many-to-one). */
  readonly outputTimeAxis: number;
  /** Output elements per stream per step, or null when a non-batch dim is symbolic. */
  readonly outputSize: number | null;
  /** Fixed batch size declared by the graph (e.g. 1), or null when dynamic. */
  readonly fixedBatch: number | null;
  readonly states: readonly StatePair[];
}

const DATA_INPUT_NAMES = /^(input|inputs|x|data|features|input_1|serving_default_input.*)$/i;
const DATA_OUTPUT_NAMES = /^(output|outputs|y|out|prediction|predictions|output_1)$/i;
const STATE_LIKE = /(^h0$|^c0$|state|hidden|initial_[hc]|^h_|^c_|_h$|_c$)/i;
const TIME_NAMES = /(time|seq|step|len|window)/i;
const BATCH_NAMES = /(batch|^n$|^b$)/i;

/** Name rules that pair a state input with its output, tried in order. */
const STATE_NAME_RULES: ReadonlyArray<(name: string) => string[]> = [
  (n) => (/^([hc])0$/i.test(n) ? [`${n[0]}n`, `${n[0]}_n`, `${n[0]}1`] : []),
  (n) => (/^initial_([hc])$/i.test(n) ? [`Y_${n.slice(-1)}`] : []),
  (n) => (n.includes('state_in') ? [n.replace('state_in', 'state_out')] : []),
  (n) => (n.includes('_in') ? [n.replace('_in', '_out')] : []),
  (n) => (/^in_/.test(n) ? [n.replace(/^in_/, 'out_')] : []),
  (n) => (n.includes('input') ? [n.replace('input', 'output')] : []),
];

const sameShape = (a: readonly Dim[], b: readonly Dim[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

const fmt = (t: TensorInfo): string => `${t.name} [${t.shape.join(', ')}]`;

function signatureError(message: string): TidecastError {
  return new TidecastError(
    ErrorCodes.SIGNATURE,
    `${message}. Map it explicitly under models.NAME.signature in tidecast.yaml (or signature in the model card): ` +
      'input, output, layout ("batch-first" | "time-major") and states [{input, output}]',
  );
}

function pickDataInput(inputs: readonly TensorInfo[], hint: SignatureHint | undefined): TensorInfo {
  if (hint?.input !== undefined) {
    const found = inputs.find((t) => t.name === hint.input);
    if (!found) throw signatureError(`signature.input "${hint.input}" is not an input of the model (inputs: ${inputs.map(fmt).join('; ')})`);
    return found;
  }
  if (inputs.length === 1) return inputs[0]!;
  const named = inputs.filter((t) => DATA_INPUT_NAMES.test(t.name));
  if (named.length === 1) return named[0]!;
  const notState = inputs.filter((t) => !STATE_LIKE.test(t.name));
  if (notState.length === 1) return notState[0]!;
  throw signatureError(`cannot tell which input carries the features (inputs: ${inputs.map(fmt).join('; ')})`);
}

function stateBatchAxis(shape: readonly Dim[], batchSymbol: string | null): number {
  if (batchSymbol !== null && shape.includes(batchSymbol)) return shape.indexOf(batchSymbol);
  // PyTorch and ONNX RNN ops: [layers * directions, batch, hidden]; Keras/tf2onnx: [batch, hidden].
  return shape.length === 3 ? 1 : 0;
}

function pairStates(
  stateInputs: readonly TensorInfo[],
  outputs: readonly TensorInfo[],
  hint: SignatureHint | undefined,
): Array<{ input: TensorInfo; output: TensorInfo }> {
  const byName = new Map(outputs.map((o) => [o.name, o]));
  const used = new Set<string>();
  const pairs: Array<{ input: TensorInfo; output: TensorInfo }> = [];
  const unpaired: TensorInfo[] = [];
  for (const input of stateInputs) {
    const hinted = hint?.states?.find((s) => s.input === input.name);
    let output: TensorInfo | undefined;
    if (hinted) {
      output = byName.get(hinted.output);
      if (!output) throw signatureError(`signature.states maps "${input.name}" to "${hinted.output}", which is not an output of the model`);
    } else {
      for (const rule of STATE_NAME_RULES) {
        output = rule(input.name).map((n) => byName.get(n)).find((o) => o !== undefined && !used.has(o.name));
        if (output) break;
      }
    }
    if (output && !used.has(output.name)) {
      if (!sameShape(input.shape, output.shape)) {
        throw new TidecastError(
          ErrorCodes.STATE_UNPAIRED,
          `state input ${fmt(input)} pairs by name with ${fmt(output)}, but their shapes differ: ` +
            'the output cannot be fed back as the next step\'s state. If another output carries it, ' +
            'pair them under models.NAME.signature.states [{input, output}] in tidecast.yaml (or signature.states in the model card)',
        );
      }
      used.add(output.name);
      pairs.push({ input, output });
    } else {
      unpaired.push(input);
    }
  }
  // Remaining state inputs pair with the one unused output of the same shape.
  for (const input of unpaired) {
    const candidates = outputs.filter((o) => !used.has(o.name) && sameShape(o.shape, input.shape));
    if (candidates.length !== 1) {
      throw new TidecastError(
        ErrorCodes.STATE_UNPAIRED,
        `state input ${fmt(input)} has ${candidates.length === 0 ? 'no' : 'more than one'} output of the same shape ` +
          `to carry it to the next step (outputs: ${outputs.map(fmt).join('; ')}). ` +
          'Pair it under models.NAME.signature.states [{input, output}] in tidecast.yaml (or signature.states in the model card)',
      );
    }
    used.add(candidates[0]!.name);
    pairs.push({ input, output: candidates[0]! });
  }
  return pairs;
}

function layoutOf(shape: readonly Dim[], batchSymbol: string | null, hint: SignatureHint | undefined): [number, number] {
  if (shape.length === 2) return [0, -1];
  if (shape.length !== 3) throw signatureError(`the data input has rank ${shape.length}; expected [batch, time, features], [time, batch, features] or [batch, features]`);
  if (hint?.layout) return hint.layout === 'batch-first' ? [0, 1] : [1, 0];
  const [d0, d1] = shape;
  if (batchSymbol !== null) {
    if (d0 === batchSymbol) return [0, 1];
    if (d1 === batchSymbol) return [1, 0];
  }
  if (typeof d1 === 'string' && TIME_NAMES.test(d1)) return [0, 1];
  if (typeof d0 === 'string' && TIME_NAMES.test(d0)) return [1, 0];
  if (typeof d0 === 'string' && BATCH_NAMES.test(d0)) return [0, 1];
  if (typeof d1 === 'string' && BATCH_NAMES.test(d1)) return [1, 0];
  // A fixed 1 beside a symbolic dim is a batch-1 export with a dynamic time axis.
  if (d0 === 1 && typeof d1 === 'string') return [0, 1];
  if (d1 === 1 && typeof d0 === 'string') return [1, 0];
  if (d0 === 1 && d1 === 1) return [0, 1]; // one stream, one step: either reading is the same
  throw signatureError(`cannot tell the batch axis from the time axis of input [${shape.join(', ')}]`);
}

function outputAxes(
  out: TensorInfo,
  input: { shape: readonly Dim[]; batchAxis: number; timeAxis: number },
  batchSymbol: string | null,
): [number, number] {
  const s = out.shape;
  const bSym = batchSymbol ?? (typeof input.shape[input.batchAxis] === 'string' ? (input.shape[input.batchAxis] as string) : null);
  const tDim = input.timeAxis >= 0 ? input.shape[input.timeAxis] : undefined;
  const tSym = typeof tDim === 'string' ? tDim : null;
  let batchAxis = bSym !== null ? s.indexOf(bSym) : -1;
  let timeAxis = tSym !== null ? s.indexOf(tSym) : -1;
  if (batchAxis < 0) {
    // ONNX RNN/GRU/LSTM Y is [seq, directions, batch, hidden]; otherwise follow the input.
    batchAxis = s.length === 4 ? 2 : s.length === input.shape.length ? input.batchAxis : 0;
  }
  if (timeAxis < 0 && input.timeAxis >= 0 && s.length >= 3) {
    // A declared time axis without a shared symbol: same position as the input's.
    const guess = s.length === 4 ? 0 : input.timeAxis;
    if (guess !== batchAxis && (s[guess] === tDim || s[guess] === 1 || typeof s[guess] === 'string')) timeAxis = guess;
  }
  return [batchAxis, timeAxis];
}

function perStreamSize(shape: readonly Dim[], skip: readonly number[]): number | null {
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    if (skip.includes(i)) continue;
    const d = shape[i];
    if (typeof d !== 'number') return null;
    n *= d;
  }
  return n;
}

/**
 * Work out which input carries features, which output carries forecasts, which
 * input/output pairs are recurrent state, and where the batch and time axes are.
 * Names common to PyTorch (`h0/c0 -> hn/cn`), ONNX RNN ops (`initial_h -> Y_h`)
 * and hand-built graphs (`state_in* -> state_out*`) pair first; then shapes.
 */
export function detectSignature(
  inputs: readonly TensorInfo[],
  outputs: readonly TensorInfo[],
  hint?: SignatureHint,
): ModelSignature {
  if (inputs.length === 0 || outputs.length === 0) throw signatureError('the model has no inputs or no outputs');
  const dataInput = pickDataInput(inputs, hint);
  const stateInputs = inputs.filter((t) => t !== dataInput);
  const pairs = pairStates(stateInputs, outputs, hint);
  const stateOutputs = new Set(pairs.map((p) => p.output.name));

  let dataOutput: TensorInfo | undefined;
  if (hint?.output !== undefined) {
    dataOutput = outputs.find((o) => o.name === hint.output);
    if (!dataOutput) throw signatureError(`signature.output "${hint.output}" is not an output of the model`);
  } else {
    const rest = outputs.filter((o) => !stateOutputs.has(o.name));
    dataOutput = rest.length === 1 ? rest[0] : rest.find((o) => DATA_OUTPUT_NAMES.test(o.name));
    if (!dataOutput) throw signatureError(`cannot tell which output carries the forecast (outputs: ${outputs.map(fmt).join('; ')})`);
  }

  // The symbol that names the batch dim in the state tensors, when they share one with the input.
  let batchSymbol: string | null = null;
  for (const p of pairs) {
    const d = p.input.shape[stateBatchAxis(p.input.shape, null)];
    if (typeof d === 'string' && dataInput.shape.includes(d)) batchSymbol = d;
  }
  const [inputBatchAxis, inputTimeAxis] = layoutOf(dataInput.shape, batchSymbol, hint);
  const featureDim = dataInput.shape[dataInput.shape.length - 1];
  if (typeof featureDim !== 'number') throw signatureError(`the feature axis of ${fmt(dataInput)} is symbolic; tidecast needs a fixed feature count`);
  const batchDim = dataInput.shape[inputBatchAxis];
  const timeDim = inputTimeAxis >= 0 ? dataInput.shape[inputTimeAxis] : undefined;

  const states: StatePair[] = pairs.map(({ input, output }) => {
    const batchAxis = stateBatchAxis(input.shape, batchSymbol ?? (typeof batchDim === 'string' ? batchDim : null));
    const perStream = perStreamSize(input.shape, [batchAxis]);
    if (perStream === null) throw signatureError(`state ${fmt(input)} has a symbolic dim besides batch; its size per stream must be fixed`);
    return { input: input.name, output: output.name, shape: input.shape, batchAxis, perStream };
  });

  const [outputBatchAxis, outputTimeAxis] = outputAxes(dataOutput, { shape: dataInput.shape, batchAxis: inputBatchAxis, timeAxis: inputTimeAxis }, batchSymbol);
  const layout = inputTimeAxis < 0 ? 'none' : inputBatchAxis === 0 ? 'batch-first' : 'time-major';
  return {
    input: dataInput.name,
    output: dataOutput.name,
    layout,
    inputShape: dataInput.shape,
    inputBatchAxis,
    inputTimeAxis,
    fixedTime: typeof timeDim === 'number' ? timeDim : null,
    featureCount: featureDim,
    outputShape: dataOutput.shape,
    outputBatchAxis,
    outputTimeAxis,
    outputSize: perStreamSize(dataOutput.shape, outputTimeAxis >= 0 ? [outputBatchAxis, outputTimeAxis] : [outputBatchAxis]),
    fixedBatch: typeof batchDim === 'number' ? batchDim : null,
    states,
  };
}
