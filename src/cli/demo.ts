import { parseArgs } from 'node:util';
import { runMqttDemo } from '../demo/mqtt-demo.js';
import { ExitCodes } from '../exit-codes.js';
import { createHumanLogger } from '../log.js';
import type { CliIo } from './io.js';

/** `tidecast demo`: two weather stations through the real daemon (an embedded broker unless --url). */
export default async function demo(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      duration: { type: 'string', default: '0' },
      db: { type: 'string' },
      rate: { type: 'string', default: '8' },
      from: { type: 'string', default: '2015-01-01' },
    },
  });
  const rate = Number(values.rate);
  const durationS = Number(values.duration);
  if (!(rate > 0) || !(durationS >= 0)) {
    io.err('tidecast demo: --rate must be > 0 and --duration >= 0');
    return ExitCodes.USAGE;
  }
  const stop = io.onStopSignal();
  try {
    const s = await runMqttDemo({
      url: values.url,
      db: values.db,
      rate,
      durationS,
      liveFrom: values.from!,
      signal: stop.signal,
      log: createHumanLogger('warn'),
      write: (line) => io.out(line),
    });
    io.out('');
    io.out(`summary: ${s.messages} messages, ${s.predictions} forecasts, ${s.streams} streams, ${s.deadLetters} dead letters, ${s.daysShown} days shown`);
    if (s.scored > 0) io.out(`live 1-day temp_max MAE over ${s.scored} forecasts: model ${s.maeModel.toFixed(2)} °C, persistence ${s.maePersistence.toFixed(2)} °C`);
    if (s.rainScored > 0) io.out(`live dry/wet tomorrow over ${s.rainScored} calls: ${s.rainHits} right, accuracy ${(s.rainHits / s.rainScored).toFixed(3)}`);
    io.out(`database: ${s.db}  (tidecast query --db ${s.db})`);
  } finally {
    stop.dispose();
  }
  return 0;
}
