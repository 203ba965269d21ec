import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slab, SlotIndex } from '../src/slots.js';

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
