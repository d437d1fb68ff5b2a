// Logging by severity, chosen where the event happens: info for what an admin follows
// (streams, leases, start and stop), warn for what degrades service, error for what loses
// something or is a bug. pino in production (errors under `err` keep their stack); silent in tests.
import type { Logger } from 'pino';

export type Fields = Record<string, unknown>;

export interface Log {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export const silent: Log = { info() {}, warn() {}, error() {} };

export function pinoLog(logger: Logger): Log {
  return {
    info: (msg, fields = {}) => logger.info(fields, msg),
    warn: (msg, fields = {}) => logger.warn(fields, msg),
    error: (msg, fields = {}) => logger.error(fields, msg),
  };
}
