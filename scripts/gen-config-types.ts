import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { schemaPath } from '../src/config/load-config.js';
import { packageRoot } from '../src/paths.js';
import { configTypesSource } from './config-types-source.js';

/** Where the generated declarations live, committed so that reading the code needs no build step. */
export const generatedTypesPath = path.join(packageRoot, 'src', 'config', 'config.generated.ts');

/** `npm run gen:config-types`: rewrite src/config/config.generated.ts from config/tidecast.schema.json. */
function main(): void {
  writeFileSync(generatedTypesPath, configTypesSource(JSON.parse(readFileSync(schemaPath, 'utf8'))));
  process.stdout.write(`wrote ${path.relative(process.cwd(), generatedTypesPath)}\n`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
