// Response tracking, the TypeScript side: the layout of the arrays the native tracker
// (native/tracker.c) shares with us, the configuration both relays give it, and the decoded form
// of a finished response. Both relays follow the protocol with that one tracker, so they count and
// report the same.

import { addonFunctions } from './native.js';

import { COMMAND_SLOTS, DURATION_BOUNDS, STATS_LENGTH, StatSlot } from '../util/metrics.js';

export { COMMAND_SLOTS, DURATION_BOUNDS, STATS_LENGTH, StatSlot };

const RECORD_LENGTH = 13;
const CONFIG_BYTES = 48;

/** Names of the commands (also the labels of per-command metrics and Lua's command names). */
export const COMMAND_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0x00: 'sleep',
  0x01: 'quit',
  0x02: 'init_db',
  0x03: 'query',
  0x04: 'field_list',
  0x05: 'create_db',
  0x06: 'drop_db',
  0x07: 'refresh',
  0x08: 'shutdown',
  0x09: 'statistics',
  0x0a: 'process_info',
  0x0b: 'connect',
  0x0c: 'process_kill',
  0x0d: 'debug',
  0x0e: 'ping',
  0x0f: 'time',
  0x10: 'delayed_insert',
  0x11: 'change_user',
  0x12: 'binlog_dump',
  0x13: 'table_dump',
  0x14: 'connect_out',
  0x15: 'register_slave',
  0x16: 'stmt_prepare',
  0x17: 'stmt_execute',
  0x18: 'stmt_send_long_data',
  0x19: 'stmt_close',
  0x1a: 'stmt_reset',
  0x1b: 'set_option',
  0x1c: 'stmt_fetch',
  0x1d: 'daemon',
  0x1e: 'binlog_dump_gtid',
  0x1f: 'reset_connection',
  0xfa: 'stmt_bulk_execute',
});

export function commandName(command: number): string {
  return COMMAND_NAMES[command] ?? `0x${command.toString(16).padStart(2, '0')}`;
}

/** Why a session became untracked (`enum trk_untracked_reason`). */
export const UNTRACKED_REASONS: Readonly<Record<number, string>> = Object.freeze({
  1: 'unknown command',
  2: 'unexpected server packet',
  3: 'malformed server packet',
  4: 'too many commands in flight',
  5: 'empty command packet',
});

/** A finished response, as the tracker saw it. */
export interface ResponseRecord {
  readonly command: number;
  /** 'none': the command has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT). */
  readonly outcome: 'ok' | 'err' | 'none';
  readonly errorCode: number;
  /** Status flags of the last OK/EOF. */
  readonly status: number;
  /** Every status flag seen in the response (a SERVER_MORE_RESULTS_EXISTS chain). */
  readonly statusOr: number;
  readonly warnings: number;
  readonly affectedRows: number;
  readonly insertId: number;
  readonly rows: number;
  readonly results: number;
  readonly durationUs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

const OUTCOMES = ['ok', 'err', 'none'] as const;

/** Reads the record array the tracker filled for the response that just finished. */
export function decodeRecord(r: Float64Array): ResponseRecord {
  return {
    command: r[0]!,
    outcome: OUTCOMES[r[1]!] ?? 'ok',
    errorCode: r[2]!,
    status: r[3]!,
    statusOr: r[4]!,
    warnings: r[5]!,
    affectedRows: r[6]!,
    insertId: r[7]!,
    rows: r[8]!,
    results: r[9]!,
    durationUs: r[10]!,
    bytesIn: r[11]!,
    bytesOut: r[12]!,
  };
}

export function newRecordArray(): Float64Array {
  return new Float64Array(RECORD_LENGTH);
}

/** What a relay's tracker is told about a session. */
export interface TrackingOptions {
  /** Capabilities in effect between client and server (CLIENT_DEPRECATE_EOF changes the grammar). */
  readonly capabilities: number;
  /** MariaDB extended capabilities in effect. */
  readonly extendedCapabilities?: number;
  /** Follow responses (false only to measure what tracking costs: `--no-response-tracking`). */
  readonly track: boolean;
  /** Take COM_QUERY packets that may be KILL statements out of the stream (with the intercepts). */
  readonly killFilter?: boolean;
  /** Per-server counters this session adds to (null: none). */
  readonly stats: Float64Array | null;
  /** Per-account counters this session adds to as well (null or absent: none). */
  readonly accountStats?: Float64Array | null;
  /** Called for every finished response (only when given: it costs a call into JavaScript each). */
  readonly onResponse?: (record: ResponseRecord) => void;
  /** Called once when the session became untracked. */
  readonly onUntracked?: (reason: string) => void;
}

export const TrackFlag = { TRACK: 1, KILL_FILTER: 2, EVENTS: 4 } as const;

/** The tracker's configuration block (see CFG_* in pump.c). */
export function encodeTrackerConfig(
  tracking: TrackingOptions,
  intercept: readonly number[],
  maxHold: number,
): Uint8Array {
  const out = new Uint8Array(CONFIG_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, tracking.capabilities >>> 0, true);
  view.setUint32(4, (tracking.extendedCapabilities ?? 0) >>> 0, true);
  let flags = 0;
  if (tracking.track) flags |= TrackFlag.TRACK;
  if (tracking.killFilter === true) flags |= TrackFlag.KILL_FILTER;
  if (tracking.onResponse !== undefined) flags |= TrackFlag.EVENTS;
  view.setUint32(8, flags, true);
  view.setUint32(12, maxHold >>> 0, true);
  for (const c of intercept) out[16 + (c >> 3)]! |= 1 << (c & 7);
  return out;
}

/** Checks that the native layout is the one this file describes (a mismatched build fails loudly). */
export function checkTrackerLayout(): void {
  const layout = addonFunctions().trackerLayout();
  const ok =
    layout.statsLength === STATS_LENGTH &&
    layout.recordLength === RECORD_LENGTH &&
    layout.configBytes === CONFIG_BYTES &&
    layout.durationBuckets === StatSlot.DURATION_BUCKETS &&
    layout.commandCounts === StatSlot.COMMAND_COUNTS &&
    layout.durationBounds.length === DURATION_BOUNDS.length &&
    layout.durationBounds.every((b, i) => b === DURATION_BOUNDS[i]);
  if (!ok) throw new Error('native addon does not match this version of myproxy: run npm rebuild');
}

/** `trackerClient` stop reasons. */
export const TrackerStop = { GO: 0, INTERCEPT: 1, MORE: 2 } as const;

/** Event types of the pump and the tracker binding. */
export const PumpEvent = { CLOSE: 0, INTERCEPT: 1, UNTRACKED: 2, RESPONSE: 3 } as const;

/** Whether a COM_QUERY text may be a KILL statement (the native filter's rule, for tests). */
export function mayBeKill(sql: Uint8Array, complete: boolean): boolean {
  return addonFunctions().trackerMayBeKill(sql, complete);
}
