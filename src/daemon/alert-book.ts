import type { TidecastConfig } from '../config/config.js';
import type { ModelCard } from '../inference/card.js';
import type { Logger } from '../log.js';

/** One entry of `alerts` in the config. */
export type AlertConfig = TidecastConfig['alerts'][number];

/** A forecast's labels (classification cells), as the output head reads them. */
type Labels = ReadonlyArray<readonly [string, Readonly<Record<string, number>>] | null>;

/** An alert of one model, resolved against its card. */
export interface AlertRule {
  readonly config: AlertConfig;
  readonly name: string;
  /** P(target > threshold), P(target < threshold), or P(label). */
  readonly kind: 'above' | 'below' | 'label';
  readonly threshold: number;
  readonly label: string | null;
  /** Per watched horizon, the cell's index in the forecast vector. */
  readonly cells: readonly number[];
  readonly horizons: readonly number[];
  /** On at a probability ≥ fire, off below clear. */
  readonly fire: number;
  readonly clear: number;
}

/** A stream's alert state that changed, or was evaluated for the first time since the stream came. */
export interface AlertChange {
  readonly rule: AlertRule;
  readonly on: boolean;
  /** The probability that moved it (the largest over the horizons) and the horizon it came from. */
  readonly probability: number;
  readonly horizon: number;
  /** Whether the state was on or off before; null: first evaluation (published, but not an event unless on). */
  readonly was: boolean | null;
}

const UNSEEN = 0;
const OFF = 1;
const ON = 2;

/**
 * P(Y ≤ x) for a forecast distribution known by quantiles: `xs` ascending at
 * probabilities `ps` (ascending, in (0, 1)). Linear between them;
 * beyond the outermost, an exponential tail through the two outermost points
 * (the tail of a Laplace distribution), so that the probability of a
 * threshold past the widest interval still falls off with its distance.
 */
export function quantileCdf(x: number, xs: ArrayLike<number>, ps: ArrayLike<number>, n = xs.length): number {
  const first = xs[0]!;
  const last = xs[n - 1]!;
  if (x < first) {
    const w = n > 1 ? xs[1]! - first : 0;
    if (!(w > 0)) return 0;
    return ps[0]! * Math.exp(((x - first) * Math.log(ps[1]! / ps[0]!)) / w);
  }
  if (x >= last) {
    const w = n > 1 ? last - xs[n - 2]! : 0;
    if (!(w > 0)) return x > last ? 1 : ps[n - 1]!;
    return 1 - (1 - ps[n - 1]!) * Math.exp((-(x - last) * Math.log((1 - ps[n - 2]!) / (1 - ps[n - 1]!))) / w);
  }
  let i = 0;
  while (i < n - 2 && x >= xs[i + 1]!) i++;
  const a = xs[i]!;
  const b = xs[i + 1]!;
  return b > a ? ps[i]! + ((x - a) / (b - a)) * (ps[i + 1]! - ps[i]!) : ps[i + 1]!;
}

/** A 32-bit FNV-1a hash of a string: the alerts' signature in a checkpoint. */
function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The threshold alerts of one model, per stream. Each forecast gives, per
 * alert, the probability that its target crosses the threshold at each
 * watched horizon, from the forecast's prediction intervals read as
 * quantiles (the bounds of each level at (1 ∓ level)/2, the forecast itself
 * as the median: `quantileCdf`), or, for a classification target, its
 * label's probability; the largest over the horizons decides. An alert turns
 * on at `probability` and off below `clearProbability` (hysteresis, so a
 * probability hovering at the mark does not flap). Without intervals (a
 * card without calibration, or `intervals.levels: []`) a numeric alert's
 * probability is 1 when the point forecast crosses and 0 otherwise.
 *
 * State: one byte per alert and stream (unseen, off, on), checkpointed with
 * the stream's open forecasts (`exportStream`) and kept across a hot reload.
 */
export class AlertBook {
  readonly model: string;
  readonly #configs: readonly AlertConfig[];
  readonly #log: Logger;
  #rules: AlertRule[] = [];
  /** Per rule: the streams it watches (null: all), and the route it is limited to. */
  #streams: Array<ReadonlySet<string> | null> = [];
  readonly #state = new Map<string, Uint8Array>();
  #signature = 0;
  /** Streams with each rule on. */
  #onCount: number[] = [];
  /** Scratch for a cell's quantiles. */
  #xs = new Float64Array(0);
  #ps = new Float64Array(0);

  constructor(model: string, configs: readonly AlertConfig[], log: Logger) {
    this.model = model;
    this.#configs = configs.filter((c) => c.model === model);
    this.#log = log;
  }

  get rules(): readonly AlertRule[] {
    return this.#rules;
  }

  /** Whether any alert watches this model. */
  get active(): boolean {
    return this.#rules.length > 0;
  }

  /**
   * Resolve the alerts against a (hot-reloaded) card: a target or horizon the
   * card lacks is an error at start (`problems`), and after a reload the
   * alert is left out with a warning. Streams keep their states when the
   * alerts stay the same.
   */
  use(card: ModelCard, levels: readonly number[] | null, problems?: string[]): void {
    const rules: AlertRule[] = [];
    for (const c of this.#configs) {
      const t = card.targets.find((x) => x.name === c.target);
      const horizons = [...(c.horizons ?? card.horizons.filter((h) => h > 0))].sort((a, b) => a - b);
      const problem = !t
        ? `target "${c.target}" is not one of the model's (${card.targets.map((x) => x.name).join(', ')})`
        : c.label !== undefined && !t.labels
          ? `target "${c.target}" is not a classification target, so it has no label "${c.label}"`
          : c.label !== undefined && !t.labels!.includes(c.label)
            ? `label "${c.label}" is not one of ${c.target}'s (${t.labels!.join(', ')})`
            : c.label === undefined && t.labels
              ? `target "${c.target}" is a classification target: alert on a label, not above or below`
              : horizons.find((h) => !card.horizons.includes(h)) !== undefined
                ? `horizon ${horizons.find((h) => !card.horizons.includes(h))} is not one of the model's (${card.horizons.join(', ')})`
                : null;
      if (problem) {
        if (problems) problems.push(`alerts "${c.name}": ${problem}`);
        else this.#log.warn({ alert: c.name, model: this.model, problem }, 'alert left out: the reloaded model does not have what it watches');
        continue;
      }
      const ti = card.targets.indexOf(t!);
      rules.push({
        config: c,
        name: c.name,
        kind: c.label !== undefined ? 'label' : c.above !== undefined ? 'above' : 'below',
        threshold: c.above ?? c.below ?? NaN,
        label: c.label ?? null,
        horizons,
        cells: horizons.map((h) => card.horizons.indexOf(h) * card.targets.length + ti),
        fire: c.probability,
        clear: c.clearProbability ?? Math.max(0, c.probability - 0.1),
      });
      if (!levels && c.label === undefined && !problems) this.#log.warn({ alert: c.name, model: this.model }, 'the model has no prediction intervals: the alert follows the point forecast (probability 0 or 1)');
    }
    const signature = fnv(JSON.stringify(rules.map((r) => [r.name, r.kind, r.threshold, r.label, r.horizons, r.fire, r.clear])));
    if (signature !== this.#signature) {
      // Other alerts: every stream starts unseen (its state is published again at its next forecast).
      this.#state.clear();
      this.#onCount = rules.map(() => 0);
    }
    this.#signature = signature;
    this.#rules = rules;
    this.#streams = rules.map((r) => (r.config.streams ? new Set(r.config.streams) : null));
    const n = (levels?.length ?? 0) * 2 + 1;
    this.#xs = new Float64Array(n);
    this.#ps = new Float64Array(n);
    if (levels) {
      const L = levels.length;
      // Quantile probabilities, ascending: the widest level's lower bound first.
      for (let l = 0; l < L; l++) {
        this.#ps[L - 1 - l] = (1 - levels[l]!) / 2;
        this.#ps[L + 1 + l] = (1 + levels[l]!) / 2;
      }
      this.#ps[L] = 0.5;
    }
  }

  /** Streams with each alert on, by alert name. */
  onCounts(): Array<[string, number]> {
    return this.#rules.map((r, i) => [r.name, this.#onCount[i]!]);
  }

  /**
   * A stream's forecast: each alert that watches it is evaluated, and the
   * ones whose state changed (or that had none yet) are added to `out`.
   * `bounds`: the forecast's intervals (`ScoreBook.bounds` layout), with
   * `levels` ascending; null without intervals.
   */
  evaluate(stream: string, route: string, values: ArrayLike<number>, labels: Labels | null, bounds: Float64Array | null, levels: readonly number[] | null, out: AlertChange[]): void {
    let st = this.#state.get(stream);
    for (let r = 0; r < this.#rules.length; r++) {
      const rule = this.#rules[r]!;
      if (rule.config.route !== undefined && rule.config.route !== route) continue;
      if (this.#streams[r] && !this.#streams[r]!.has(stream)) continue;
      let best = -1;
      let horizon = rule.horizons[0]!;
      for (let i = 0; i < rule.cells.length; i++) {
        const p = this.#probability(rule, rule.cells[i]!, values, labels, bounds, levels);
        if (p > best) {
          best = p;
          horizon = rule.horizons[i]!;
        }
      }
      st ??= this.#hold(stream);
      const was = st[r]!;
      const on = was === ON ? best >= rule.clear : best >= rule.fire;
      const now = on ? ON : OFF;
      if (now === was) continue;
      st[r] = now;
      if (was === ON) this.#onCount[r]!--;
      if (on) this.#onCount[r]!++;
      out.push({ rule, on, probability: best, horizon, was: was === UNSEEN ? null : was === ON });
    }
  }

  #hold(stream: string): Uint8Array {
    const st = new Uint8Array(this.#rules.length);
    this.#state.set(stream, st);
    return st;
  }

  #probability(rule: AlertRule, k: number, values: ArrayLike<number>, labels: Labels | null, bounds: Float64Array | null, levels: readonly number[] | null): number {
    if (rule.kind === 'label') return labels?.[k]?.[1][rule.label!] ?? 0;
    const y = values[k]!;
    const L = levels?.length ?? 0;
    const at = k * L * 2;
    if (!bounds || L === 0 || Number.isNaN(bounds[at]!)) return (rule.kind === 'above' ? y > rule.threshold : y < rule.threshold) ? 1 : 0;
    const xs = this.#xs;
    for (let l = 0; l < L; l++) {
      xs[L - 1 - l] = bounds[at + 2 * l]!;
      xs[L + 1 + l] = bounds[at + 2 * l + 1]!;
    }
    // The forecast as the median, kept inside the narrowest interval.
    xs[L] = Math.min(Math.max(y, xs[L - 1]!), xs[L + 1]!);
    for (let i = 1; i < xs.length; i++) if (xs[i]! < xs[i - 1]!) xs[i] = xs[i - 1]!;
    const below = quantileCdf(rule.threshold, xs, this.#ps);
    return rule.kind === 'above' ? 1 - below : below;
  }

  /** A stream's alert states for a checkpoint: the alerts' signature (4 bytes) and a byte per alert; undefined when it has none. */
  exportStream(stream: string): Buffer | undefined {
    const st = this.#state.get(stream);
    if (!st) return undefined;
    const out = Buffer.allocUnsafe(4 + st.length);
    out.writeUInt32LE(this.#signature, 0);
    out.set(st, 4);
    return out;
  }

  /** Restore a stream's alert states; ignored when they were saved for other alerts. */
  importStream(stream: string, saved: Uint8Array): void {
    if (saved.byteLength !== 4 + this.#rules.length || Buffer.from(saved.buffer, saved.byteOffset, 4).readUInt32LE(0) !== this.#signature) return;
    const st = this.#state.get(stream) ?? this.#hold(stream);
    for (let r = 0; r < this.#rules.length; r++) {
      if (st[r] === ON) this.#onCount[r]!--;
      st[r] = saved[4 + r]!;
      if (st[r] === ON) this.#onCount[r]!++;
    }
  }

  /** Forget a stream (evicted or forgotten). */
  release(stream: string): void {
    const st = this.#state.get(stream);
    if (!st) return;
    st.forEach((s, r) => s === ON && this.#onCount[r]!--);
    this.#state.delete(stream);
  }
}
