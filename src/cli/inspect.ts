import { parseArgs } from 'node:util';
import { ExitCodes } from '../exit-codes.js';
import { loadModel } from '../inference/model.js';
import { formatInspect, inspectReport } from '../inspect.js';
import type { CliIo } from './io.js';

/** `tidecast inspect`: a model's inputs, outputs, state pairs, layout, mode, card and provider. */
export default async function inspect(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      card: { type: 'string' },
      'no-card': { type: 'boolean' },
      providers: { type: 'string' },
      'strict-providers': { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) {
    io.err('usage: tidecast inspect <model.onnx> [--card FILE | --no-card] [--providers LIST [--strict-providers]] [--json]');
    return ExitCodes.USAGE;
  }
  const providers = values.providers?.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const model = await loadModel(positionals[0]!, { card: values['no-card'] ? null : values.card, providers, strictProviders: values['strict-providers'] });
  const report = inspectReport(model);
  io.out(values.json ? JSON.stringify(report, null, 2) : formatInspect(report));
  await model.session.release();
  return 0;
}
