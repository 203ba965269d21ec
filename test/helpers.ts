import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelsDir, packageRoot } from '../src/paths.js';

export const SHIPPED_MODELS = ['weather-lstm', 'weather-gru', 'weather-rnn', 'weather-brnn'] as const;

export const modelPath = (name: string): string => path.join(modelsDir, `${name}.onnx`);
export const testModelPath = (file: string): string => path.join(packageRoot, 'test', 'fixtures', 'models', file);

/** A reference fixture written by models/train.py. */
export interface ReferenceFixture {
  model: string;
  stream: string;
  dates: string[];
  raw: number[][];
  inputs: number[][];
  outputs: number[][];
  firstStep?: number;
  finalStates?: Record<string, number[]>;
}

export function readFixture(name: string): ReferenceFixture {
  return JSON.parse(readFileSync(path.join(modelsDir, 'fixtures', `${name}.reference.json`), 'utf8')) as ReferenceFixture;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A temp dir removed when the returned disposer runs. */
export function tempDir(prefix = 'tidecast-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A deterministic PRNG (mulberry32) so random tests replay exactly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
