import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateSlab } from '../src/inference/state-slab.js';
import { readRow, rowLayout, writeRow } from '../src/inference/tensor-rows.js';
import { WindowBuffer } from '../src/inference/window-buffer.js';

describe('StateSlab', () => {
  it('gives new streams zeroed slots, reuses freed slots, and keeps state across growth', () => {
    const slab = new StateSlab(3);
    slab.write('a', Float32Array.from([1, 2, 3]));
    slab.write('b', Float32Array.from([4, 5, 6]));
    slab.write('c', Float32Array.from([7, 8, 9]));
    for (let i = 0; i < 3000; i++) slab.write(`g${i}`, Float32Array.from([i, -i, i / 2])); // three chunks of 1,024 slots
    assert.deepEqual([...slab.read('a')!], [1, 2, 3]);
    assert.deepEqual([...slab.read('c')!], [7, 8, 9]);
    assert.deepEqual([...slab.read('g2999')!], [2999, -2999, 1499.5]);
    assert.deepEqual([...slab.read('g1023')!], [1023, -1023, 511.5]);
    for (let i = 0; i < 3000; i++) slab.release(`g${i}`);
    const slotB = slab.slotOf('b');
    assert.ok(slab.release('b'));
    assert.equal(slab.slotOf('d'), slotB, 'a freed slot is reused');
    assert.deepEqual([...slab.read('d')!], [0, 0, 0], 'a reused slot starts at zero');
    slab.reset('a');
    assert.deepEqual([...slab.read('a')!], [0, 0, 0]);
    assert.equal(slab.size, 3);
  });
});

describe('tensor rows', () => {
  it('gathers and scatters a stream row of [layers, batch, hidden]', () => {
    // [2, 3, 2]: element (l, b, h) = 100l + 10b + h
    const dims = [2, 3, 2];
    const t = Float32Array.from({ length: 12 }, (_, i) => 100 * Math.floor(i / 6) + 10 * Math.floor((i % 6) / 2) + (i % 2));
    const layout = rowLayout(dims, 1);
    const row = new Float32Array(4);
    readRow(layout, t, 2, row, 0);
    assert.deepEqual([...row], [20, 21, 120, 121]);
    const back = new Float32Array(12);
    writeRow(layout, back, 2, row, 0);
    assert.deepEqual([...back].filter((x) => x !== 0), [20, 21, 120, 121]);
  });

  it('reads the last time step of a batch-first [batch, time, out] output', () => {
    const t = Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i); // (b, t, o) = 6b + 2t + o
    const layout = rowLayout([2, 3, 2], 0, 1, 2);
    const row = new Float32Array(2);
    readRow(layout, t, 1, row, 0);
    assert.deepEqual([...row], [10, 11]);
  });

  it('lays out a time-major window [time, batch, features] row by row', () => {
    const layout = rowLayout([3, 2, 2], 1);
    const t = new Float32Array(12);
    writeRow(layout, t, 1, Float32Array.from([1, 2, 3, 4, 5, 6]), 0);
    assert.deepEqual([...t], [0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6]);
  });
});

describe('WindowBuffer', () => {
  it('keeps the last `window` steps oldest first', () => {
    const w = new WindowBuffer(3, 2);
    for (let i = 1; i <= 4; i++) w.push('s', Float32Array.from([i, -i]));
    assert.deepEqual([...w.view('s')], [2, -2, 3, -3, 4, -4]);
    assert.equal(w.push('t', Float32Array.from([9, 9])), 1);
    w.reset('s');
    assert.equal(w.push('s', Float32Array.from([5, 5])), 1);
  });
});
