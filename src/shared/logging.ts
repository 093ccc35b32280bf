// JSON logs with pino. Each component gets a child logger with its name, so
// `baton up`, which runs every component in one process, still says who spoke.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggingOptions {
  level: LevelWithSilent;
}

export function createLogger(component: string, options: LoggingOptions): Logger {
  return pino({ level: options.level, base: { component } }, pino.destination({ dest: 2, sync: false }));
}

/** A logger for tests and embedded use that writes nothing. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
