/**
 * SIGINT / SIGTERM during a benchmark: instead of dying with worker
 * processes and a temporary pool left behind, the first signal aborts the
 * run (runMicro/runTrace stop their workers and remove the pool, then reject
 * with code ABORTED). A second signal exits at once.
 */

/**
 * Runs `body` with an AbortSignal that the first SIGINT or SIGTERM aborts.
 * The handlers are removed when `body` settles.
 */
export async function withInterrupt<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(`\n${sig}: stopping workers and cleaning up (again to exit at once)\n`);
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(ac.signal);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}
