import { type ErrorCode, ErrorCodes, TidecastError } from './errors.js';

/**
 * tidecast's exit codes (BSD sysexits.h), shared by the CLI and the systemd
 * unit's RestartPreventExitStatus= (a test checks the unit against them).
 */
export const ExitCodes = {
  OK: 0,
  /** A bad command line. */
  USAGE: 64,
  /** A model that cannot run: missing, corrupt, or a card that does not fit it. Restarting does not help. */
  MODEL: 65,
  /** No execution provider could run a model (strict: its first choice failed); a restart may find the device. */
  UNAVAILABLE: 69,
  /** The database or input log is damaged, or cannot be opened. Restarting does not help: see RELIABILITY.md. */
  STORE: 74,
  /** Try again later: another tidecast holds the store's lock, or the store cannot write right now (disk full). */
  LOCKED: 75,
  /** The configuration is invalid. Restarting does not help. */
  CONFIG: 78,
  /** A second SIGINT/SIGTERM while stopping. */
  SECOND_SIGNAL: 130,
} as const;

/** The codes systemd must not restart on: a restart would fail the same way (a loop). */
export const NO_RESTART_EXIT_CODES: readonly number[] = [ExitCodes.MODEL, ExitCodes.STORE, ExitCodes.CONFIG];

/** The exit code each catalogued error ends the process with (every code has one: the type says so). */
export const EXIT_CODE_OF: Readonly<Record<ErrorCode, number>> = {
  [ErrorCodes.MODEL_NOT_FOUND]: ExitCodes.MODEL,
  [ErrorCodes.MODEL_CORRUPT]: ExitCodes.MODEL,
  [ErrorCodes.PROVIDER]: ExitCodes.UNAVAILABLE,
  [ErrorCodes.CARD_INVALID]: ExitCodes.MODEL,
  [ErrorCodes.SIGNATURE]: ExitCodes.MODEL,
  [ErrorCodes.STATE_UNPAIRED]: ExitCodes.MODEL,
  [ErrorCodes.FEATURE_COUNT]: ExitCodes.MODEL,
  [ErrorCodes.OUTPUT_COUNT]: ExitCodes.MODEL,
  [ErrorCodes.STEP_SHAPE]: ExitCodes.MODEL,
  [ErrorCodes.CONFIG]: ExitCodes.CONFIG,
  [ErrorCodes.DECODE]: ExitCodes.MODEL,
  [ErrorCodes.STORE]: ExitCodes.STORE,
  [ErrorCodes.STORE_UNAVAILABLE]: ExitCodes.LOCKED,
  [ErrorCodes.LOCKED]: ExitCodes.LOCKED,
  [ErrorCodes.STOPPED]: 1,
  [ErrorCodes.HTTP]: ExitCodes.LOCKED,
  [ErrorCodes.INTERNAL]: 1,
};

/** The exit code of what a command threw: a catalogued error's own, 64 for bad arguments, else 1. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof TidecastError) return EXIT_CODE_OF[e.code];
  if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return ExitCodes.USAGE;
  return 1;
}
