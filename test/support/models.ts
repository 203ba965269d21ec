import { readFileSync } from 'node:fs';
import path from 'node:path';
import { modelsDir, packageRoot } from '../../src/paths.js';

/** The models the package ships (models/*.onnx with their cards). */
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
