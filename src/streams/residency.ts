import type { Logger } from '../log.js';
import type { CheckpointedStream, StreamStateRow } from '../store/store.js';
import type { ResidentCount } from './admission.js';
import type { StreamStateHolder } from './route-model.js';
import { DIRTY, FLOOR, LAST_ACTIVE, type CompiledRoute, type RouteGroup, type RouteModelSpec } from './routes.js';

/** A stream a checkpoint must write: changed since the last one, or idle (spilled, then evicted). */
export interface CheckpointTarget {
  readonly group: RouteGroup<ResidentModel>;
  readonly stream: string;
  readonly idle: boolean;
}

/** A model whose per-stream state residency moves in and out of memory. */
export type ResidentModel = RouteModelSpec & StreamStateHolder;

export interface ResidencyOptions {
  groups: readonly RouteGroup<ResidentModel>[];
  /** A stream's spilled or checkpointed state. */
  loadStream(group: string, stream: string): StreamStateRow | undefined;
  /** Streams spilled and evicted (at a checkpoint) or restored (on their return), for metrics. */
  onResidency?(action: 'evicted' | 'restored', streams: number): void;
  /** A restored state did not fit its model (the file changed): that stream starts over. */
  onStateDiscarded?(stream: string, model: string): void;
  log: Logger;
}

/**
 * Which streams are in memory: a stream joins on its first message (its
 * spilled state restored, when it has one), is marked changed by every
 * message, and leaves once a checkpoint has written it idle. Models' state
 * moves through the StreamStateHolder face, never their internals.
 */
export class Residency implements ResidentCount {
  readonly #opts: ResidencyOptions;
  readonly #log: Logger;
  #residents = 0;
  /** Streams spilled after idling, and restored on their return. */
  readonly counts = { evicted: 0, restored: 0 };

  constructor(options: ResidencyOptions) {
    this.#opts = options;
    this.#log = options.log.child({ component: 'residency' });
  }

  /** Streams held in memory, over all route groups. */
  get residentStreams(): number {
    return this.#residents;
  }

  isResident(route: CompiledRoute, stream: string): boolean {
    return route.group.assembler.slotOf(stream) !== undefined;
  }

  /**
   * Route groups whose streams must be in memory from the start: a wall-clock
   * tick closes steps of every stream it knows, so a replay must know the same
   * streams. Other streams come back from the store on their next message.
   */
  get eagerGroups(): string[] {
    return this.#opts.groups.filter((g) => g.assembler.wallClock).map((g) => g.key);
  }

  /** Bring a stream into memory (restoring its spilled state) and mark it changed; returns its slot (the assembler's). */
  touch(group: RouteGroup<ResidentModel>, stream: string, at: number): number {
    const m = group.residency;
    let slot = group.assembler.slotOf(stream);
    if (slot === undefined) {
      const row = this.#opts.loadStream(group.key, stream);
      if (row) {
        this.#import(group, row);
        this.counts.restored++;
        this.#opts.onResidency?.('restored', 1);
      }
      slot = group.assembler.join(stream);
      m.write(slot, [at, 1, row?.seq ?? 0]);
      this.#residents++;
    }
    const c = m.chunk(slot);
    const o = m.offset(slot);
    if (at > c[o + LAST_ACTIVE]!) c[o + LAST_ACTIVE] = at;
    c[o + DIRTY] = 1;
    return slot;
  }

  /** The log position a resident stream's restored state reflects (a replay skips inputs up to it); NaN when it is not resident. */
  floor(group: RouteGroup<ResidentModel>, stream: string): number {
    return this.#field(group, stream, FLOOR);
  }

  /** The same by slot, for the message path (the slot `touch` returned). */
  floorAt(group: RouteGroup<ResidentModel>, slot: number): number {
    return group.residency.chunk(slot)[group.residency.offset(slot) + FLOOR]!;
  }

  /** Mark a resident stream changed since the last checkpoint. */
  markDirty(group: RouteGroup<ResidentModel>, stream: string): void {
    const slot = group.assembler.slotOf(stream);
    if (slot !== undefined) group.residency.chunk(slot)[group.residency.offset(slot) + DIRTY] = 1;
  }

  /** Put a checkpointed stream back in memory (at start, for streams resident at the checkpoint). */
  restore(row: StreamStateRow): boolean {
    const group = this.#groupOf(row.group);
    if (!group || group.assembler.slotOf(row.stream) !== undefined) return false;
    this.#import(group, row);
    const slot = group.assembler.join(row.stream);
    group.residency.write(slot, [row.lastActive, 0, row.seq ?? 0]);
    this.#residents++;
    return true;
  }

  /**
   * The streams a checkpoint must write: every one changed since the last
   * checkpoint, and those idle since `idleBefore` (spilled, then evicted by
   * `checkpointed`). The checkpoint then captures them one by one with
   * `capture`, as each is quiet, while messages flow.
   */
  checkpointTargets(idleBefore: number): CheckpointTarget[] {
    const out: CheckpointTarget[] = [];
    for (const g of this.#opts.groups) {
      const m = g.residency;
      for (const [stream, slot] of g.assembler.streams()) {
        const c = m.chunk(slot);
        const o = m.offset(slot);
        const idle = c[o + LAST_ACTIVE]! < idleBefore;
        if (c[o + DIRTY] === 1 || idle) out.push({ group: g, stream, idle });
      }
    }
    return out;
  }

  /**
   * A target's state as it stands after the input at `seq` (the last one
   * applied), or null while one of its steps waits or runs in an engine (try
   * again later). Captured, the stream counts as clean (a change marks it
   * dirty again); undefined when it left memory meanwhile.
   */
  capture(t: CheckpointTarget, seq: number): StreamStateRow | null | undefined {
    const g = t.group;
    const slot = g.assembler.slotOf(t.stream);
    if (slot === undefined) return undefined;
    for (const m of g.models) if (!m.quiet(t.stream)) return null;
    const assembler = g.assembler.exportStream(t.stream);
    if (assembler === undefined) return undefined;
    const models = [];
    for (const m of g.models) {
      const st = m.exportState(t.stream);
      if (st) models.push(st);
    }
    // Idle, and nothing arrived since the list was made: spilled.
    const c = g.residency.chunk(slot);
    const o = g.residency.offset(slot);
    const idle = t.idle && c[o + DIRTY] === 0;
    c[o + DIRTY] = 0;
    return { group: g.key, stream: t.stream, resident: !idle, lastActive: c[o + LAST_ACTIVE]!, assembler, models, seq };
  }

  /** A checkpoint with these rows failed: their streams are dirty again, for the next one. */
  unstored(rows: readonly CheckpointedStream[]): void {
    for (const row of rows) {
      const group = this.#groupOf(row.group);
      if (group) this.markDirty(group, row.stream);
    }
  }

  /**
   * The checkpoint with these rows is committed: the spilled streams leave
   * memory, unless a message (or the clock) changed them meanwhile (they stay,
   * dirty, and the next checkpoint writes them resident again).
   */
  checkpointed(rows: readonly CheckpointedStream[]): void {
    let evicted = 0;
    for (const row of rows) {
      if (row.resident) continue;
      const group = this.#groupOf(row.group);
      if (!group || this.#field(group, row.stream, DIRTY) !== 0) continue;
      evicted++;
      this.#residents--;
      // The models first: those that share the assembler's slot index find the stream by it.
      for (const m of group.models) m.release(row.stream);
      group.assembler.release(row.stream);
      this.counts.evicted++;
    }
    if (evicted > 0) this.#opts.onResidency?.('evicted', evicted);
  }

  /** The route group a checkpoint row names. */
  #groupOf(key: string): RouteGroup<ResidentModel> | undefined {
    return this.#opts.groups.find((g) => g.key === key);
  }

  /** A resident stream's residency field (NaN when it is not resident). */
  #field(group: RouteGroup<ResidentModel>, stream: string, field: number): number {
    const slot = group.assembler.slotOf(stream);
    return slot === undefined ? NaN : group.residency.chunk(slot)[group.residency.offset(slot) + field]!;
  }

  #import(group: RouteGroup<ResidentModel>, row: StreamStateRow): void {
    try {
      group.assembler.importStream(row.stream, row.assembler);
    } catch (err) {
      // The route's features changed across the restart: the stream's steps start over (its model state still loads).
      this.#log.warn({ stream: row.stream, err: (err as Error).message }, 'saved step assembly does not fit the route: the stream starts a new step');
    }
    // Known to the assembler either way: the engines and score books that share its slot index hold the stream by it.
    group.assembler.join(row.stream);
    for (const m of group.models) {
      const saved = row.models.find((x) => x.model === m.name);
      if (!saved || m.importState(row.stream, saved)) continue;
      this.#log.warn({ stream: row.stream, model: m.name }, 'saved state belongs to another version of the model file: the stream starts from zero state');
      this.#opts.onStateDiscarded?.(row.stream, m.name);
    }
  }
}
