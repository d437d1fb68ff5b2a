// consultctl (src/cli.ts under tsx) run against a sidecar's admin API, for the e2e tests that drive it as an operator
// would. The CONSULT_* variables of the test's own environment are left out and the run directory is a temporary one,
// so only the URL and token given here count.
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ConsultctlResult {
  code: number | null; // null: it did not exit by itself (the timeout killed it)
  stdout: string;
  stderr: string; // trimmed
}

export function runConsultctl(url: string, token: string, args: string[], timeoutMs = 60_000): Promise<ConsultctlResult> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONSULT_')));
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', '--url', url, '--token', token, ...args],
      { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, env: { ...inherited, CONSULT_RUN_DIR: os.tmpdir() } },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr: stderr.trim() });
      },
    ),
  );
}
