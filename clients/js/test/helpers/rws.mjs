// Starts `rws serve` (the binary named by RWS_BIN) on a free port of 127.0.0.1
// and reads the bound address from its stderr, as tests/cli.rs does.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export function rwsBin() {
  const bin = process.env.RWS_BIN;
  if (!bin) throw new Error('RWS_BIN is not set: point it at an `rws` binary (cargo build; target/debug/rws)');
  if (!existsSync(bin)) throw new Error(`RWS_BIN=${bin} does not exist`);
  return bin;
}

/** Returns { url: 'ws://127.0.0.1:PORT/ws', port, stop() }. */
export async function startRws(args = [], { bind = '127.0.0.1:0' } = {}) {
  const child = spawn(rwsBin(), ['serve', '--bind', bind, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rws serve did not print its address in time: ${stderr}`)), 15_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`rws serve exited with ${code}: ${stderr}`));
    });
  });
  child.removeAllListeners('exit');
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    child,
    /** SIGTERM: the server drains its sessions and closes them with 1012. */
    terminate() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    },
  };
}
