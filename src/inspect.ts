import { statSync } from 'node:fs';
import path from 'node:path';
import type { LoadedModel } from './inference/model.js';
import { knownProviders } from './inference/providers.js';

/** What `tidecast inspect --json` prints: stable keys for scripts. */
export interface InspectReport {
  name: string;
  path: string;
  bytes: number;
  mode: 'stateful' | 'windowed';
  window: number | null;
  layout: string;
  batch: 'dynamic' | number;
  inputs: Array<{ name: string; shape: Array<number | string>; role: string }>;
  outputs: Array<{ name: string; shape: Array<number | string>; role: string }>;
  statePairs: Array<{ input: string; output: string; floatsPerStream: number }>;
  stateBytesPerStream: number;
  featureCount: number;
  outputSize: number | null;
  /** The execution provider the session got, the ones that failed before it, and what this build offers. */
  provider: string;
  providerFailures: Array<{ provider: string; reason: string }>;
  knownProviders: Array<{ name: string; bundled: boolean }>;
  card: null | {
    path: string;
    features: string[];
    /** Inputs derived from each step's event time: `name = fn(cycle)`. */
    calendar: string[];
    targets: string[];
    horizons: number[];
    stepSeconds: number;
    provenance: Record<string, unknown> | null;
    metrics: Record<string, unknown> | null;
    /** Where the held-out residuals that seed prediction intervals come from; null: the card has none (no intervals). */
    calibration: { from: string | null; to: string | null; method: string | null; cells: number } | null;
  };
}

export function inspectReport(model: LoadedModel): InspectReport {
  const sig = model.signature;
  const stateIn = new Map(sig.states.map((s) => [s.input, s]));
  const stateOut = new Map(sig.states.map((s) => [s.output, s]));
  const role = (name: string, dir: 'in' | 'out'): string => {
    if (name === sig.input) return 'features';
    if (name === sig.output) return 'forecast';
    const s = dir === 'in' ? stateIn.get(name) : stateOut.get(name);
    if (s) return dir === 'in' ? `state (from ${s.output})` : `state (to ${s.input})`;
    return 'unused';
  };
  const card = model.card;
  return {
    name: model.name,
    path: model.path,
    bytes: statSync(model.path).size,
    mode: model.mode,
    window: model.window,
    layout: sig.layout,
    batch: sig.fixedBatch ?? 'dynamic',
    inputs: model.inputs.map((t) => ({ name: t.name, shape: [...t.shape], role: role(t.name, 'in') })),
    outputs: model.outputs.map((t) => ({ name: t.name, shape: [...t.shape], role: role(t.name, 'out') })),
    statePairs: sig.states.map((s) => ({ input: s.input, output: s.output, floatsPerStream: s.perStream })),
    stateBytesPerStream: sig.states.reduce((n, s) => n + s.perStream * 4, 0),
    featureCount: sig.featureCount,
    outputSize: sig.outputSize,
    provider: model.provider,
    providerFailures: model.providerFailures.map((f) => ({ ...f })),
    knownProviders: knownProviders(),
    card: card && {
      path: model.cardPath!,
      features: card.features.map((f) => (f.unit ? `${f.name} (${f.unit})` : f.name)),
      calendar: (card.calendar ?? []).map((c) => `${c.name} = ${c.fn}(${c.cycle})`),
      targets: card.targets.map((t) => (t.labels ? `${t.name} [${t.labels.join('|')}] (${t.scores ?? 'logits'})` : t.unit ? `${t.name} (${t.unit})` : t.name)),
      horizons: [...card.horizons],
      stepSeconds: card.stepSeconds,
      provenance: card.provenance ?? null,
      metrics: card.metrics ?? null,
      calibration: card.calibration
        ? { from: card.calibration.from ?? null, to: card.calibration.to ?? null, method: card.calibration.method ?? null, cells: Object.keys(card.calibration.residuals).length }
        : null,
    },
  };
}

const shape = (s: ReadonlyArray<number | string>): string => `[${s.join(', ')}]`;

interface ErrorStats { mae?: number; rmse?: number; accuracy?: number; brier?: number }

/** The human-readable form of the report. */
export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string): void => void lines.push(`${k.padEnd(10)} ${v}`);
  row('model', `${r.name}  (${path.relative(process.cwd(), r.path) || r.path}, ${(r.bytes / 1024).toFixed(1)} KiB)`);
  row(
    'mode',
    r.mode === 'stateful'
      ? 'stateful: one step per run, recurrent state carried between messages'
      : `windowed: the last ${r.window} steps per run (this model cannot stream)`,
  );
  row('layout', `${r.layout}, batch ${r.batch === 'dynamic' ? 'dynamic (streams are batched)' : `fixed at ${r.batch} (streams run one by one)`}`);
  const width = Math.max(...[...r.inputs, ...r.outputs].map((t) => `${t.name} ${shape(t.shape)}`.length));
  r.inputs.forEach((t, i) => row(i === 0 ? 'inputs' : '', `${`${t.name} ${shape(t.shape)}`.padEnd(width)}  ${t.role}`));
  r.outputs.forEach((t, i) => row(i === 0 ? 'outputs' : '', `${`${t.name} ${shape(t.shape)}`.padEnd(width)}  ${t.role}`));
  row('provider', `${r.provider}${r.providerFailures.length > 0 ? ` (fell back: ${r.providerFailures.map((f) => `${f.provider}: ${f.reason}`).join('; ')})` : ''}`);
  const bundled = r.knownProviders.filter((p) => p.bundled).map((p) => p.name);
  const extra = r.knownProviders.filter((p) => !p.bundled).map((p) => p.name);
  row('', `bundled: ${bundled.join(', ')}${extra.length > 0 ? `; after installing their libraries: ${extra.join(', ')}` : ''}`);
  row('state', r.statePairs.length === 0 ? 'none' : `${r.statePairs.map((p) => `${p.input} -> ${p.output}`).join(', ')}; ${r.stateBytesPerStream} bytes per stream`);
  if (!r.card) {
    row('card', 'none (signature detected from the graph; add name.card.json for scaling, units and horizons)');
    return lines.join('\n');
  }
  const c = r.card;
  row('card', path.relative(process.cwd(), c.path) || c.path);
  row('features', c.features.join(', '));
  if (c.calendar.length > 0) row('calendar', `${c.calendar.join(', ')} (UTC, from each step's event time)`);
  row('targets', `${c.targets.join(', ')} at horizons ${c.horizons.join(', ')} (steps of ${c.stepSeconds} s)`);
  const prov = c.provenance as { dataset?: string; file?: string; train?: { from: string; to: string }; test?: { from: string; to: string } } | null;
  if (prov?.dataset) {
    row('data', `${prov.dataset} ${prov.file ?? ''}; train ${prov.train?.from}..${prov.train?.to}, test ${prov.test?.from}..${prov.test?.to}`);
  }
  const test = (c.metrics as { test?: { model: Record<string, ErrorStats>; persistence: Record<string, ErrorStats> } } | null)?.test;
  if (test) {
    // Forecasters report MAE; classifiers accuracy and Brier score.
    const classifier = Object.values(test.model).some((m) => m.accuracy !== undefined);
    lines.push(classifier ? 'test       accuracy, Brier: model / persistence (held-out data)' : 'test MAE   model / persistence (held-out data)');
    const num = (x: number | undefined, d: number): string => (x === undefined ? '-' : x.toFixed(d));
    for (const [k, m] of Object.entries(test.model)) {
      const p = test.persistence[k];
      lines.push(
        classifier
          ? `  ${k.padEnd(14)} ${num(m.accuracy, 3)} / ${num(p?.accuracy, 3)}   ${num(m.brier, 3)} / ${num(p?.brier, 3)}`
          : `  ${k.padEnd(14)} ${num(m.mae, 2).padStart(6)} / ${num(p?.mae, 2)}`,
      );
    }
  }
  const cal = c.calibration;
  row('intervals', cal ? `seeded from ${cal.cells} cells of held-out residuals${cal.from ? ` (${cal.from}..${cal.to})` : ''}${cal.method ? `: ${cal.method}` : ''}` : 'none (the card has no calibration)');
  const intervals = (c.metrics as { test?: { intervals?: Record<string, Record<string, { coverage: number; width: number }>> } } | null)?.test?.intervals;
  if (intervals) {
    const levels = Object.keys(Object.values(intervals)[0] ?? {});
    lines.push(`test       coverage (width) of a fixed interval at those quantiles, at ${levels.join(' / ')}`);
    for (const [k, byLevel] of Object.entries(intervals)) {
      lines.push(`  ${k.padEnd(14)} ${levels.map((l) => `${byLevel[l]!.coverage.toFixed(3)} (${byLevel[l]!.width.toFixed(2)})`).join('   ')}`);
    }
  }
  return lines.join('\n');
}
