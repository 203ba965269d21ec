import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { it } from 'node:test';
import '../src/mqtt/quiet-debug.js';

it("mqtt-packet's loggers are no-ops unless DEBUG names them; other namespaces keep the real debug", () => {
  assert.equal(process.env.DEBUG ?? '', '', 'run without DEBUG');
  const require = createRequire(import.meta.url);
  const packetDir = path.dirname(require.resolve('mqtt-packet', { paths: [path.dirname(require.resolve('mqtt'))] }));
  // The `debug` that mqtt-packet requires (the same module cache entry).
  const createDebug = require(require.resolve('debug', { paths: [packetDir] })) as (ns: string) => ((...args: unknown[]) => unknown) & { enabled: boolean; namespace: string };
  const parser = createDebug('mqtt-packet:parser');
  assert.equal(parser.enabled, false);
  assert.equal(parser('parse %o', { big: 'object' }), undefined);
  const other = createDebug('tidecast:test');
  assert.equal(other.namespace, 'tidecast:test', 'any other namespace gets the real debug');
});
