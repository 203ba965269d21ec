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
  /** Another tidecast holds the store's lock; a restart once it has stopped succeeds. */
  LOCKED: 75,
  /** The configuration is invalid. Restarting does not help. */
  CONFIG: 78,
  /** A second SIGINT/SIGTERM while stopping. */
  SECOND_SIGNAL: 130,
} as const;

/** The codes systemd must not restart on: a restart would fail the same way (a loop). */
export const NO_RESTART_EXIT_CODES: readonly number[] = [ExitCodes.MODEL, ExitCodes.STORE, ExitCodes.CONFIG];
