/**
 * Named crash points of the core (assembly/crash.ts, same order: the id of a
 * name is its index + 1). A test arms one with the `crashPoint` pool option
 * or the DMEM_CRASH_POINT environment variable ("name" or "name:skip", where
 * skip is how many passes to let through first); reaching it kills the
 * process with SIGKILL, in the middle of its metadata writes.
 */
import { InvalidArgumentError } from './errors.js';

export const CRASH_POINTS = [
  'register.claimed',
  'alloc.chunk.committed',
  'alloc.chunk.logged',
  'claim.claimed',
  'claim.unsealing',
  'alloc.spans.tails',
  'alloc.spans.committed',
  'alloc.sections.tails',
  'alloc.sections.committed',
  'retire.marked',
  'retire.sealing',
  'retire.sealed',
  'free.chunk.logged',
  'free.spans.logged',
  'free.spans.partial',
  'free.sections.logged',
  'free.sections.partial',
  'recover.claimed',
  'recover.partial',
  'recover.reclaimed',
  'ring.entry-written',
  'ring.retired',
  'ring.popped',
  'cache.pop',
  'cache.stolen',
  'heap.pop',
  'heap.free',
  'walk.section',
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];

/**
 * Parses "name" or "name:skip" into the core's point id and skip count.
 * @throws InvalidArgumentError for an unknown name or a bad skip count
 */
export function parseCrashPoint(spec: string): { id: number; skip: number } {
  const [name, skipText] = spec.split(':');
  const index = (CRASH_POINTS as readonly string[]).indexOf(name);
  if (index < 0) throw new InvalidArgumentError(`unknown crash point "${name}": one of ${CRASH_POINTS.join(', ')}`);
  const skip = skipText === undefined ? 0 : Number(skipText);
  if (!Number.isInteger(skip) || skip < 0) throw new InvalidArgumentError(`crash point skip count must be a non-negative integer, got "${skipText}"`);
  return { id: index + 1, skip };
}
