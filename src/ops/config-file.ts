// Reading the sidecar's configuration (JSON or YAML) and TLS files from disk; the pure parsing and checks are in
// src/domain/config.ts.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { type TlsConfig, ConfigError, type Config, type Override, parseConfig } from '../domain/config.js';

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

/** JSON, or YAML for a .yaml or .yml file. */
function parseText(path: string, text: string): unknown {
  if (/\.ya?ml$/i.test(path)) {
    try {
      return YAML.parse(text, { prettyErrors: true });
    } catch (e) {
      throw new ConfigError(`config: ${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The config in the file at path (JSON, or YAML by its extension), with the overrides of the environment and the
 * command line on top (outsideOverrides() in src/domain/config.ts). `named` says where the path came from (e.g.
 * CONSULT_CONFIG) so that an unreadable file names it.
 */
export function loadConfig(path: string, overrides: readonly Override[] = [], named = 'config'): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${named}: cannot read ${path}: ${(e as Error).message}`);
  }
  return parseConfig(parseText(path, text) ?? {}, overrides);
}
