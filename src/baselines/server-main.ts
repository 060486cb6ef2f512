/**
 * The allocation server process of the "server" baseline (src/baselines/server.ts),
 * forked by the allocator study (src/study/pools.ts) with arguments
 * `<pool uri> <slots>`. Sends { type: 'ready' } once it serves and
 * { type: 'report', report } when the stop word ends its loop, then exits.
 * An error is sent as { type: 'error', message } and exits with status 1.
 */
import { serve } from './server.js';

const [uri, slots] = process.argv.slice(2);
const parent = process.ppid;
// The serve loop never yields to the event loop, so a dead parent is seen by its pid changing.
serve(uri, Number(slots), () => process.send?.({ type: 'ready' }), () => process.ppid === parent)
  .then((report) => process.send?.({ type: 'report', report }, () => process.exit(0)))
  .catch((err: Error) => {
    process.send?.({ type: 'error', message: `${(err as { code?: string }).code ?? 'ERROR'}: ${err.message}` }, () => process.exit(1));
  });
