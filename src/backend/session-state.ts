// Connection sharing's model of a session (see docs/pooling.md#connection-sharing): what a
// client changed in its server session that has to follow it onto another server connection
// (the schema, system variables), what ties it to its connection for good (a pin: user
// variables, temporary tables, locks, prepared statements, anything not understood), and what
// holds it there for now (an open transaction, a diagnostics area another client must not read).
//
// The knowledge comes from the server's session tracking (CLIENT_SESSION_TRACK with the
// variables SHARE_TRACKING_SQL sets) and the status flags, with a check of the SQL text before a
// statement goes: MariaDB reports no state change for GET_LOCK() or LAST_INSERT_ID(), so the text
// rules catch what tracking misses. Anything the rules cannot place pins.

import { Command, ServerStatus } from '../protocol/constants.js';
import { SessionTrackType, type OkSessionInfo } from '../protocol/packets/session-track.js';

/**
 * Run once on every server connection that is shared: the tracking sharing relies on. The
 * character-set variables are assigned their own values, so that the OK reports what they are (a
 * reset connection's are not known otherwise, and the handshake gives only a collation number).
 */
export const SHARE_TRACKING_SQL =
  "SET SESSION session_track_state_change = ON, session_track_schema = ON, session_track_system_variables = '*', " +
  "session_track_transaction_info = 'CHARACTERISTICS', character_set_client = @@character_set_client, " +
  'character_set_connection = @@character_set_connection, character_set_results = @@character_set_results, ' +
  'collation_connection = @@collation_connection';

/** The charset variables (their login value comes from the handshake), in the order a restore sets them. */
export const CHARSET_VARS: readonly string[] = [
  'character_set_client',
  'character_set_connection',
  'character_set_results',
  'collation_connection',
];

/** What a server connection's session holds, as far as sharing restores it. */
export interface SessionVariables {
  /** The default database (latin1 view of its bytes), or null for none. */
  schema: string | null;
  /** System variables changed since the connection's login: name → value (latin1). */
  readonly vars: Map<string, string>;
}

export function newSessionVariables(schema: string | null): SessionVariables {
  return { schema, vars: new Map() };
}

export function copySessionVariables(s: SessionVariables): SessionVariables {
  return { schema: s.schema, vars: new Map(s.vars) };
}

/** Commands that leave nothing behind on the server connection but what tracking reports. */
const SHAREABLE_COMMANDS: ReadonlySet<number> = new Set([
  Command.COM_QUERY,
  Command.COM_INIT_DB,
  Command.COM_PING,
  Command.COM_FIELD_LIST,
  Command.COM_STATISTICS,
  Command.COM_QUIT,
]);

/**
 * Statement text that pins, each with the reason logged. Deliberately wide (a column named
 * `blocked` pins too): a false pin costs sharing for one session, a missed one a wrong result.
 */
const PINNING_TEXT: readonly (readonly [RegExp, string])[] = [
  [/TEMPORARY/i, 'temporary table'],
  [/LOCK/i, 'locks (LOCK TABLES, GET_LOCK)'],
  [/PREPARE|EXECUTE|DEALLOCATE/i, 'prepared statement'],
  [/FOUND_ROWS/i, 'SQL_CALC_FOUND_ROWS / FOUND_ROWS()'],
  [/LAST_INSERT_ID|IDENTITY|LASTVAL|PREVIOUS\s+VALUE/i, 'LAST_INSERT_ID() / sequence values'],
  [/ROW_COUNT/i, 'ROW_COUNT()'],
  [/HANDLER|CURSOR|\bCALL\b|\bXA\b|\bROLE\b|BACKUP|BINLOG/i, 'session-scoped statement'],
];

/** Why a command pins its session before it goes to the server, or undefined. */
export function commandPinReason(payload: Buffer): string | undefined {
  const command = payload[0];
  if (command === undefined) return 'empty command';
  if (!SHAREABLE_COMMANDS.has(command)) {
    return command === Command.COM_STMT_PREPARE ? 'prepared statement' : `command 0x${command.toString(16)}`;
  }
  if (command !== Command.COM_QUERY) return undefined;
  const sql = payload.toString('latin1', 1);
  // User variables: '@' that does not start '@@' (a system variable).
  if (sql.replace(/@@/g, '').includes('@')) return 'user variable';
  for (const [re, reason] of PINNING_TEXT) if (re.test(sql)) return reason;
  return undefined;
}

/** Variables sharing cannot carry over, or that would blind it. */
const UNRESTORABLE_VAR = /^(session_track_|insert_id$|last_insert_id$|identity$|pseudo_thread_id$)/;

/** What one finished response means for sharing. */
export interface ResponseVerdict {
  /** Pin the session to this connection (the reason), or undefined. */
  readonly pin?: string;
  /** Keep the connection after this response (a transaction, warnings, an error in the diagnostics area). */
  readonly hold: boolean;
}

/** The parts of a tracker record the verdict needs. */
export interface ResponseFacts {
  readonly outcome: 'ok' | 'err' | 'none';
  readonly status: number;
  readonly statusOr: number;
  readonly warnings: number;
  readonly insertId: number;
  readonly results: number;
}

/**
 * Apply a finished response to the session's variables (`state`, which the connection has too)
 * and judge it. `ok` is the response's final packet parsed as an OK, or null when it was not one
 * (an EOF, an ERR, a packet too big to keep). `trx` carries the transaction tracking between calls.
 */
export function judgeResponse(
  facts: ResponseFacts,
  ok: OkSessionInfo | null,
  state: SessionVariables,
  trx: { characteristics: boolean; active: boolean },
): ResponseVerdict {
  if (facts.outcome === 'none') return { pin: 'command without a response', hold: true };
  const changed = ServerStatus.SERVER_SESSION_STATE_CHANGED;
  if ((facts.statusOr & changed) !== 0 && facts.results > 1)
    return { pin: 'state change inside a multi-result', hold: true };
  if ((facts.status & changed) !== 0) {
    if (ok === null) return { pin: 'state change without session-state information', hold: true };
    let explained = false;
    let stateChange = false;
    for (const e of ok.entries) {
      switch (e.type) {
        case SessionTrackType.SYSTEM_VARIABLES: {
          const name = e.name.toString('latin1').toLowerCase();
          const value = e.value.toString('latin1');
          if (!/^[a-z0-9_]+$/.test(name) || UNRESTORABLE_VAR.test(name)) return { pin: `variable ${name}`, hold: true };
          if (/['\\]/.test(value)) return { pin: `value of ${name}`, hold: true };
          state.vars.set(name, value);
          explained = true;
          break;
        }
        case SessionTrackType.SCHEMA:
          if (e.name.length === 0) return { pin: 'no default database', hold: true };
          state.schema = e.name.toString('latin1');
          explained = true;
          break;
        case SessionTrackType.STATE_CHANGE:
          stateChange = true;
          break;
        case SessionTrackType.GTIDS:
          break;
        case SessionTrackType.TRANSACTION_CHARACTERISTICS:
          trx.characteristics = e.value.length > 0;
          break;
        case SessionTrackType.TRANSACTION_STATE: {
          const s = e.value.toString('latin1');
          if (s.includes('L')) return { pin: 'locked tables', hold: true };
          trx.active = /[^_]/.test(s);
          break;
        }
        default:
          return { pin: `session-state entry ${e.type}`, hold: true };
      }
    }
    // MariaDB and MySQL flag a state change with every variable or schema change; alone, it is
    // something else (a user variable, a temporary table, a prepared statement): not restorable.
    if (stateChange && !explained) return { pin: 'session state changed', hold: true };
  }
  if (facts.outcome === 'ok' && facts.insertId !== 0) return { pin: 'LAST_INSERT_ID() set', hold: true };
  const inTrans = ServerStatus.SERVER_STATUS_IN_TRANS | ServerStatus.SERVER_STATUS_IN_TRANS_READONLY;
  const hold =
    (facts.status & inTrans) !== 0 ||
    facts.outcome === 'err' ||
    facts.warnings > 0 ||
    trx.characteristics ||
    trx.active;
  return { hold };
}

/** A variable's value as an SQL literal (values with quotes or backslashes pin instead). */
function literal(name: string, value: string): string {
  if (/^-?\d+(\.\d+)?$/.test(value)) return value;
  if (value === '' && CHARSET_VARS.includes(name)) return 'NULL';
  return `'${value}'`;
}

/**
 * The statement that gives a connection whose variables are `have` those of the session `want`,
 * or null when they agree. Variables the session never changed go back to their login value:
 * `baseline`'s (the charset variables a fresh connection of the key reported), DEFAULT (the
 * global value) otherwise.
 */
export function restoreVariablesSql(
  want: SessionVariables,
  have: SessionVariables,
  baseline: ReadonlyMap<string, string>,
): string | null {
  const names = new Set([...have.vars.keys(), ...want.vars.keys()]);
  if (names.size === 0) return null;
  const ordered = [...CHARSET_VARS.filter((n) => names.has(n)), ...[...names].filter((n) => !CHARSET_VARS.includes(n))];
  const parts: string[] = [];
  for (const name of ordered) {
    const w = want.vars.get(name);
    if (w !== undefined && w === have.vars.get(name)) continue;
    const value = w ?? baseline.get(name);
    if (value !== undefined) {
      if (value === have.vars.get(name)) continue;
      parts.push(`${name} = ${literal(name, value)}`);
    } else parts.push(`${name} = DEFAULT`);
  }
  return parts.length === 0 ? null : `SET SESSION ${parts.join(', ')}`;
}
