import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The package root: compiled files live in dist/src/, sources in src/. */
export const packageRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Shipped models, cards and reference fixtures. */
export const modelsDir: string = path.join(packageRoot, 'models');
