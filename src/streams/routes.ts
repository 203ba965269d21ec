import type { RouteConfig } from '../config/config.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import { TopicPattern, compileTemplate } from './topic-pattern.js';
import { Slab, type SlotIndex } from '../slots.js';
import { createDecoder, type Decoder } from './decoder.js';
import { StepAssembler, type AssembledStep } from './step-assembler.js';

/**
 * What compiling a route needs of a model: its features and step (from its
 * card), and, for a model that runs, a way to key its per-stream tables by
 * the route group's slots.
 */
export interface RouteModelSpec {
  readonly name: string;
  /** Feature names in the model's input order (from its card). */
  readonly features: readonly string[];
  readonly stepSeconds: number;
  /** Key this model's per-stream state by `slots` (the only group that runs it); absent for routes compiled for admission alone. */
  shareSlots?(slots: SlotIndex): void;
}

/** The message (or clock tick) that released a step: one object for every step it released. */
export interface StepOrigin {
  readonly route: string;
  /** The topic of the message that completed the step. */
  readonly topic: string;
  readonly params: Readonly<Record<string, string>>;
  readonly receivedAt: number;
  /** Input-log position of the message (or tick) that released the step. */
  readonly seq: number;
}

/** What every step of a route group shares. */
export interface StepGroup {
  /** The route group's features, in the order the store keeps a step's values. */
  readonly features: readonly string[];
  /** The group's slot index: the engines and score books that share it take a step's slot without a lookup. */
  readonly slots: SlotIndex;
}

/**
 * What travels with a step through the engine to the result sink: three
 * references, the step's own data being the assembler's event (a context
 * waits in the engine's queue, long enough for the young-generation GC to
 * copy it).
 */
export interface StepContext {
  readonly origin: StepOrigin;
  readonly group: StepGroup;
  /** The step: its stream and slot, the start of its bucket (the forecasts' issue time, ms), every feature's value in physical units (filled ones included), and the features forward-filled from an earlier step. */
  readonly step: AssembledStep;
}

/**
 * A stream held in memory is one its group's assembler knows; its record in
 * the group's `residency` slab (by assembler slot) holds when it last had
 * data, whether it changed since the last checkpoint (1/0), and the log
 * position its restored state reflects (a replay skips the inputs up to it).
 */
export const LAST_ACTIVE = 0;
export const DIRTY = 1;
export const FLOOR = 2;
const RESIDENCY_FIELDS = 3;

/**
 * Routes that run the same models share one group: one assembler, so the
 * features of a stream may arrive on several topics and join into one step.
 */
export interface RouteGroup<M extends RouteModelSpec = RouteModelSpec> {
  /** The models' names joined with '+': the group's name in checkpoints. */
  readonly key: string;
  readonly models: readonly M[];
  /** What its step contexts share: every feature of its models in one order, and the assembler's slot index. */
  readonly shared: StepGroup;
  readonly assembler: StepAssembler;
  readonly residency: Slab<Float64Array>;
}

export interface CompiledRoute<M extends RouteModelSpec = RouteModelSpec> {
  readonly name: string;
  readonly pattern: TopicPattern;
  readonly stream: string;
  /** `stream` compiled: the stream id from the topic's named wildcards (and `topic`). */
  readonly streamId: (values: Readonly<Record<string, string>>, topic: string) => string;
  readonly decoder: Decoder;
  readonly group: RouteGroup<M>;
}

/** Build the routes' runtime form; routes with the same models share an assembler. */
export function compileRoutes<M extends RouteModelSpec>(
  configs: readonly RouteConfig[],
  modelsOf: (route: RouteConfig) => readonly M[],
  limits: { maxSamplesPerStep?: number } = {},
): CompiledRoute<M>[] {
  const groups = new Map<string, RouteGroup<M>>();
  const compiled = configs.map((cfg, i) => {
    const models = modelsOf(cfg);
    const features = [...new Set(models.flatMap((m) => m.features))];
    const key = [...cfg.models].sort().join('+');
    let group = groups.get(key);
    if (!group) {
      const steps = new Set(models.map((m) => m.stepSeconds));
      if (steps.size !== 1) throw new TidecastError(ErrorCodes.CONFIG, `routes[${i}]: models ${cfg.models.join(', ')} have different step intervals (${[...steps].join(', ')} s)`);
      const r = cfg.resample;
      const assembler = new StepAssembler({
        features,
        stepMs: [...steps][0]! * 1000,
        aggregate: (f) => r.aggregate[f] ?? r.aggregate.default ?? 'mean',
        latenessMs: r.latenessMs,
        emit: r.emit,
        wallClock: r.wallClock,
        maxFillSteps: r.maxFillSteps,
        maxGapSteps: r.maxGapSteps,
        maxSamplesPerStep: limits.maxSamplesPerStep,
      });
      group = { key, models, shared: { features, slots: assembler.slots }, residency: new Slab(RESIDENCY_FIELDS, (n) => new Float64Array(n)), assembler };
      groups.set(key, group);
    }
    return { name: cfg.name ?? `route${i}`, pattern: new TopicPattern(cfg.topic), stream: cfg.stream, streamId: compileTemplate(cfg.stream), decoder: createDecoder(cfg.decoder, features), group };
  });
  shareSlots([...groups.values()]);
  return compiled;
}

/** The distinct route groups of compiled routes, in route order. */
export function groupsOf<M extends RouteModelSpec>(routes: readonly CompiledRoute<M>[]): RouteGroup<M>[] {
  return [...new Set(routes.map((r) => r.group))];
}

/**
 * A model that only one route group runs keys its state and open forecasts
 * by the group assembler's slots: one map entry per stream for all three
 * tables. A model of several groups keeps its own (a stream name then means
 * one stream across the groups, as it always did).
 */
function shareSlots<M extends RouteModelSpec>(groups: readonly RouteGroup<M>[]): void {
  const groupsOf = new Map<M, RouteGroup<M>[]>();
  for (const g of groups) for (const m of g.models) groupsOf.set(m, [...(groupsOf.get(m) ?? []), g]);
  for (const [m, gs] of groupsOf) if (gs.length === 1) m.shareSlots?.(gs[0]!.assembler.slots);
}
