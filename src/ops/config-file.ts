// Reading the sidecar's configuration (JSON or YAML), TLS files and admin token files from disk; the pure parsing and checks are in
// src/domain/config.ts.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import {
  type AdminTokenConfig,
  type TlsConfig,
  ConfigError,
  type Config,
  type Override,
  MIN_TOKEN_LENGTH,
  parseConfig,
} from '../domain/config.js';
import type { Role } from '../domain/audit.js';

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

/**
 * The admin tokens with each tokenFile read (at start, white space around the secret dropped); an error names the
 * field and the path, or a file whose secret is too short.
 */
export function readAdminTokens(
  tokens: readonly AdminTokenConfig[],
): ({ name: string; role: Role; token: string } | { name: string; role: Role; sha256: string })[] {
  return tokens.map((t, i) => {
    const { name, role } = t;
    if (t.token !== undefined) return { name, role, token: t.token };
    if (t.sha256 !== undefined) return { name, role, sha256: t.sha256.toLowerCase() };
    let token: string;
    try {
      token = readFileSync(t.tokenFile!, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(`config: admin.tokens[${i}].tokenFile: cannot read ${t.tokenFile}: ${(e as Error).message}`);
    }
    if (token.length < MIN_TOKEN_LENGTH)
      throw new ConfigError(
        `config: admin.tokens[${i}].tokenFile: ${t.tokenFile} must hold a token of at least ${MIN_TOKEN_LENGTH} characters`,
      );
    return { name, role, token };
  });
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
