/**
 * How the data path's rows cross to the writer thread: a batch or a
 * checkpoint is packed into a few columns (strings, Float64Arrays, one byte
 * buffer for every blob) on the main thread, posted as one message with its
 * buffers transferred, and unpacked row by row on the other side. One message
 * per batch, not per row; no object per row in the structured clone.
 */
import type { AccuracyDelta, EventRow, ForecastRow, ModelStateRow, StepRow, StreamStateRow } from './rows.js';
import type { ForecastLayout } from './ids.js';
import { ErrorCodes, TidecastError } from '../errors.js';

/**
 * Names joined into one string: one string to clone per batch, not one per
 * row. A stream id holds no control character (Ingest.admit refuses them).
 */
const NAME_SEPARATOR = '\n';

/** The names `joinNames` joined, `n` of them. */
export function splitNames(joined: string, n: number): string[] {
  return n === 0 ? [] : joined.split(NAME_SEPARATOR);
}

/**
 * The names `joinNames` joined, `n` of them, by index, split on first use:
 * a row whose stream the writer's ids know by its slot needs no name.
 */
export function namesOnDemand(joined: string, n: number): (i: number) => string {
  let names: string[] | null = null;
  return (i) => (names ??= splitNames(joined, n))[i]!;
}

function joinNames(names: readonly string[]): string {
  for (const name of names) if (name.includes(NAME_SEPARATOR)) throw new TidecastError(ErrorCodes.INTERNAL, `stream id ${JSON.stringify(name.slice(0, 100))} holds a line break`);
  return names.join(NAME_SEPARATOR);
}

/** One model's batch of steps and forecasts, packed. */
export interface PackedBatch {
  readonly steps: number;
  /** The steps' streams, joined (`splitNames`). */
  readonly stepStreams: string;
  /** The batch's routes, and per step an index into them. */
  readonly routes: string[];
  readonly stepRoute: Uint16Array;
  /** Per step, an index into `featureSets`. */
  readonly stepSet: Uint16Array;
  readonly featureSets: string[][];
  /** Per step: ts, receivedAt, filled mask. */
  readonly stepNums: Float64Array;
  /** Per step: its stream's slot and generation (`StepRow.ref`, `gen`), NaN when the row carries none. */
  readonly stepRefs: Float64Array;
  /** Every step's values in its feature set's order, one after the other (NaN: absent). */
  readonly stepValues: Float64Array;
  readonly forecasts: number;
  /** The forecasts' streams, joined (`splitNames`). */
  readonly forecastStreams: string;
  readonly issuedAt: Float64Array;
  /** Per forecast: its stream's slot and generation, as `stepRefs`. */
  readonly forecastRefs: Float64Array;
  /** Per forecast, one value per layout cell. */
  readonly forecastValues: Float64Array;
  readonly cells: number;
  /** Per forecast, its labels as JSON (classification models), or null. */
  readonly labels: Array<string | null> | null;
  /** Per forecast, `boundsPer` interval bounds (`ForecastRow.bounds`); null when the batch has none. */
  readonly bounds: Float64Array | null;
  readonly boundsPer: number;
  readonly events: EventRow[];
}

export function packBatch(steps: readonly StepRow[], forecasts: readonly ForecastRow[], events: readonly EventRow[], layout?: ForecastLayout): PackedBatch {
  const sets: Array<readonly string[]> = [];
  const stepSet = new Uint16Array(steps.length);
  const stepNums = new Float64Array(steps.length * 3);
  const stepRefs = new Float64Array(steps.length * 2);
  let nValues = 0;
  for (const st of steps) nValues += st.features.length;
  const stepValues = new Float64Array(nValues);
  const stepStreams = new Array<string>(steps.length);
  const routes: string[] = [];
  const stepRoute = new Uint16Array(steps.length);
  let v = 0;
  for (let i = 0; i < steps.length; i++) {
    const st = steps[i]!;
    stepStreams[i] = st.stream;
    let r = routes.indexOf(st.route);
    if (r < 0) r = routes.push(st.route) - 1;
    stepRoute[i] = r;
    let k = sets.indexOf(st.features);
    if (k < 0) k = sets.push(st.features) - 1;
    stepSet[i] = k;
    stepNums[i * 3] = st.ts;
    stepNums[i * 3 + 1] = st.receivedAt;
    stepNums[i * 3 + 2] = filledMask(st);
    stepRefs[i * 2] = st.ref ?? NaN;
    stepRefs[i * 2 + 1] = st.gen ?? NaN;
    for (const f of st.features) stepValues[v++] = st.values[f] ?? NaN;
  }
  const cells = forecasts.length > 0 ? forecasts[0]!.values.length : 0;
  const forecastValues = new Float64Array(forecasts.length * cells);
  const issuedAt = new Float64Array(forecasts.length);
  const forecastRefs = new Float64Array(forecasts.length * 2);
  const forecastStreams = new Array<string>(forecasts.length);
  let labels: Array<string | null> | null = null;
  const boundsPer = forecasts[0]?.bounds?.length ?? 0;
  const bounds = boundsPer > 0 ? new Float64Array(forecasts.length * boundsPer) : null;
  if (bounds && layout?.cells.length !== cells) throw new TidecastError(ErrorCodes.INTERNAL, `a batch with intervals has ${layout?.cells.length ?? 0} layout cells for ${cells} values`);
  for (let i = 0; i < forecasts.length; i++) {
    const f = forecasts[i]!;
    forecastStreams[i] = f.stream;
    issuedAt[i] = f.issuedAt;
    forecastRefs[i * 2] = f.ref ?? NaN;
    forecastRefs[i * 2 + 1] = f.gen ?? NaN;
    if (f.values.length !== cells) throw new TidecastError(ErrorCodes.INTERNAL, `forecast of ${f.stream} has ${f.values.length} values, the batch's layout ${cells}`);
    forecastValues.set(f.values, i * cells);
    if (bounds) {
      if (f.bounds?.length !== boundsPer) throw new TidecastError(ErrorCodes.INTERNAL, `forecast of ${f.stream} has ${f.bounds?.length ?? 0} interval bounds, the batch's first ${boundsPer}`);
      bounds.set(f.bounds, i * boundsPer);
    }
    if (f.labels) (labels ??= new Array<string | null>(forecasts.length).fill(null))[i] = JSON.stringify(f.labels);
  }
  return {
    steps: steps.length,
    stepStreams: joinNames(stepStreams),
    routes,
    stepRoute,
    stepSet,
    featureSets: sets.map((s) => [...s]),
    stepNums,
    stepRefs,
    stepValues,
    forecasts: forecasts.length,
    forecastStreams: joinNames(forecastStreams),
    issuedAt,
    forecastRefs,
    forecastValues,
    cells,
    labels,
    bounds,
    boundsPer,
    events: [...events],
  };
}

/** Per layout cell, the scale its interval bounds are stored at (`ForecastLayout`), 0 for a cell without intervals. */
export function boundScales(layout: ForecastLayout): number[] {
  return layout.cells.map((c) => (c.length === 5 ? c[4] : 0));
}

/** The buffers of a packed batch, for postMessage's transfer list. */
export function batchTransfer(b: PackedBatch): ArrayBuffer[] {
  const buffers = [b.stepRoute.buffer, b.stepSet.buffer, b.stepNums.buffer, b.stepRefs.buffer, b.stepValues.buffer, b.issuedAt.buffer, b.forecastRefs.buffer, b.forecastValues.buffer] as ArrayBuffer[];
  if (b.bounds) buffers.push(b.bounds.buffer as ArrayBuffer);
  return buffers;
}

/** Bit i set: the step's feature i (in `features` order) was forward-filled (exact for the first 53 features). */
function filledMask(st: StepRow): number {
  let mask = 0;
  for (const f of st.filled) {
    const i = st.features.indexOf(f);
    if (i >= 0 && i < 53) mask += 2 ** i;
  }
  return mask;
}

/**
 * A step's values as the JSON array `step_inputs.inputs` holds (`text`:
 * String, JSON's form of a finite number); NaN and ±Infinity become null
 * (an absent value; the CHECK on forecasts refuses it there).
 */
export function valuesJson(values: Float64Array, from: number, n: number, text: (x: number) => string = String): string {
  let out = '[';
  for (let i = 0; i < n; i++) {
    const x = values[from + i]!;
    out += (i > 0 ? ',' : '') + (Number.isFinite(x) ? text(x) : 'null');
  }
  return out + ']';
}

/**
 * A forecast's values as the JSON array `forecasts.vals` holds, each with 9
 * significant digits: a network's output is a float32 (7 digits; 9 name every
 * float32 exactly), scaled back to physical units in float64, and the 17
 * digits of that double add nothing but text (and twice the time to format).
 */
export function forecastJson(values: Float64Array, from: number, n: number): string {
  return valuesJson(values, from, n, float32Text);
}

/**
 * A forecast's intervals as `forecasts.bounds` holds them (schema 12): a
 * BLOB of one byte, the width w (2 or 4), then `per` signed little-endian
 * integers of w bytes per layout cell (lower and upper per level), each bound
 * × the cell's scale (bounds come rounded to it: `IntervalBook`); 0 for a cell
 * without intervals (scale 0). Two bytes a bound when every one fits, four
 * otherwise. Null when a bound is not finite or does not fit in four bytes
 * (never stored as a number it is not). The views decode it (`BOUND_SQL`).
 * A BLOB, not JSON text: 49 bytes for 6 cells × 2 levels where the JSON took
 * about 150, and no text to build (bench/store). The Buffer is this module's
 * own and the next call writes over it: bind it (SQLite copies a bound blob)
 * before calling again.
 */
export function boundsBlob(bounds: Float64Array, from: number, scales: readonly number[], per: number): Buffer | null {
  const n = scales.length * per;
  if (boundInts.length < n) boundInts = new Float64Array(n);
  for (let c = 0; c < scales.length; c++) {
    const s = scales[c]!;
    for (let k = 0; k < per; k++) boundInts[c * per + k] = s === 0 ? 0 : Math.round(bounds[from + c * per + k]! * s);
  }
  return packBoundInts(boundInts, n);
}

/**
 * The first `n` integers of `ints` as a `boundsBlob` (its Buffer reused by
 * the next call, as there); null when one is not finite or needs more than
 * four bytes.
 */
export function packBoundInts(ints: Float64Array, n: number): Buffer | null {
  let width = 2;
  for (let i = 0; i < n; i++) {
    const x = ints[i]!;
    if (!Number.isFinite(x) || x < -0x80000000 || x > 0x7fffffff) return null;
    if (x < -0x8000 || x > 0x7fff) width = 4;
  }
  // One Buffer per length, written over: a Buffer per forecast row cost the writer thread about 1 µs of a message (bench e2e profile).
  const length = 1 + n * width;
  let out = blobs.get(length);
  if (!out) blobs.set(length, (out = Buffer.alloc(length)));
  out[0] = width;
  if (width === 2) {
    for (let i = 0; i < n; i++) {
      // Little-endian; a byte store keeps the low 8 bits, so negative integers come out in two's complement.
      const x = ints[i]!;
      out[1 + 2 * i] = x;
      out[2 + 2 * i] = x >> 8;
    }
  } else for (let i = 0; i < n; i++) out.writeInt32LE(ints[i]!, 1 + 4 * i);
  return out;
}

/** `packBoundInts`' Buffers, by length. */
const blobs = new Map<number, Buffer>();

/** `boundsBlob`'s integers before they are written (grown as needed). */
let boundInts = new Float64Array(64);

/** Significant digits of a stored or published forecast value: 9 name every float32 exactly. */
export const FORECAST_DIGITS = 9;

/** A forecast value as the store keeps it (`float32Text` reads back as this number): for messages and class probabilities, so that they agree with the row. */
export function storedValue(x: number): number {
  return Number(x.toPrecision(FORECAST_DIGITS));
}

/** `x` with 9 significant digits, trailing zeros of its fraction dropped ('12.5000000' → '12.5', '1.00000000e+21' → '1e+21'). */
export function float32Text(x: number): string {
  const s = x.toPrecision(FORECAST_DIGITS);
  const e = s.indexOf('e');
  const mantissaEnd = e < 0 ? s.length : e;
  if (s.lastIndexOf('.', mantissaEnd) < 0) return s;
  let end = mantissaEnd;
  while (s.charCodeAt(end - 1) === 48) end--; // '0'
  if (s.charCodeAt(end - 1) === 46) end--; // '.'
  return e < 0 ? s.slice(0, end) : s.slice(0, end) + s.slice(e);
}

/** A checkpoint's streams and error sums, packed. */
export interface PackedCheckpoint {
  readonly groups: string[];
  readonly streams: string[];
  /** Per stream: resident (0/1), lastActive, assembler blob index, model count, seq. */
  readonly streamNums: Float64Array;
  /** Per stream: the assembler as JSON text, or null when it is in `blobs`. */
  readonly assemblerText: Array<string | null>;
  readonly modelNames: string[];
  readonly fingerprints: string[];
  /** Per model state: filled, state blob index, pending blob index (-1: none). */
  readonly modelNums: Float64Array;
  /** Every blob's bytes, one after the other; `blobEnds[i]` is where blob i ends. */
  readonly blobs: Uint8Array;
  readonly blobEnds: Float64Array;
  readonly accuracy: PackedAccuracy;
}

export interface PackedAccuracy {
  readonly streams: string[];
  readonly models: string[];
  readonly targets: string[];
  /** Per delta: horizon, bucket, n, sumAbs, sumSq, sumErr, sumPAbs, lastTargetTime. */
  readonly nums: Float64Array;
}

const ACC_NUMS = 8;
const STREAM_NUMS = 5;

export function packCheckpoint(rows: readonly StreamStateRow[], accuracy: readonly AccuracyDelta[]): PackedCheckpoint {
  const blobs: Uint8Array[] = [];
  let size = 0;
  const blob = (b: Uint8Array): number => {
    blobs.push(b);
    size += b.byteLength;
    return blobs.length - 1;
  };
  const groups: string[] = [];
  const streams: string[] = [];
  const assemblerText: Array<string | null> = [];
  const streamNums = new Float64Array(rows.length * STREAM_NUMS);
  const modelNames: string[] = [];
  const fingerprints: string[] = [];
  const modelNums: number[] = [];
  rows.forEach((r, i) => {
    groups.push(r.group);
    streams.push(r.stream);
    const text = typeof r.assembler === 'string';
    assemblerText.push(text ? (r.assembler as string) : null);
    const o = i * STREAM_NUMS;
    streamNums[o] = r.resident ? 1 : 0;
    streamNums[o + 1] = r.lastActive;
    streamNums[o + 2] = text ? -1 : blob(r.assembler as Buffer);
    streamNums[o + 3] = r.models.length;
    streamNums[o + 4] = r.seq ?? 0;
    for (const m of r.models) {
      modelNames.push(m.model);
      fingerprints.push(m.fingerprint);
      modelNums.push(m.filled, blob(m.state), m.pending ? blob(m.pending) : -1);
    }
  });
  const all = new Uint8Array(size);
  const blobEnds = new Float64Array(blobs.length);
  let at = 0;
  blobs.forEach((b, i) => {
    all.set(b, at);
    at += b.byteLength;
    blobEnds[i] = at;
  });
  return { groups, streams, streamNums, assemblerText, modelNames, fingerprints, modelNums: Float64Array.from(modelNums), blobs: all, blobEnds, accuracy: packAccuracy(accuracy) };
}

function packAccuracy(deltas: readonly AccuracyDelta[]): PackedAccuracy {
  const nums = new Float64Array(deltas.length * ACC_NUMS);
  // Element by element: an array literal per delta (60,000 a checkpoint at 10,000 streams of 6 cells) cost 2 µs of a message's CPU (bench e2e profile).
  for (let i = 0; i < deltas.length; i++) {
    const a = deltas[i]!;
    const o = i * ACC_NUMS;
    nums[o] = a.horizon;
    nums[o + 1] = a.bucket;
    nums[o + 2] = a.n;
    nums[o + 3] = a.sumAbs;
    nums[o + 4] = a.sumSq;
    nums[o + 5] = a.sumErr;
    nums[o + 6] = a.sumPAbs;
    nums[o + 7] = a.lastTargetTime;
  }
  return { streams: deltas.map((a) => a.stream), models: deltas.map((a) => a.model), targets: deltas.map((a) => a.target), nums };
}

/** Whether a packed checkpoint spills a stream (writes it as not resident). */
export function spills(c: PackedCheckpoint): boolean {
  for (let i = 0; i < c.streams.length; i++) if (c.streamNums[i * STREAM_NUMS] === 0) return true;
  return false;
}

export function checkpointTransfer(c: PackedCheckpoint): ArrayBuffer[] {
  return [c.streamNums.buffer, c.modelNums.buffer, c.blobs.buffer, c.blobEnds.buffer, c.accuracy.nums.buffer] as ArrayBuffer[];
}

/** The rows of a packed checkpoint (blobs are views into its byte buffer). */
export function* unpackStreams(c: PackedCheckpoint): IterableIterator<StreamStateRow> {
  const blobAt = (i: number): Buffer => {
    const start = i === 0 ? 0 : c.blobEnds[i - 1]!;
    return Buffer.from(c.blobs.buffer, c.blobs.byteOffset + start, c.blobEnds[i]! - start);
  };
  let m = 0;
  for (let i = 0; i < c.streams.length; i++) {
    const [resident, lastActive, asm, nModels, seq] = c.streamNums.subarray(i * STREAM_NUMS, (i + 1) * STREAM_NUMS) as unknown as [number, number, number, number, number];
    const models: ModelStateRow[] = [];
    for (let k = 0; k < nModels; k++, m++) {
      const [filled, state, pending] = c.modelNums.subarray(m * 3, m * 3 + 3) as unknown as [number, number, number];
      models.push({ model: c.modelNames[m]!, fingerprint: c.fingerprints[m]!, filled, state: blobAt(state), pending: pending < 0 ? null : blobAt(pending) });
    }
    yield { group: c.groups[i]!, stream: c.streams[i]!, resident: resident === 1, lastActive, assembler: asm < 0 ? c.assemblerText[i]! : blobAt(asm), models, seq };
  }
}

export function* unpackAccuracy(a: PackedAccuracy): IterableIterator<AccuracyDelta> {
  for (let i = 0; i < a.streams.length; i++) {
    const n = a.nums.subarray(i * ACC_NUMS, (i + 1) * ACC_NUMS);
    yield { stream: a.streams[i]!, model: a.models[i]!, target: a.targets[i]!, horizon: n[0]!, bucket: n[1]!, n: n[2]!, sumAbs: n[3]!, sumSq: n[4]!, sumErr: n[5]!, sumPAbs: n[6]!, lastTargetTime: n[7]! };
  }
}
