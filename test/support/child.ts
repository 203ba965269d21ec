import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SERVICE_NODE_FLAGS } from '../../src/node-flags.js';
import { packageRoot } from '../../src/paths.js';
import { waitFor } from './fixtures.js';

const bin = path.join(packageRoot, 'dist', 'src', 'main.js');

/** tidecast as a child process: its JSON log lines, stderr and exit. */
export interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  stderr(): string;
  readonly exit: Promise<number | null>;
}

/** Run the built CLI (`dist/src/main.js`) with arguments and extra environment, under node's flags as the service runs it. */
export function startChild(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, [...SERVICE_NODE_FLAGS, bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, lines, stderr: () => err, exit };
}

/** The first JSON log line with this `msg`. */
export function logged(c: Child, msg: string): Record<string, unknown> | undefined {
  for (const l of c.lines) {
    if (!l.includes(msg)) continue;
    try {
      const o = JSON.parse(l) as Record<string, unknown>;
      if (o.msg === msg) return o;
    } catch {
      // not a JSON line
    }
  }
  return undefined;
}

/** Wait for the daemon's "ready" line; returns its HTTP base URL when it logged one. */
export async function waitReady(c: Child, timeoutMs = 20_000): Promise<string | undefined> {
  await waitFor(() => logged(c, 'ready') !== undefined || c.proc.exitCode !== null, timeoutMs, 'the daemon to be ready');
  if (c.proc.exitCode !== null) throw new Error(`the daemon exited ${c.proc.exitCode}: ${c.stderr()}\n${c.lines.slice(-5).join('\n')}`);
  return logged(c, 'http endpoint listening')?.url as string | undefined;
}

/** SIGTERM, unless it has exited already; resolves with its exit code. */
export async function terminate(c: Child): Promise<number | null> {
  if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGTERM');
  return c.exit;
}

/** Resident set size of a process, bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** One Prometheus sample from a /metrics text, summed over label sets matching `labels`. */
export function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const execFileP = promisify(execFile);

/** Run the built CLI to completion: its exit code and output. */
export async function runCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [bin, ...args], { cwd: packageRoot, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
