import Database from 'better-sqlite3';
import type { AccuracyDelta } from '../store/rows.js';
import { DashboardApi, type ApiModel, type ApiResponse } from './dashboard-api.js';

export interface ApiAnswer {
  readonly status: number;
  /** JSON, as bytes: a cached answer is written again without encoding it again. */
  readonly body: Buffer;
}

/** What the API needs from the main thread: the loaded models, the error sums scored since the last checkpoint. */
export interface ApiMainThread {
  models(): ApiModel[];
  /** Per `${model}\0${stream}`, for these streams. */
  deltas(streams: readonly string[]): Promise<ReadonlyArray<[string, readonly AccuracyDelta[]]>>;
  /** Run the whole request on the main thread (an in-memory store, which no other thread can open). */
  handle(path: string, query: string): Promise<ApiResponse>;
}

export interface ApiRunnerOptions {
  /** The database file, opened read-only here; ':memory:' sends each request to the main thread. */
  file: string;
  main: ApiMainThread;
  /** Answers being computed at most; beyond, 503 at once (default 32). */
  maxWaiting?: number;
  /** How long an answer is reused for the same URL (default 1000 ms). */
  cacheMs?: number;
  now?: () => number;
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/** How long a stream's unstored error sums from the main thread are reused. */
const DELTAS_REUSE_MS = 5000;

/**
 * The dashboard's JSON API as the HTTP thread serves it, on a read-only
 * connection of that thread. What it computes is bounded: requests for a
 * URL already being answered share that answer, an answer is reused for
 * `cacheMs`, and past `maxWaiting` answers in progress a new request gets
 * 503 at once.
 */
export class ApiRunner {
  readonly #opts: ApiRunnerOptions;
  readonly #now: () => number;
  readonly #maxWaiting: number;
  readonly #cacheMs: number;
  readonly #db: Database.Database | null;
  readonly #api: DashboardApi | null;
  readonly #deltaCache = new Map<string, { at: number; entries: Array<[string, readonly AccuracyDelta[]]> }>();
  readonly #inFlight = new Map<string, Promise<ApiAnswer>>();
  readonly #cache = new Map<string, { at: number; answer: ApiAnswer }>();

  constructor(options: ApiRunnerOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#maxWaiting = options.maxWaiting ?? 32;
    this.#cacheMs = options.cacheMs ?? 1000;
    if (options.file === ':memory:') {
      this.#db = null;
      this.#api = null;
    } else {
      const db = new Database(options.file, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 1000');
      db.pragma('cache_size = -4096');
      this.#db = db;
      this.#api = new DashboardApi(
        () => db,
        () => options.main.models(),
      );
    }
  }

  /** Answer GET `path` with `query` (the search string without '?'). */
  request(path: string, query: string): Promise<ApiAnswer> {
    const key = `${path}?${query}`;
    const cached = this.#cache.get(key);
    if (cached && this.#now() - cached.at < this.#cacheMs) return Promise.resolve(cached.answer);
    const shared = this.#inFlight.get(key);
    if (shared) return shared;
    if (this.#inFlight.size >= this.#maxWaiting) {
      return Promise.resolve({ status: 503, body: json({ error: `busy: ${this.#inFlight.size} API answers in progress; retry in a second` }) });
    }
    const answer = this.#answer(path, query).then(
      (r) => ({ status: r.status, body: json(r.body) }),
      (err: Error) => ({ status: 500, body: json({ error: err.message }) }),
    ).then((a) => {
      this.#inFlight.delete(key);
      if (a.status === 200) {
        if (this.#cache.size >= 256) this.#cache.clear();
        this.#cache.set(key, { at: this.#now(), answer: a });
      }
      return a;
    });
    this.#inFlight.set(key, answer);
    return answer;
  }

  async #answer(path: string, query: string): Promise<ApiResponse> {
    const api = this.#api;
    if (!api) return this.#opts.main.handle(path, query);
    const q = new URLSearchParams(query);
    if (path === '/api/streams' || path === '/api/streams/') {
      const list = api.listStreams(q);
      const deltas = await this.#deltasFor(list.map((s) => s.id));
      return { status: 200, body: api.describeStreams(list, (stream, model) => deltas.get(`${model}\u0000${stream}`) ?? []) };
    }
    return api.handle(path, q);
  }

  /**
   * The unstored error sums of these streams, asked of the main thread at
   * most every DELTAS_REUSE_MS per stream (each ask costs it a little): the
   * list's online MAE lags the scoring by at most that.
   */
  async #deltasFor(streams: readonly string[]): Promise<Map<string, readonly AccuracyDelta[]>> {
    const now = this.#now();
    const stale = streams.filter((s) => (this.#deltaCache.get(s)?.at ?? -Infinity) <= now - DELTAS_REUSE_MS);
    if (stale.length > 0) {
      const fresh = new Map<string, Array<[string, readonly AccuracyDelta[]]>>(stale.map((s) => [s, []]));
      for (const [key, d] of await this.#opts.main.deltas(stale)) fresh.get(key.slice(key.indexOf('\u0000') + 1))?.push([key, d]);
      if (this.#deltaCache.size > 10_000) this.#deltaCache.clear();
      for (const [s, entries] of fresh) this.#deltaCache.set(s, { at: now, entries });
    }
    const out = new Map<string, readonly AccuracyDelta[]>();
    for (const s of streams) for (const [key, d] of this.#deltaCache.get(s)?.entries ?? []) out.set(key, d);
    return out;
  }

  close(): void {
    this.#db?.close();
  }
}
