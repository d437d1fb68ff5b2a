// The version in package.json, read at run time relative to this module: package.json is two directories up
// from src/ops/ (under tsx) and from dist/ops/ (built), in a checkout and in an install alike.
import { readFileSync } from 'node:fs';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}
