/**
 * Progress of long benchmarks: a cli-progress bar on stderr when stderr is
 * a terminal, nothing otherwise (pipes and CI logs stay clean).
 */
import cliProgress from 'cli-progress';

/** A progress reporter: `update(done, total)` as work completes, `stop()` at the end (idempotent). */
export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** A bar labelled `label` when stderr is a TTY; a no-op reporter otherwise. */
export function progress(label: string): Progress {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} {percentage}%`, stream: process.stderr, clearOnComplete: true, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) { bar.start(total, 0); started = true; }
      bar.setTotal(total);
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
