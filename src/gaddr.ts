/**
 * Global addresses (docs/design.md, "Addresses"): a gaddr is a JS
 * number below 2^53, `node * 2^40 + byte offset`, 12 bits of memory-node id
 * and up to 1 TiB per node. It stays an exact integer in a double, so the hot
 * path needs no BigInt. 0 is never valid (offset 0 is the superblock).
 */

/** Bytes addressable per memory node (2^40 = 1 TiB). */
export const NODE_SPAN = 2 ** 40;
/** Largest memory-node id (12 bits). */
export const MAX_NODE = 4095;

/** gaddr of byte `offset` on memory node `node`. */
export function toGaddr(node: number, offset: number): number {
  return node * NODE_SPAN + offset;
}

/** Memory-node id of a gaddr. */
export function nodeOf(gaddr: number): number {
  return Math.floor(gaddr / NODE_SPAN);
}

/** Byte offset of a gaddr within its memory node. */
export function offsetOf(gaddr: number): number {
  return gaddr % NODE_SPAN;
}
