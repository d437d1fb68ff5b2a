// A Log that keeps what it is told, for tests that check log lines.
import type { Fields, Log } from '../../src/domain/log.js';

export interface RecordedLine {
  msg: string;
  fields: Fields;
}

/** Records warn and error lines, and info lines too when `info` is set. */
export function recordingLog(opts: { info?: boolean } = {}): { log: Log; lines: RecordedLine[] } {
  const lines: RecordedLine[] = [];
  const keep = (msg: string, fields: Fields = {}) => {
    lines.push({ msg, fields });
  };
  return { log: { info: opts.info ? keep : () => {}, warn: keep, error: keep }, lines };
}
