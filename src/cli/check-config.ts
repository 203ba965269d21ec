import { parseArgs } from 'node:util';
import { ConfigError, findConfigFile, loadConfig } from '../config/load-config.js';
import { redactUrl } from '../config/redact.js';
import { loadModel, loadOptionsFor } from '../inference/model.js';
import type { CliIo } from './io.js';

/** `tidecast check-config`: validate the configuration and load its models and cards, without starting. */
export default async function checkConfig(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const file = findConfigFile(values.config, process.env, process.cwd());
  const { config, overrides } = loadConfig(file, process.env);
  const used: string[] = [];
  for (const [name, m] of Object.entries(config.models)) {
    const model = await loadModel(m.path, loadOptionsFor(m));
    await model.session.release();
    if (!model.card) throw new ConfigError(file, [`models.${name}: ${m.path} has no model card; the daemon needs one`]);
    const fell = model.providerFailures.map((f) => `${f.provider} unavailable: ${f.reason}`);
    used.push(`${name} on ${model.provider}${fell.length > 0 ? ` (${fell.join('; ')})` : ''}`);
  }
  io.out(`ok: ${file}`);
  io.out(`  broker ${redactUrl(config.mqtt.url)} as ${config.mqtt.clientId}; store ${config.store.path}`);
  io.out(`  models ${used.join(', ')}; routes ${config.routes.map((r) => `${r.topic} -> ${r.models.join('+')}`).join('; ')}`);
  if (overrides.length > 0) io.out(`  environment overrides: ${overrides.join(', ')}`);
  return 0;
}
