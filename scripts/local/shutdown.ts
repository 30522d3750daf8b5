// scripts/local/shutdown.ts — last-resort cleanup for the local stack's child processes.
// Registers synchronous "kill" callbacks that run on process exit and on SIGINT/SIGTERM/SIGHUP when
// nobody else handles the signal (main.ts handles signals itself and stops things in order), so a
// crashed or interrupted Node process never leaves Deno functions or Postgres behind.
import process from "node:process";

type Kill = () => void;

const kills = new Set<Kill>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let installed = false;

function runKills(): void {
  for (const kill of [...kills]) {
    try {
      kill();
    } catch {
      // best effort: the process may already be gone
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  // Someone else (main.ts, a test runner) handles this signal: they call stop(); only exit kills here.
  if (process.listenerCount(signal) > 1) return;
  runKills();
  // Restore the default action and re-raise, so the process ends as it would have without us.
  process.removeListener(signal, onSignal);
  process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", runKills);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

/** Registers `kill` (synchronous, idempotent) to run if the process exits or is signalled; returns an unregister. */
export function onProcessExit(kill: Kill): () => void {
  install();
  kills.add(kill);
  return () => {
    kills.delete(kill);
  };
}

/** True when the process `pid` exists (signal 0 probes without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits until `pid` has exited or `timeoutMs` passes; returns whether it exited. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !isAlive(pid);
}
