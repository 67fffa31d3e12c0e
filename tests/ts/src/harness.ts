// Starts a real `missive serve` on the default model for the suite, as the Python
// conformance suite's conftest does: MISSIVE_BIN and MISSIVE_TEST_MODEL come from scripts/test.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const API_KEY = 'sk-ant-api03-ts-conformance-key';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject()));
    });
  });
}

export interface Running {
  url: string;
  stop(): void;
}

export async function startMissive(): Promise<Running> {
  const bin = process.env.MISSIVE_BIN;
  const model = process.env.MISSIVE_TEST_MODEL;
  if (!bin || !model) {
    throw new Error('MISSIVE_BIN and MISSIVE_TEST_MODEL must be set (scripts/test sets them)');
  }
  const home = mkdtempSync(join(tmpdir(), 'missive-ts-'));
  const port = await freePort();
  const log = openSync(join(home, 'serve.log'), 'a');
  const child: ChildProcess = spawn(bin, ['serve'], {
    env: { ...process.env, MISSIVE_HOME: home, MISSIVE_MODEL: model, MISSIVE_API_KEY: API_KEY, MISSIVE_PORT: String(port) },
    stdio: ['ignore', log, log],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`missive serve exited early; see ${home}/serve.log`);
    try {
      if ((await fetch(`${url}/health`)).ok) return { url, stop: () => child.kill('SIGTERM') };
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  child.kill('SIGKILL');
  throw new Error('missive serve did not come up in 120 s');
}
