import type { StepContext } from '../src/streams/routes.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slab, SlotIndex, SlotView } from '../src/slots.js';
import { StateSlab } from '../src/inference/state-slab.js';

describe('SlotIndex', () => {
  it('hands out dense slots, reuses released ones and tracks the extent', () => {
    const ix = new SlotIndex();
    assert.equal(ix.take('a'), 0);
    assert.equal(ix.take('b'), 1);
    assert.equal(ix.take('a'), 0, 'a known name keeps its slot');
    assert.equal(ix.release('a'), 0);
    assert.equal(ix.release('a'), undefined);
    assert.equal(ix.take('c'), 0, 'a released slot is reused before the index grows');
    assert.equal(ix.extent, 2);
    assert.deepEqual([...ix.entries()].sort(), [['b', 1], ['c', 0]]);
  });
});

describe('SlotView', () => {
  it('on a shared index, holds only what it initialised, and never a stream that took a released slot since', () => {
    const index = new SlotIndex();
    const view = new SlotView(index);
    const inits: number[] = [];
    const init = (slot: number): void => void inits.push(slot);
    assert.equal(view.hold('a', init), undefined, 'the owner does not know a: nothing to hold');
    const a = index.take('a');
    assert.equal(view.get('a'), undefined, 'known to the owner, not held by the view');
    assert.equal(view.hold('a', init), a);
    assert.equal(view.hold('a', init), a);
    assert.deepEqual(inits, [a], 'initialised once');
    assert.equal(view.size, 1);
    index.release('a');
    const b = index.take('b');
    assert.equal(b, a, 'b took the slot a left');
    assert.equal(view.holds(b), false, "the view's columns there are a's leftovers, not b's");
    assert.deepEqual([...view.entries()], []);
    view.holdAt(b, init);
    assert.deepEqual(inits, [a, b], 'b is initialised before use');
    assert.equal(view.size, 1, 'counted once: the stale hold became this one');
    assert.equal(view.release('b'), b);
    assert.equal(index.get('b'), b, 'a view does not release names in an index it shares');
    assert.equal(view.size, 0);
  });

  it('a state slab on a shared index starts each stream that takes a reused slot at zero', () => {
    const index = new SlotIndex();
    const slab = new StateSlab(2, index);
    const a = index.take('a');
    assert.equal(slab.slotOf('a', a, index), a, 'the slot from the shared index, without a lookup');
    slab.write('a', Float32Array.of(1, 2));
    assert.throws(() => slab.slotOf('x'), /not in the shared slot index/);
    const own = new SlotIndex();
    own.take('z');
    own.take('a');
    assert.equal(slab.slotOf('a', 1, own), a, 'a slot of another index is not taken: the name is looked up');
    index.release('a');
    const b = index.take('b');
    assert.deepEqual([...slab.read('b') ?? []], [], 'b holds no state until it steps');
    assert.deepEqual([...slab.chunk(slab.slotOf('b', b, index)).subarray(slab.offsetOf(b), slab.offsetOf(b) + 2)], [0, 0], "not a's state");
  });
});

describe('Slab', () => {
  it('gives back the name a slot was taken for until it is released', () => {
    const index = new SlotIndex();
    const first = ['site', 'dev'].join('/');
    const slot = index.take(first);
    const again = ['site', 'dev'].join('/');
    assert.equal(index.take(again), slot);
    assert.equal(index.nameOf(slot), first);
    index.release(first);
    assert.equal(index.nameOf(slot), undefined);
    assert.equal(index.take('other'), slot, 'the slot is reused');
    assert.equal(index.nameOf(slot), 'other');
  });

  it('keeps records in place across chunks, starting at the fill value', () => {
    const slab = new Slab(3, (n) => new Float64Array(n), NaN);
    const first = slab.chunk(0);
    slab.write(0, [1, 2, 3]);
    slab.write(5000, [7, 8, 9]); // the fifth chunk of 1,024 slots
    assert.equal(slab.chunk(0), first, 'growth does not move a chunk');
    assert.deepEqual([...slab.read(0)], [1, 2, 3]);
    assert.deepEqual([...slab.read(5000)], [7, 8, 9]);
    assert.ok(Number.isNaN(slab.read(4999)[0]!), 'a new chunk starts at the fill value');
    assert.equal(slab.bytes, 5 * 1024 * 3 * 8, 'memory held is whole chunks, no doubling');
    slab.fill(5000, 0);
    assert.deepEqual([...slab.read(5000)], [0, 0, 0]);
  });
});

describe('route groups and slot sharing', () => {
  it("a model that one route group runs keys its state and open forecasts by the group assembler's slots; a model of two groups keeps its own", async () => {
    const { compileRoutes } = await import('../src/streams/routes.js');
    const { RouteModel } = await import('../src/streams/route-model.js');
    const { InferenceEngine } = await import('../src/inference/engine.js');
    const { loadModel } = await import('../src/inference/model.js');
    const { ScoreBook } = await import('../src/daemon/score-book.js');
    const { CardScaler } = await import('../src/inference/scaler.js');
    const { modelPath } = await import('./support/models.js');
    const routeModel = async (name: string) => {
      const model = await loadModel(modelPath(name));
      const card = model.card!;
      const engine = new InferenceEngine<StepContext>(model, { onResults: () => undefined });
      return new RouteModel(engine, new CardScaler(card), new ScoreBook(card));
    };
    const lstm = await routeModel('weather-lstm');
    const gru = await routeModel('weather-gru');
    const resample = { aggregate: {}, latenessMs: 0, emit: 'complete' as const, wallClock: false, maxFillSteps: 0, maxGapSteps: 0 };
    const route = (topic: string, models: string[]) => ({ topic, stream: '{id}', models, decoder: { type: 'json' as const, partial: false }, resample });
    const [a, b] = compileRoutes([route('a/+id', ['weather-lstm']), route('b/+id', ['weather-lstm', 'weather-gru'])], (r) => r.models.map((n) => (n === 'weather-lstm' ? lstm : gru)));
    assert.notEqual(a!.group, b!.group);
    assert.equal(gru.engine.runner.slab!.sharedIndex, b!.group.assembler.slots, "weather-gru runs in one group only: its state slab shares that group's slots");
    assert.equal(lstm.engine.runner.slab!.sharedIndex, undefined, 'weather-lstm runs in two groups: its own index');
    // A stream the group knows takes its state at the group's slot, zeroed.
    const slot = b!.group.assembler.join('s1');
    gru.engine.submit('s1', new Float32Array(gru.engine.model.signature.featureCount), undefined, undefined, slot, b!.group.assembler.slots);
    assert.equal(gru.engine.runner.slab!.peek('s1'), slot);
    await Promise.all([lstm.engine.close(), gru.engine.close()]);
  });
});
