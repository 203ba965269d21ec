import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { AccuracyDelta } from '../store/rows.js';
import { DashboardApi, type ApiModel } from './dashboard-api.js';
import type Database from 'better-sqlite3';
import { ErrorCodes, TidecastError } from '../errors.js';

/** What the HTTP thread is started with. */
export interface HttpThreadData {
  host: string;
  port: number;
  token?: string;
  protectMetrics: boolean;
  allowedHosts: readonly string[];
  ratePerS: number;
  /** Serve the dashboard and its API, reading this database file. */
  dashboard: boolean;
  file: string;
}

export type ToHttpThread =
  | { readonly kind: 'state'; readonly models?: ApiModel[] }
  | { readonly kind: 'reply'; readonly id: number; readonly value: unknown }
  | { readonly kind: 'stop' };

export type FromHttpThread =
  | { readonly kind: 'listening'; readonly host: string; readonly port: number }
  | { readonly kind: 'failed'; readonly message: string; readonly code?: string | undefined }
  | { readonly kind: 'ask'; readonly id: number; readonly what: 'metrics' | 'readiness' | 'deltas' | 'handle'; readonly args: unknown }
  | { readonly kind: 'log'; readonly obj: object; readonly msg: string }
  | { readonly kind: 'stopped' };

export interface HttpServiceOptions extends Omit<HttpThreadData, 'file' | 'dashboard'> {
  metrics: Metrics;
  readiness(): { ready: boolean; checks: Record<string, boolean> };
  /** With a dashboard: the store's file, this thread's connection (for ':memory:'), the models, the unstored error sums. */
  dashboard?: {
    file: string;
    db: () => Database.Database;
    models: () => ApiModel[];
    deltas: (stream: string, model: string) => readonly AccuracyDelta[];
  };
  log: Logger;
}

/** Streams whose unstored error sums are gathered in one turn of the event loop. */
const DELTAS_SLICE = 25;

/** How often the main thread tells the HTTP thread its state (also the heartbeat /healthz reports on). */
const STATE_EVERY_MS = 250;

/**
 * The main thread's side of the HTTP endpoint, which runs on a thread of its
 * own (`http-thread.ts`): it starts that thread, sends it a heartbeat every
 * 250 ms (with the loaded models when they changed), and answers its
 * questions (readiness, the metrics text, the error sums in memory for a
 * stream list, a whole API request for an in-memory store). Nothing else of
 * HTTP touches this thread.
 */
export class HttpService {
  readonly #opts: HttpServiceOptions;
  #worker: Worker | null = null;
  #timer: NodeJS.Timeout | null = null;
  #inline: DashboardApi | null = null;
  #modelsKey: string | null = null;
  address: { host: string; port: number } | null = null;

  constructor(options: HttpServiceOptions) {
    this.#opts = options;
    const d = options.dashboard;
    if (d && d.file === ':memory:') this.#inline = new DashboardApi(d.db, d.models, d.deltas);
  }

  start(): Promise<void> {
    const o = this.#opts;
    const data: HttpThreadData = {
      host: o.host,
      port: o.port,
      ...(o.token !== undefined ? { token: o.token } : {}),
      protectMetrics: o.protectMetrics,
      allowedHosts: o.allowedHosts,
      ratePerS: o.ratePerS,
      dashboard: o.dashboard !== undefined,
      file: o.dashboard?.file ?? ':memory:',
    };
    const worker = new Worker(new URL('./http-thread.js', import.meta.url), { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    this.#worker = worker;
    this.#push();
    this.#timer = setInterval(() => this.#push(), STATE_EVERY_MS);
    this.#timer.unref();
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromHttpThread) => {
        switch (m.kind) {
          case 'listening':
            this.address = { host: m.host, port: m.port };
            resolve();
            return;
          case 'failed':
            reject(new TidecastError(ErrorCodes.HTTP, `the HTTP endpoint cannot listen on ${o.host}:${o.port}: ${m.message}${m.code ? ` (${m.code})` : ''}; free the port or change http.port / http.host`));
            return;
          case 'log':
            o.log.error(m.obj, m.msg);
            return;
          case 'ask':
            void this.#answer(m.what, m.args).then(
              (value) => worker.postMessage({ kind: 'reply', id: m.id, value } satisfies ToHttpThread),
              (err: Error) => {
                o.log.error({ err }, 'http thread question failed');
                worker.postMessage({ kind: 'reply', id: m.id, value: m.what === 'handle' ? { status: 500, body: { error: err.message } } : null } satisfies ToHttpThread);
              },
            );
            return;
          case 'stopped':
            return;
        }
      });
      worker.on('error', (err) => {
        o.log.error({ err }, 'the HTTP thread failed');
        reject(err);
      });
    });
  }

  #push(): void {
    // The models (with their cards) only when they changed: a reload.
    const models = this.#opts.dashboard?.models() ?? [];
    const key = models.map((m) => `${m.name}\u0000${m.path}\u0000${m.provider}\u0000${m.mode}`).join('\u0001');
    const changed = key !== this.#modelsKey;
    this.#modelsKey = key;
    this.#worker?.postMessage({ kind: 'state', ...(changed ? { models } : {}) } satisfies ToHttpThread);
  }

  async #answer(what: 'metrics' | 'readiness' | 'deltas' | 'handle', args: unknown): Promise<unknown> {
    const o = this.#opts;
    if (what === 'metrics') return { contentType: o.metrics.contentType, body: await o.metrics.text() };
    if (what === 'readiness') return o.readiness();
    const d = o.dashboard;
    if (!d) return null;
    if (what === 'deltas') {
      // In slices of DELTAS_SLICE streams, a turn of the event loop each: a list of 500 streams in one go held the
      // acknowledging loop for milliseconds (bench api-load: p99 commit latency 1.6x with 200 clients; sliced, 1.1x).
      const names = d.models().map((m) => m.name);
      const streams = args as string[];
      const out: Array<[string, readonly AccuracyDelta[]]> = [];
      for (let i = 0; i < streams.length; i += DELTAS_SLICE) {
        if (i > 0) await new Promise((r) => setImmediate(r));
        for (const stream of streams.slice(i, i + DELTAS_SLICE)) {
          for (const model of names) {
            const x = d.deltas(stream, model);
            if (x.length > 0) out.push([`${model}\u0000${stream}`, x]);
          }
        }
      }
      return out;
    }
    const { path, query } = args as { path: string; query: string };
    if (!this.#inline) return { status: 500, body: { error: 'no API on this thread' } };
    return this.#inline.handle(path, new URLSearchParams(query));
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const worker = this.#worker;
    this.#worker = null;
    if (!worker) return;
    const stopped = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.on('message', (m: FromHttpThread) => {
        if (m.kind === 'stopped') resolve();
      });
    });
    worker.postMessage({ kind: 'stop' } satisfies ToHttpThread);
    await Promise.race([stopped, new Promise((r) => setTimeout(r, 2000).unref())]);
    await worker.terminate();
  }
}
