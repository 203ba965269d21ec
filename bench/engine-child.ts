/**
 * One point of the engine bench in a fresh process (bench/engine.ts says why):
 * argv = the point as JSON, seconds, model name. Prints {"rate": …}.
 */
import { measureEnginePoint, type EnginePoint } from './engine.js';

const point = JSON.parse(process.argv[2]!) as EnginePoint;
const rate = await measureEnginePoint(point, Number(process.argv[3] ?? 2), process.argv[4] ?? 'weather-lstm');
process.stdout.write(JSON.stringify({ rate }) + '\n');
