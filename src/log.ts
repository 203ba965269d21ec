import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * The process logger: JSON lines (journald keeps them as they are), one child
 * per component. `destination` 1 is stdout, 2 is stderr (for commands whose
 * stdout is a table).
 */
export function createLogger(level = 'info', destination: 1 | 2 = 1): Logger {
  const family = new Set<Logger>();
  const root = pino(
    {
      level,
      base: { name: 'tidecast' },
      // pino children keep the level they were created with; remember them all
      // so setLogLevel can change the whole tree at run time (SIGHUP).
      onChild: (child) => void family.add(child),
      // Secrets are never logged on purpose; this catches an accident.
      redact: { paths: ['password', '*.password', 'secrets', '*.secrets', 'config.mqtt.password'], censor: '[redacted]' },
    },
    pino.destination({ fd: destination, sync: destination === 2 }),
  );
  families.set(root, family);
  return root;
}

const families = new WeakMap<Logger, Set<Logger>>();

/** Change the level of a logger made by createLogger and of every child it has. */
export function setLogLevel(root: Logger, level: string): void {
  root.level = level;
  for (const child of families.get(root) ?? []) child.level = level;
}

/** A logger that drops everything (library use and tests that do not assert on logs). */
export const silentLogger: Logger = pino({ level: 'silent' });

/** Coloured one-line logs on stderr, for people watching `tidecast demo`; never for the service. */
export function createHumanLogger(level = 'warn'): Logger {
  return pino({ level, base: undefined }, pretty({ destination: 2, sync: true, ignore: 'pid,hostname,name', translateTime: 'HH:MM:ss' }));
}
