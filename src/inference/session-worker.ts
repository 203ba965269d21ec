/**
 * A model's session thread (see session-thread.ts): creates its own
 * onnxruntime session from the file and options the main thread used, then
 * runs each batch it is sent and answers with the outputs. It answers id 0
 * once the session is ready (or with the reason it could not be created).
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { announceThread } from '../metrics/thread-cpu.js';
import type { SessionReply, SessionRequest } from './session-thread.js';

const { file, options, name } = workerData as { file: string; options: ort.InferenceSession.SessionOptions; name: string };
const port = parentPort!;
announceThread(`session:${name}`);

// Fault injection (tests): the thread dies when asked for its nth run.
const dieAt = Number(process.env.TIDECAST_FAULT_SESSION_EXIT_AT ?? 0);
let runs = 0;

/**
 * The buffers of a reply's outputs that can move to the main thread instead of
 * being copied: each output onnxruntime returns has an ArrayBuffer of its own.
 * Copied, an output passed through a serialization buffer allocated on this
 * thread and freed on the main one, which kept this thread's malloc arena at
 * about 30 MB under load; moved, nothing is copied and nothing is allocated.
 */
function movable(reply: SessionReply): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  for (const o of Object.values(reply.outputs ?? {})) {
    const b = o.data.buffer;
    if (b instanceof ArrayBuffer && o.data.byteOffset === 0 && o.data.byteLength === b.byteLength && !buffers.includes(b)) buffers.push(b);
  }
  return buffers;
}

async function run(session: ort.InferenceSession, req: SessionRequest): Promise<SessionReply> {
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(req.feeds)) feeds[name] = new ort.Tensor('float32', t.data, t.dims);
    const out = await session.run(feeds);
    const outputs: NonNullable<SessionReply['outputs']> = {};
    for (const [name, t] of Object.entries(out)) outputs[name] = { data: t.data as Float32Array, dims: t.dims };
    return { id: req.id, outputs };
  } catch (err) {
    return { id: req.id, outputs: null, error: (err as Error).message };
  }
}

try {
  const session = await ort.InferenceSession.create(file, options);
  port.on('message', (req: SessionRequest) => {
    if (dieAt > 0 && ++runs >= dieAt) process.exit(70);
    void run(session, req).then((reply) => port.postMessage(reply, movable(reply)));
  });
  port.postMessage({ id: 0, outputs: null } satisfies SessionReply);
} catch (err) {
  port.postMessage({ id: 0, outputs: null, error: (err as Error).message } satisfies SessionReply);
}
