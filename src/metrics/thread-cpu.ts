/**
 * CPU time per thread of the daemon (Linux /proc): which of the main thread,
 * the store's writer, a model's session thread or the HTTP thread is the
 * busy one. Each worker names itself with `announceThread` as it starts; the
 * main thread hears it on a BroadcastChannel and reads each named thread's
 * /proc/self/task/TID/stat when metrics are collected. Every thread nobody
 * named (V8's platform and GC threads, libuv's pool, onnxruntime's intra-op
 * threads) is summed as `other`. Elsewhere than Linux there is nothing to read
 * and the metric stays empty.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { BroadcastChannel, isMainThread } from 'node:worker_threads';

const CHANNEL = 'tidecast:threads';
const TICK_S = 1 / 100;

/** This thread's id as the kernel knows it (/proc/thread-self → "PID/task/TID"), or null where there is no /proc. */
function ownTid(): number | null {
  try {
    const link = readlinkSync('/proc/thread-self');
    return Number(link.slice(link.lastIndexOf('/') + 1));
  } catch {
    return null;
  }
}

/** utime + stime of a stat line, seconds (fields after the command name, which may hold spaces: the 12th and 13th). */
function statSeconds(path: string): number | null {
  try {
    const stat = readFileSync(path, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S;
  } catch {
    return null;
  }
}

/** Called once at the top of a worker thread: gives its CPU time a name in `tidecast_thread_cpu_seconds_total`. */
export function announceThread(name: string): void {
  const tid = ownTid();
  if (tid === null) return;
  const channel = new BroadcastChannel(CHANNEL);
  channel.postMessage({ name, tid });
  // Closed with the thread: closing now could drop the message before the main thread's channel has it.
  channel.unref();
}

/** The named threads the main thread has heard of, by tid. */
const named = new Map<number, string>();
if (isMainThread) {
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (e: unknown): void => {
    const { name, tid } = (e as { data: { name: string; tid: number } }).data;
    named.set(tid, name);
  };
  channel.unref();
}

/**
 * CPU seconds by thread name since the process started, each only growing:
 * `read` adds what each named thread alive now used since the last read, the
 * main thread's as `main`, and the rest of the process's (threads nobody named,
 * and the last moments of a named thread that ended) as `other`; the names sum
 * to the process's CPU time. Empty where there is no /proc.
 */
export class ThreadCpu {
  readonly #seconds = new Map<string, number>();
  readonly #last = new Map<number, number>();
  #lastTotal = 0;

  read(): ReadonlyMap<string, number> {
    const total = statSeconds('/proc/self/stat');
    if (total === null) return this.#seconds;
    let rest = total - this.#lastTotal;
    this.#lastTotal = total;
    for (const [tid, name] of [[process.pid, 'main'] as const, ...named]) {
      const s = statSeconds(`/proc/self/task/${tid}/stat`);
      if (s === null) {
        named.delete(tid);
        this.#last.delete(tid);
        continue;
      }
      const d = s - (this.#last.get(tid) ?? 0);
      this.#last.set(tid, s);
      this.#seconds.set(name, (this.#seconds.get(name) ?? 0) + d);
      rest -= d;
    }
    this.#seconds.set('other', (this.#seconds.get('other') ?? 0) + Math.max(0, rest));
    return this.#seconds;
  }
}
