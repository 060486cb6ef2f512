/**
 * WindowedTransport moved to the transport contract, src/transport.ts
 * (`dmem/transport`); this path re-exports it for code written against it.
 */
export { WindowedTransport } from '../transport.js';
