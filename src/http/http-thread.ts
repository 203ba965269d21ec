/**
 * Worker thread: the HTTP endpoint (dashboard, API, /metrics, health), so
 * that no request, nor 200 of them, is parsed, routed or answered on the
 * event loop that reads MQTT and acknowledges messages. The main thread
 * sends a heartbeat four times a second (with the loaded models when they
 * changed), which /healthz reports on, and answers the few questions only
 * it can: readiness, the Prometheus text, the error sums not yet checkpointed.
 *
 * The thread runs at the lowest scheduling priority (nice 19: on Linux a
 * thread's own), so on a busy machine the acknowledging thread goes first.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { AccuracyDelta } from '../store/rows.js';
import { announceThread } from '../metrics/thread-cpu.js';
import { ApiRunner } from './api-runner.js';
import type { ApiModel, ApiResponse } from './dashboard-api.js';
import { HttpEndpoint } from './http-endpoint.js';
import type { HttpThreadData, ToHttpThread, FromHttpThread } from './http-service.js';

const data = workerData as HttpThreadData;
const port = parentPort!;
announceThread('http');
try {
  setPriority(0, 19);
} catch {
  // not permitted or not supported: run at the process's priority
}

/** The main thread is stalled when it has pushed no state for this long. */
const STALL_MS = 5000;
let models: ApiModel[] = [];
let stateAt = Date.now();

let nextId = 1;
const waiting = new Map<number, (value: unknown) => void>();
function ask<T>(what: Extract<FromHttpThread, { kind: 'ask' }>['what'], args: unknown): Promise<T> {
  return new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve as (v: unknown) => void);
    port.postMessage({ kind: 'ask', id, what, args } satisfies FromHttpThread);
  });
}

const log = {
  error(obj: object, msg: string): void {
    const o = obj as { err?: Error };
    const plain = o.err ? { ...o, err: { message: o.err.message, stack: o.err.stack } } : o;
    port.postMessage({ kind: 'log', obj: plain, msg } satisfies FromHttpThread);
  },
};

const api = data.dashboard
  ? new ApiRunner({
      file: data.file,
      main: {
        models: (): ApiModel[] => models,
        deltas: (streams) => ask<Array<[string, readonly AccuracyDelta[]]>>('deltas', streams),
        handle: (path, query) => ask<ApiResponse>('handle', { path, query }),
      },
    })
  : undefined;

const endpoint = new HttpEndpoint({
  host: data.host,
  port: data.port,
  metrics: () => ask<{ contentType: string; body: string }>('metrics', null),
  readiness: () => ask<{ ready: boolean; checks: Record<string, boolean> }>('readiness', null),
  stalledMs: () => {
    const age = Date.now() - stateAt;
    return age > STALL_MS ? age : null;
  },
  ...(api ? { api } : {}),
  ...(data.token !== undefined ? { token: data.token } : {}),
  protectMetrics: data.protectMetrics,
  allowedHosts: data.allowedHosts,
  ratePerS: data.ratePerS,
  log,
});

port.on('message', (m: ToHttpThread) => {
  switch (m.kind) {
    case 'state':
      if (m.models) models = m.models;
      stateAt = Date.now();
      return;
    case 'reply':
      waiting.get(m.id)?.(m.value);
      waiting.delete(m.id);
      return;
    case 'stop':
      void endpoint.stop().then(() => {
        port.postMessage({ kind: 'stopped' } satisfies FromHttpThread);
        port.close();
      });
      return;
  }
});

endpoint.start().then(
  () => port.postMessage({ kind: 'listening', host: endpoint.address!.host, port: endpoint.address!.port } satisfies FromHttpThread),
  (err: Error) => port.postMessage({ kind: 'failed', message: err.message, code: (err as NodeJS.ErrnoException).code } satisfies FromHttpThread),
);
