import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * The process logger: JSON lines (journald keeps them as they are), one child
 * per component. `destination` 1 is stdout, 2 is stderr (for commands whose
 * stdout is a table).
 */
export function createLogger(level = 'info', destination: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { name: 'tidecast' },
      // Secrets are never logged on purpose; this catches an accident.
      redact: { paths: ['password', '*.password', 'secrets', '*.secrets', 'config.mqtt.password'], censor: '[redacted]' },
    },
    pino.destination({ fd: destination, sync: destination === 2 }),
  );
}

/** A logger that drops everything (library use and tests that do not assert on logs). */
export const silentLogger: Logger = pino({ level: 'silent' });

/** Coloured one-line logs on stderr, for people watching `tidecast demo`; never for the service. */
export function createHumanLogger(level = 'warn'): Logger {
  return pino({ level, base: undefined }, pretty({ destination: 2, sync: true, ignore: 'pid,hostname,name', translateTime: 'HH:MM:ss' }));
}
