import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * mqtt-packet calls the `debug` package several times per packet, and each
 * call allocates its arguments before `debug` finds its namespace disabled
 * (bench/e2e: 0.6 KB per message, about 1.5% of the main thread's time).
 * Unless DEBUG names mqtt-packet (or everything), its loggers are no-ops. This
 * module only has an effect when it is evaluated before mqtt-packet loads:
 * the modules that import mqtt import it first.
 */
const wanted = process.env.DEBUG ?? '';
if (!/mqtt-packet|(^|,)\s*\*/.test(wanted)) {
  const require = createRequire(import.meta.url);
  const packetDir = path.dirname(require.resolve('mqtt-packet', { paths: [path.dirname(require.resolve('mqtt'))] }));
  const debugPath = require.resolve('debug', { paths: [packetDir] });
  const createDebug = require(debugPath) as ((namespace: string) => unknown) & Record<string, unknown>;
  type Quiet = (() => void) & { enabled: boolean; namespace: string; log(): void; extend(): Quiet };
  const noop: Quiet = Object.assign(() => undefined, { enabled: false, namespace: '', log: () => undefined, extend: (): Quiet => noop });
  const quiet = Object.assign((namespace: string) => (namespace.startsWith('mqtt-packet') ? noop : createDebug(namespace)), createDebug);
  quiet.default = quiet;
  const cached = require.cache[debugPath];
  if (cached) cached.exports = quiet;
}
