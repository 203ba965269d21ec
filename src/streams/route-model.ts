import type { ScoreBook } from '../daemon/score-book.js';
import type { InferenceEngine } from '../inference/engine.js';
import type { CardScaler } from '../inference/scaler.js';
import type { SlotIndex } from '../slots.js';
import type { ModelStateRow } from '../store/rows.js';
import type { RouteModelSpec, StepContext } from './routes.js';

/**
 * What residency needs of a model's per-stream state (the engine's recurrent
 * state or window, the score book's open forecasts), behind one face: to
 * checkpoint a stream, bring it back, and let it go.
 */
export interface StreamStateHolder {
  readonly name: string;
  /** No step of the stream waits or runs: its state may be captured. */
  quiet(stream: string): boolean;
  /** The stream's state as a checkpoint stores it, or undefined when the model holds none for it. */
  exportState(stream: string): ModelStateRow | undefined;
  /** Put a saved state back; false (and nothing imported but its open forecasts) when it belongs to another version of the model file. */
  importState(stream: string, saved: ModelStateRow): boolean;
  /** Forget the stream (it left memory). */
  release(stream: string): void;
}

/** A loaded model as its routes use it: the engine steps go to, the scaler that reads their inputs, the book that scores them. */
export class RouteModel implements RouteModelSpec, StreamStateHolder {
  readonly name: string;
  readonly features: readonly string[];
  readonly stepSeconds: number;
  readonly engine: InferenceEngine<StepContext>;
  readonly scaler: CardScaler;
  /** The model's open forecasts (checkpointed with its state). */
  readonly scores: ScoreBook;

  constructor(engine: InferenceEngine<StepContext>, scaler: CardScaler, scores: ScoreBook) {
    const card = engine.model.card;
    this.name = engine.model.name;
    this.features = card ? card.features.map((f) => f.name) : [];
    this.stepSeconds = card?.stepSeconds ?? 0;
    this.engine = engine;
    this.scaler = scaler;
    this.scores = scores;
  }

  shareSlots(slots: SlotIndex): void {
    this.engine.shareSlots(slots);
    this.scores.shareSlots(slots);
  }

  quiet(stream: string): boolean {
    return this.engine.quiet(stream);
  }

  exportState(stream: string): ModelStateRow | undefined {
    const st = this.engine.exportStream(stream);
    if (!st) return undefined;
    return { model: this.name, fingerprint: this.engine.model.fingerprint, state: Buffer.from(st.state.buffer, st.state.byteOffset, st.state.byteLength), filled: st.filled, pending: this.scores.exportStream(stream) ?? null };
  }

  importState(stream: string, saved: ModelStateRow): boolean {
    this.scores.importStream(stream, saved.pending);
    const state = new Float32Array(saved.state.buffer.slice(saved.state.byteOffset, saved.state.byteOffset + saved.state.byteLength));
    return saved.fingerprint === this.engine.model.fingerprint && this.engine.importStream(stream, state, saved.filled);
  }

  release(stream: string): void {
    // The engine and the score book first: those that share the assembler's slot index find the stream by it.
    this.engine.releaseStream(stream);
    this.scores.release(stream);
  }
}
