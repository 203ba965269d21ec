/**
 * What a command gets from the process edge (`main.ts`): its output lines and
 * the stop signals. Commands print nothing and handle no signal themselves.
 */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Resolves `signal` on the first SIGTERM/SIGINT (a second one exits at once); `dispose` stops listening. */
  onStopSignal(): { signal: AbortSignal; dispose(): void };
  /** Whether stderr is a terminal (progress lines redraw in place). */
  readonly stderrIsTty: boolean;
  writeErr(text: string): void;
}

/** A command: its arguments (after the command name) to an exit code; throws what `main.ts` maps to one. */
export type Command = (args: string[], io: CliIo) => Promise<number>;
