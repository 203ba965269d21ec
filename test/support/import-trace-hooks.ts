/** Module hooks for import-trace.ts (they run on the loader's thread). */
import { appendFileSync } from 'node:fs';

type Next = (specifier: string, context: unknown) => Promise<{ url: string }>;

export async function resolve(specifier: string, context: unknown, next: Next): Promise<{ url: string }> {
  const r = await next(specifier, context);
  const file = process.env.IMPORT_TRACE_FILE;
  if (file) appendFileSync(file, r.url + '\n');
  return r;
}
