import type Database from 'better-sqlite3';
import { Worker } from 'node:worker_threads';
import type { Clock } from '../clock.js';
import { ErrorCodes, TidecastError } from '../errors.js';
import type { Logger } from '../log.js';
import { inputLogPath } from './database.js';
import type { WriterOp, WriterReply, WriterRequest } from './writer-messages.js';
import { WriterCore } from './writer.js';

/** Ops the writer may have in hand before the intake waits (a batch op carries up to maxBatch steps). */
export const MAX_BACKLOG = 64;

/**
 * The writer thread's young generation, MB. Under load V8 grew it to 16 MB
 * (the text of its rows dies young either way); at 8 MB the thread's heap at
 * 100k streams is about 22 MB instead of 30, at the same CPU per message
 * (7.0–7.3 µs against 7.5–7.7, two runs each).
 */
const WRITER_YOUNG_GENERATION_MB = 8;

type Pending = { resolve(result: unknown): void; reject(err: Error): void };

export interface WriterClientOptions {
  /** The main thread's connection: the writer's own for ':memory:' (it then runs on this thread). */
  readonly db: Database.Database;
  /** SQLite file, or ':memory:'. */
  readonly file: string;
  readonly durability?: 'process' | 'power';
  readonly maxSizeMiB?: number;
  /** Time and the retry timer of the writer on this thread (':memory:'); the worker thread's runs on the system clock. */
  readonly clock: Clock;
  readonly log: Logger;
  /** Whether the store's writes fail for now (the writer's or the input log's): its failure is logged once. */
  failing(): boolean;
  /** The writer's backlog drained to half, or its writes go through again. */
  recovered(): void;
  /** The writer met a failure no retry fixes and writes nothing more (logged): the daemon must stop. */
  fatal(err: TidecastError): void;
  /** An op's rows were refused and it was dropped (logged). */
  dropped?(): void;
}

/**
 * The main thread's side of the writer (`writer.ts`): the worker thread that
 * runs it (`writer-thread.ts`) and the one that copies the WALs back
 * (`wal-checkpointer.ts`), or for ':memory:' a `WriterCore` on this thread.
 * `send` hands an op over and resolves with its answer (null: dropped, or the
 * thread is gone); ops in hand are the backlog the intake waits on.
 */
export class WriterClient {
  readonly #opts: WriterClientOptions;
  #worker: Worker | null = null;
  #checkpointer: Worker | null = null;
  #checkpointerExited: Promise<void> | null = null;
  #inline: WriterCore | null = null;
  #exited: Promise<void> | null = null;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #failure: Error | null = null;
  /** Set once the writer halted: every op in hand and every later one is refused with it. */
  #fatal: TidecastError | null = null;
  #stopping = false;

  constructor(options: WriterClientOptions) {
    this.#opts = options;
    const { file, log } = options;
    if (file === ':memory:') {
      this.#inline = new WriterCore(options.db, (r) => this.#onReply(r), { clock: options.clock });
      return;
    }
    const worker = new Worker(new URL('./writer-thread.js', import.meta.url), {
      workerData: { file, durability: options.durability, maxSizeMiB: options.maxSizeMiB },
      resourceLimits: { maxYoungGenerationSizeMb: WRITER_YOUNG_GENERATION_MB },
    });
    const checkpointer = new Worker(new URL('./wal-checkpointer.js', import.meta.url), { workerData: { files: [file, inputLogPath(file)], intervalMs: 1000 } });
    checkpointer.on('message', (m: { error?: string }) => log.warn({ err: m.error }, 'WAL checkpoint failed; retrying'));
    checkpointer.on('error', (err) => log.error({ err }, 'WAL checkpointer stopped'));
    checkpointer.unref();
    this.#checkpointer = checkpointer;
    this.#checkpointerExited = new Promise((resolve) => checkpointer.once('exit', () => resolve()));
    worker.on('message', (r: WriterReply) => this.#onReply(r));
    worker.on('error', (err) => {
      log.error({ err }, 'store writer thread failed');
      this.#failure = err;
    });
    this.#exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        this.#worker = null;
        if (this.#pending.size > 0 && !this.#stopping) {
          // Died before stop: nothing it had is written (the input log replays it at the next start).
          this.#failure ??= new TidecastError(ErrorCodes.STORE_UNAVAILABLE, `the store writer thread exited (code ${code})`);
          log.error({ code, ops: this.#pending.size }, 'store writer thread exited; holding messages');
        }
        for (const p of this.#pending.values()) p.resolve(null);
        this.#pending.clear();
        resolve();
      }),
    );
    this.#worker = worker;
  }

  /** The failure the writer's ops wait on (disk full, locked, a dead thread), or null. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** Ops handed over and not yet answered. */
  get backlog(): number {
    return this.#pending.size;
  }

  /** Hand an op to the writer; resolves with its result, or null when it was dropped. */
  send(op: WriterRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    // After a fatal failure only the stop goes through (the thread closes its connection and exits).
    if (this.#fatal && op.op !== 'stop') return Promise.reject(this.#fatal);
    if (this.#exited !== null && this.#worker === null) return Promise.resolve(null); // the writer thread is gone
    const id = this.#nextId++;
    const full = { ...op, id } as WriterOp;
    const done = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    if (this.#worker) this.#worker.postMessage(full, transfer);
    else {
      const core = this.#inline!;
      setImmediate(() => core.receive(full));
    }
    return done;
  }

  #onReply(r: WriterReply): void {
    const log = this.#opts.log;
    switch (r.kind) {
      case 'done':
      case 'dropped': {
        const p = this.#pending.get(r.id);
        this.#pending.delete(r.id);
        if (r.kind === 'dropped') {
          log.error({ err: r.error, write: r.what }, 'store write refused; row dropped');
          this.#opts.dropped?.();
          p?.resolve(null);
        } else p?.resolve(r.result);
        if (this.#pending.size === MAX_BACKLOG / 2 && !this.#opts.failing()) this.#opts.recovered();
        return;
      }
      case 'fatal': {
        const err = new TidecastError(
          ErrorCodes.STORE,
          `the database ${this.#opts.file} is damaged (${r.error.code ?? 'error'}: ${r.error.message}, writing ${r.what}); tidecast stops with every input since the last checkpoint kept in its input log. Recover the database (docs/RELIABILITY.md, "A damaged database"), then start tidecast again`,
        );
        this.#fatal = err;
        this.#failure = err;
        log.fatal({ err: r.error, write: r.what, unwritten: this.#pending.size }, 'database damaged: stopping');
        const pending = [...this.#pending.values()];
        this.#pending.clear();
        for (const p of pending) p.reject(err);
        this.#opts.fatal(err);
        return;
      }
      case 'failing':
        if (!this.#opts.failing()) log.error({ err: r.error, write: r.what }, 'store cannot write: holding messages unacknowledged and retrying');
        this.#failure = Object.assign(new Error(r.error.message), { code: r.error.code });
        return;
      case 'fault':
        log.warn({ what: r.what, holdMs: r.holdMs }, 'fault injection: holding a checkpoint transaction open');
        return;
      case 'recovered':
        this.#failure = null;
        log.warn({ after: r.after }, 'store writable again; queued writes committed');
        if (!this.#opts.failing()) this.#opts.recovered();
        return;
    }
  }

  /**
   * Let the writer finish what it has (one more try for ops waiting on a
   * failure) and stop both threads; resolves with the ops it could not write
   * (the input log replays their inputs at the next start). Ops still
   * unanswered are rejected.
   */
  async stop(): Promise<number> {
    this.#stopping = true;
    // Its connections close (and may delete the WAL files) before stop returns: nothing touches the files after.
    // Referenced again, so that the event loop waits for its exit even when nothing else is left (a writer that
    // died); terminated if it has not gone within 5 s.
    const checkpointer = this.#checkpointer;
    this.#checkpointer = null;
    checkpointer?.ref();
    checkpointer?.postMessage('stop');
    const checkpointerGone = checkpointer
      ? Promise.race([this.#checkpointerExited, new Promise<void>((r) => setTimeout(r, 5000).unref())]).then(() => void checkpointer.terminate())
      : Promise.resolve();
    const left = ((await this.send({ op: 'stop' })) as number | null) ?? this.#pending.size;
    await this.#exited;
    await checkpointerGone;
    for (const p of this.#pending.values()) p.reject(new TidecastError(ErrorCodes.STOPPED, 'the store stopped before this write'));
    this.#pending.clear();
    this.#worker = null;
    this.#inline = null;
    return left;
  }
}
