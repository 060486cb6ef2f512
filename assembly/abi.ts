/**
 * The numbers a host needs to talk to the core, in one place, exported as
 * immutable Wasm globals (i32) that the host reads when it loads the module
 * (src/abi.ts): status codes, the field indexes of every result block, and
 * the layout constants the client API reports. A host never writes these
 * numbers itself; test/abi-globals.test.ts checks that the host reads every
 * global here and that the blocks mean what these indexes say.
 *
 * Naming: GROUP_FIELD in upper snake case; src/abi.ts maps a group to an
 * object of camelCase keys (STATS_CAS_RETRIES -> StatsField.casRetries).
 * `*_FIELDS` is the length of a block in f64 slots.
 *
 * Result blocks are f64 arrays at the pointer an export returns, valid until
 * the next call of the same export:
 *   stats()          STATS_*       this client's counters
 *   scanPool()       CENSUS_*      pool-wide census
 *   slotInfo(id)     SLOT_*        one client-table slot
 *   fsck(repair)     FSCK_*        findings
 *   recover(), releaseHeld()  RECLAIM_*  what was given back
 *   heapCensus()     HEAP_CENSUS_* per object class, HEAP_CENSUS_FIELDS apart
 *   orphanRecords()  ORPHAN_RECORD_WORDS u64 per record
 *   regionResult()   REGION_RESULT_*: two f64 then the name bytes
 */
import {
  CHUNK_BYTES, DEFAULT_LEASE_MS, E_BUSY, E_CLIENT_TABLE_FULL, E_CORRUPT, E_DOUBLE_FREE, E_EXHAUSTED, E_EXISTS,
  E_INVALID_ADDRESS, E_INVALID_ARGUMENT, E_LEASE_EXPIRED, E_NOT_ATTACHED, E_NOT_A_POOL, E_NOT_FOUND, E_VERSION, HEADER_BYTES,
  LAYOUT_VERSION as VERSION, MAX_CLASS, MAX_CLIENTS, OK, SECTION_BYTES, SECTION_SPANS, SPAN_CHUNKS,
} from './layout';
import { SLOT_FREE, SLOT_LIVE, SLOT_RECOVERING, SLOT_REVOKED } from './client';
import { MAX_ORPHANS, ORPHAN_CHUNKS, ORPHAN_SECTION, ORPHAN_SPAN } from './audit';
import { MAX_SLAB_OBJECT, OBJECT_CLASSES, SLAB_BYTES } from './slab';
import { SCAN_FIELDS } from './scan';

// ---------------------------------------------------------------- statuses

export const STATUS_OK: i32 = OK;
export const STATUS_NOT_A_POOL: i32 = E_NOT_A_POOL;
export const STATUS_VERSION: i32 = E_VERSION;
export const STATUS_CORRUPT: i32 = E_CORRUPT;
export const STATUS_EXHAUSTED: i32 = E_EXHAUSTED;
export const STATUS_INVALID_ADDRESS: i32 = E_INVALID_ADDRESS;
export const STATUS_DOUBLE_FREE: i32 = E_DOUBLE_FREE;
export const STATUS_INVALID_ARGUMENT: i32 = E_INVALID_ARGUMENT;
export const STATUS_CLIENT_TABLE_FULL: i32 = E_CLIENT_TABLE_FULL;
export const STATUS_NOT_ATTACHED: i32 = E_NOT_ATTACHED;
export const STATUS_EXISTS: i32 = E_EXISTS;
export const STATUS_NOT_FOUND: i32 = E_NOT_FOUND;
export const STATUS_BUSY: i32 = E_BUSY;
export const STATUS_LEASE_EXPIRED: i32 = E_LEASE_EXPIRED;

// ------------------------------------------------------ geometry(field)

export const GEOMETRY_POOL_BYTES: i32 = 0;
export const GEOMETRY_SECTIONS: i32 = 1;
export const GEOMETRY_MAX_CLIENTS: i32 = 2;
export const GEOMETRY_DATA_OFFSET: i32 = 3;
export const GEOMETRY_CLIENT_TABLE_OFFSET: i32 = 4;
export const GEOMETRY_SECTION_HEADER_OFFSET: i32 = 5;
export const GEOMETRY_SPAN_HEADER_OFFSET: i32 = 6;
export const GEOMETRY_OWNER_LOG_OFFSET: i32 = 7;
export const GEOMETRY_CLIENT_ID: i32 = 8;
export const GEOMETRY_HEADER_BYTES: i32 = 9;
/** This client's slot offset, -1 before register. */
export const GEOMETRY_SLOT_OFFSET: i32 = 10;
export const GEOMETRY_SLOT_GEN: i32 = 11;
export const GEOMETRY_FIELDS: i32 = 12;

// ----------------------------------------------------------- stats() block

export const STATS_ALLOCS: i32 = 0;
export const STATS_FREES: i32 = 1;
export const STATS_CAS_ATTEMPTS: i32 = 2;
export const STATS_CAS_RETRIES: i32 = 3;
export const STATS_MAX_RETRIES: i32 = 4;
export const STATS_ALLOC_OPS: i32 = 5;
export const STATS_FREE_OPS: i32 = 6;
export const STATS_OPS: i32 = 7;
/** 11 slots: size classes 0..9, then blocks above 2 MiB. */
export const STATS_ALLOCATED_PER_CLASS: i32 = 8;
export const STATS_FREED_PER_CLASS: i32 = 19;
export const STATS_FIELDS: i32 = 30;

// -------------------------------------------------------- scanPool() block

export const CENSUS_FREE_SECTIONS: i32 = 0;
export const CENSUS_CHUNK_SECTIONS: i32 = 1;
export const CENSUS_LARGE_SECTIONS: i32 = 2;
export const CENSUS_FREE_CHUNKS: i32 = 3;
export const CENSUS_ORPHAN_CHUNKS: i32 = 4;
export const CENSUS_LARGEST_FREE_CHUNKS: i32 = 5;
export const CENSUS_SEALED_SPANS: i32 = 6;
export const CENSUS_LIVE_CLIENTS: i32 = 7;
/** 11 slots each, as STATS_ALLOCATED_PER_CLASS. */
export const CENSUS_BLOCKS_PER_CLASS: i32 = 8;
export const CENSUS_CHUNKS_PER_CLASS: i32 = 19;
export const CENSUS_FIELDS: i32 = <i32>SCAN_FIELDS;

// ------------------------------------------------------ slotInfo(id) block

export const SLOT_STATE: i32 = 0;
export const SLOT_GEN: i32 = 1;
/** 0 while RECOVERING. */
export const SLOT_PID: i32 = 2;
export const SLOT_HEARTBEAT_MS: i32 = 3;
export const SLOT_HOST_LOW: i32 = 4;
export const SLOT_HOST_HIGH: i32 = 5;
export const SLOT_START_TIME: i32 = 6;
/** 1 when the owner acknowledged the revocation of this generation. */
export const SLOT_ACKNOWLEDGED: i32 = 7;
export const SLOT_RECOVERER: i32 = 8;
export const SLOT_RECOVERER_GEN: i32 = 9;
/** The owner's PID namespace (inode of /proc/PID/ns/pid), 0 unknown. */
export const SLOT_PID_NAMESPACE: i32 = 10;
/** The owner's kernel boot id (52-bit hash), 0 unknown. */
export const SLOT_BOOT_ID: i32 = 11;
/** The pid the identity words were written for (equal to SLOT_PID when they describe this owner). */
export const SLOT_IDENTITY_PID: i32 = 12;
export const SLOT_FIELDS: i32 = 13;

/** Values of SLOT_STATE. */
export const SLOT_STATE_FREE: i32 = <i32>SLOT_FREE;
export const SLOT_STATE_LIVE: i32 = <i32>SLOT_LIVE;
export const SLOT_STATE_REVOKED: i32 = <i32>SLOT_REVOKED;
export const SLOT_STATE_RECOVERING: i32 = <i32>SLOT_RECOVERING;

// ------------------------------------------------------------ fsck() block

export const FSCK_SECTIONS: i32 = 0;
export const FSCK_ORPHAN_CHUNKS: i32 = 1;
export const FSCK_BLOCKS_OF_DEAD_CLIENTS: i32 = 2;
export const FSCK_SEALED_SPANS_IN_CHUNK_SECTIONS: i32 = 3;
export const FSCK_RETIRING_SECTIONS: i32 = 4;
export const FSCK_UNSEALED_SPANS_IN_FREE_SECTIONS: i32 = 5;
export const FSCK_LARGE_TAILS_WITHOUT_HEAD: i32 = 6;
export const FSCK_HINT_MISMATCHES: i32 = 7;
export const FSCK_ENTRIES_SCANNED: i32 = 8;
export const FSCK_REPAIRED: i32 = 9;
export const FSCK_FIELDS: i32 = 10;

// ------------------------------------------- recover() / releaseHeld() block

export const RECLAIM_BLOCKS: i32 = 0;
export const RECLAIM_CHUNKS: i32 = 1;
export const RECLAIM_SPANS_UNSEALED: i32 = 2;
export const RECLAIM_SECTIONS_FIXED: i32 = 3;
export const RECLAIM_ENTRIES_SCANNED: i32 = 4;
export const RECLAIM_IN_FLIGHT: i32 = 5;
/** A status: negative when recover() refused (the slot was not recoverable). */
export const RECLAIM_STATUS: i32 = 6;
export const RECLAIM_OBJECTS: i32 = 7;
/** 0 when complete, else the status that left heap objects for a later run (BUSY: the ring's lock was held). */
export const RECLAIM_INCOMPLETE: i32 = 8;
export const RECLAIM_FIELDS: i32 = 9;

// ------------------------------------------------------- orphan records

/** u64 words per record: kind, index, header word, orphan chunk bits (kind 1). */
export const ORPHAN_RECORD_WORDS: i32 = 4;
export const ORPHAN_MAX_RECORDS: i32 = <i32>MAX_ORPHANS;
export const ORPHAN_KIND_CHUNKS: i32 = <i32>ORPHAN_CHUNKS;
export const ORPHAN_KIND_SPAN: i32 = <i32>ORPHAN_SPAN;
export const ORPHAN_KIND_SECTION: i32 = <i32>ORPHAN_SECTION;

// ------------------------------------------------------ heapCensus() block

export const HEAP_CENSUS_SLABS: i32 = 0;
export const HEAP_CENSUS_OBJECTS: i32 = 1;
export const HEAP_CENSUS_CACHED: i32 = 2;
export const HEAP_CENSUS_REQUESTED_BYTES: i32 = 3;
export const HEAP_CENSUS_FIELDS: i32 = 4;

// ---------------------------------------------------- regionResult() block

export const REGION_RESULT_OFFSET: i32 = 0;
export const REGION_RESULT_BYTES: i32 = 1;
/** Byte offset of the NUL-padded name in the block. */
export const REGION_RESULT_NAME_AT: i32 = 16;
/** Longest region name in bytes of UTF-8 (the size of regionNameBuffer()). */
export const REGION_NAME_MAX: i32 = 40;

// ------------------------------------------------------------------ layout

export const LAYOUT_VERSION: i32 = <i32>VERSION;
export const LAYOUT_CHUNK_BYTES: i32 = <i32>CHUNK_BYTES;
export const LAYOUT_SPAN_CHUNKS: i32 = <i32>SPAN_CHUNKS;
export const LAYOUT_SECTION_SPANS: i32 = <i32>SECTION_SPANS;
export const LAYOUT_SECTION_BYTES: i32 = <i32>SECTION_BYTES;
export const LAYOUT_HEADER_BYTES: i32 = <i32>HEADER_BYTES;
/** Largest size class (4 KiB * 2^9 = 2 MiB). */
export const LAYOUT_MAX_CLASS: i32 = <i32>MAX_CLASS;
/** Most client slots format takes (ids 1..4093). */
export const LAYOUT_MAX_CLIENTS: i32 = <i32>MAX_CLIENTS;
export const LAYOUT_DEFAULT_LEASE_MS: i32 = <i32>DEFAULT_LEASE_MS;
/** setLease's range (ms). */
export const LAYOUT_MIN_LEASE_MS: i32 = 10;
export const LAYOUT_MAX_LEASE_MS: i32 = 86400000;
export const LAYOUT_SLAB_BYTES: i32 = <i32>SLAB_BYTES;
export const LAYOUT_MAX_SLAB_OBJECT: i32 = <i32>MAX_SLAB_OBJECT;
export const LAYOUT_OBJECT_CLASSES: i32 = <i32>OBJECT_CLASSES;
