// Reading the sidecar's configuration and TLS files from disk; the pure parsing and checks are in
// src/domain/config.ts.
import { readFileSync } from 'node:fs';
import { type TlsConfig, ConfigError, type Config, parseConfig } from '../domain/config.js';

/** Reads grpc.tls's files (at start); an error names the field and the path. */
export function readTlsFiles(tls: TlsConfig): { cert: Buffer; key: Buffer; clientCa?: Buffer } {
  const read = (field: keyof TlsConfig, path: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ConfigError(`config: grpc.tls.${field}: cannot read ${path}: ${(e as Error).message}`);
    }
  };
  return {
    cert: read('cert', tls.cert),
    key: read('key', tls.key),
    ...(tls.clientCa === undefined ? {} : { clientCa: read('clientCa', tls.clientCa) }),
  };
}

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`config: cannot read ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw);
}
