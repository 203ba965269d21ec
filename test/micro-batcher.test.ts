import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MicroBatcher } from '../src/inference/micro-batcher.js';
import { ManualClock } from './support/manual-clock.js';

interface Item { key: string; n: number }
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * The batcher's key for an item: its name (hash tables), or with `slotKeys` a
 * small integer given to each name in order of first use, as a SlotIndex
 * gives slots (tables indexed by key).
 */
function keyOf(slotKeys: boolean): (i: Item) => string {
  if (!slotKeys) return (i) => i.key;
  const ids = new Map<string, number>();
  return ((i: Item) => {
    let id = ids.get(i.key);
    if (id === undefined) ids.set(i.key, (id = ids.size));
    return id;
  }) as unknown as (i: Item) => string;
}

function harness(maxBatch: number, maxDelayMs: number, slotKeys = false) {
  const timer = new ManualClock();
  const batches: Item[][] = [];
  let release: (() => void) | null = null;
  let hold = false;
  const batcher = new MicroBatcher<Item>({
    maxBatch,
    maxDelayMs,
    timer,
    key: keyOf(slotKeys),
    slotKeys,
    run: async (b) => {
      batches.push(b);
      if (hold) await new Promise<void>((r) => (release = r));
    },
    onError: () => assert.fail('no run fails here'),
  });
  return { timer, batches, batcher, holdRuns: (on: boolean) => (hold = on), release: () => release?.() };
}

for (const slotKeys of [false, true]) describe(`MicroBatcher, keys in ${slotKeys ? 'arrays by slot' : 'hash tables'}`, () => {
  it('flushes at maxBatch without waiting for the timer', async () => {
    const h = harness(3, 1000, slotKeys);
    for (const key of ['a', 'b', 'c']) h.batcher.push({ key, n: 0 });
    await tick();
    assert.deepEqual(h.batches.map((b) => b.map((i) => i.key)), [['a', 'b', 'c']]);
  });

  it('an idle batcher holds a lone step at most maxDelayMs', async () => {
    const h = harness(100, 5, slotKeys);
    h.batcher.push({ key: 'a', n: 0 });
    h.timer.advance(4);
    await tick();
    assert.equal(h.batches.length, 0);
    h.timer.advance(1);
    await tick();
    assert.equal(h.batches.length, 1);
    assert.equal(h.timer.pending, 0);
  });

  it('puts a stream at most once in a batch and keeps its steps in arrival order', async () => {
    const h = harness(10, 5, slotKeys);
    for (let n = 0; n < 3; n++) h.batcher.push({ key: 'a', n });
    h.batcher.push({ key: 'b', n: 0 });
    h.batcher.push({ key: 'a', n: 3 });
    await h.batcher.drain();
    assert.deepEqual(
      h.batches.map((b) => b.map((i) => `${i.key}${i.n}`)),
      [['a0', 'b0'], ['a1'], ['a2'], ['a3']],
    );
  });

  it('runs one batch at a time; arrivals during a run go next, together', async () => {
    const h = harness(100, 5, slotKeys);
    h.holdRuns(true);
    h.batcher.push({ key: 'a', n: 0 });
    h.timer.advance(5);
    await tick();
    assert.equal(h.batches.length, 1);
    for (const key of ['b', 'c', 'd']) h.batcher.push({ key, n: 0 });
    h.timer.advance(50);
    await tick();
    assert.equal(h.batches.length, 1, 'no second batch while the first is in flight');
    h.holdRuns(false);
    h.release();
    await h.batcher.drain();
    assert.deepEqual(h.batches.map((b) => b.map((i) => i.key)), [['a'], ['b', 'c', 'd']]);
  });

  it('with maxInFlight 2, a second full batch runs beside the first, never with a key of it', async () => {
    const timer = new ManualClock();
    const batches: Item[][] = [];
    const releases: Array<() => void> = [];
    const batcher = new MicroBatcher<Item>({
      maxBatch: 3,
      maxDelayMs: 5,
      maxInFlight: 2,
      timer,
      key: keyOf(slotKeys),
      slotKeys,
      run: async (b) => {
        batches.push(b);
        await new Promise<void>((r) => releases.push(r));
      },
      onError: () => assert.fail('no run fails here'),
    });
    for (const key of ['a', 'b', 'c']) batcher.push({ key, n: 0 });
    await tick();
    assert.equal(batches.length, 1);
    // a's next step and two new keys: not a full batch of keys free to run, so it waits.
    for (const key of ['a', 'd', 'e']) batcher.push({ key, n: 1 });
    timer.advance(50);
    await tick();
    assert.equal(batches.length, 1, 'a partial batch waits for a running one to finish');
    batcher.push({ key: 'f', n: 1 });
    batcher.push({ key: 'g', n: 1 });
    await tick();
    assert.equal(batches.length, 2, 'three free keys make a full batch that runs beside the first');
    assert.deepEqual(batches[1]!.map((i) => i.key), ['d', 'e', 'f'], 'a, still running, keeps its place');
    batcher.push({ key: 'h', n: 1 });
    batcher.push({ key: 'i', n: 1 });
    batcher.push({ key: 'j', n: 1 });
    await tick();
    assert.equal(batches.length, 2, 'no third batch in flight');
    releases.shift()!();
    await tick();
    await tick();
    assert.deepEqual(batches[2]!.map((i) => `${i.key}${i.n}`), ['a1', 'g1', 'h1'], 'a runs once its first batch is done, in its place');
    while (releases.length > 0 || batcher.pending > 0) {
      releases.shift()?.();
      await tick();
    }
    const drained = batcher.drain();
    while (releases.length > 0) releases.shift()!();
    await drained;
    assert.deepEqual(batches.flat().map((i) => `${i.key}${i.n}`).sort(), ['a0', 'a1', 'b0', 'c0', 'd1', 'e1', 'f1', 'g1', 'h1', 'i1', 'j1']);
  });

  it('drain runs everything now and resolves when nothing is left', async () => {
    const h = harness(2, 10_000, slotKeys);
    for (let n = 0; n < 5; n++) h.batcher.push({ key: `k${n}`, n });
    await h.batcher.drain();
    assert.equal(h.batcher.pending, 0);
    assert.deepEqual(h.batches.map((b) => b.length), [2, 2, 1]);
  });

  it('a failing run reports its batch and does not stop later batches', async () => {
    const failed: Item[][] = [];
    const ran: Item[][] = [];
    let first = true;
    const batcher = new MicroBatcher<Item>({
      maxBatch: 1,
      maxDelayMs: 0,
      key: keyOf(slotKeys),
      slotKeys,
      run: async (b) => {
        if (first) {
          first = false;
          throw new Error('boom');
        }
        ran.push(b);
      },
      onError: (_err, b) => failed.push(b),
    });
    batcher.push({ key: 'a', n: 0 });
    batcher.push({ key: 'a', n: 1 });
    await batcher.drain();
    assert.deepEqual(failed.map((b) => b[0]!.n), [0]);
    assert.deepEqual(ran.map((b) => b[0]!.n), [1]);
  });
});
