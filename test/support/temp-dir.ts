import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A temp dir removed when the returned disposer runs. */
export function tempDir(prefix = 'tidecast-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Run `fn` with a fresh temp dir, removed afterwards whether `fn` succeeds or throws. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T> | T): Promise<T> {
  const tmp = tempDir();
  try {
    return await fn(tmp.dir);
  } finally {
    tmp.remove();
  }
}
