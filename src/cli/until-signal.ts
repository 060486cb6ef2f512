/**
 * Long-running commands (`dmem server --listen`, `dmem client`) wait here
 * until SIGINT or SIGTERM; a timer keeps Node alive meanwhile (signal
 * listeners do not).
 */

/** Resolves with the first SIGINT or SIGTERM; the listeners are removed then. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise<NodeJS.Signals>((resolve) => {
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    const stop = (sig: NodeJS.Signals): void => {
      clearInterval(keepAlive);
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      resolve(sig);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
