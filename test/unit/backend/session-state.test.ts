// Connection sharing's rules without a server: the session-state block of an OK packet (MariaDB's
// and MySQL's forms), which commands and statements pin, how a response is judged (restore, hold,
// pin), and the statement that carries a session's variables onto another connection.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { Capability, Command, ServerStatus } from '../../../src/protocol/constants.js';
import { parseOkSessionInfo, SessionTrackType } from '../../../src/protocol/packets/session-track.js';
import {
  commandPinReason,
  judgeResponse,
  newSessionVariables,
  restoreVariablesSql,
  type ResponseFacts,
} from '../../../src/backend/session-state.js';
import { MalformedPacketError } from '../../../src/util/errors.js';

const TRACK = Capability.CLIENT_SESSION_TRACK | Capability.CLIENT_PROTOCOL_41;
const CHANGED = ServerStatus.SERVER_SESSION_STATE_CHANGED | ServerStatus.SERVER_STATUS_AUTOCOMMIT;

const lenenc = (b: Buffer): Buffer => Buffer.concat([Buffer.of(b.length), b]);
const entry = (type: number, data: Buffer): Buffer => Buffer.concat([Buffer.of(type), lenenc(data)]);
const sysvar = (name: string, value: string): Buffer =>
  entry(SessionTrackType.SYSTEM_VARIABLES, Buffer.concat([lenenc(Buffer.from(name)), lenenc(Buffer.from(value))]));
const schema = (db: string): Buffer => entry(SessionTrackType.SCHEMA, lenenc(Buffer.from(db)));
/** MariaDB: the state change's '1' bare. */
const stateChange = entry(SessionTrackType.STATE_CHANGE, Buffer.from('1'));

/** An OK payload: 0 rows, insert id, status, 0 warnings, empty info, the entries. */
function ok(status: number, entries: Buffer[], insertId = 0): Buffer {
  const block = Buffer.concat(entries);
  return Buffer.concat([
    Buffer.of(0x00, 0x00, insertId, status & 0xff, status >> 8, 0, 0, 0x00),
    entries.length > 0 ? lenenc(block) : Buffer.alloc(0),
  ]);
}

const facts = (over: Partial<ResponseFacts> = {}): ResponseFacts => ({
  outcome: 'ok',
  status: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
  statusOr: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
  warnings: 0,
  insertId: 0,
  results: 1,
  ...over,
});

test('session-state entries: variables, schema, MariaDB and MySQL state change, transaction info', () => {
  const mysqlState = entry(SessionTrackType.STATE_CHANGE, lenenc(Buffer.from('1')));
  const trx = entry(SessionTrackType.TRANSACTION_STATE, lenenc(Buffer.from('T_______')));
  const info = parseOkSessionInfo(
    ok(CHANGED, [sysvar('sql_mode', 'ANSI'), schema('db1'), stateChange, mysqlState, trx]),
    TRACK,
  );
  assert.deepEqual(
    info.entries.map((e) => [e.type, e.name.toString(), e.value.toString()]),
    [
      [0, 'sql_mode', 'ANSI'],
      [1, 'db1', ''],
      [2, '', '1'],
      [2, '', '\x011'],
      [5, '', 'T_______'],
    ],
  );
  // Without CLIENT_SESSION_TRACK there is no block to read.
  assert.deepEqual(parseOkSessionInfo(ok(CHANGED, []), Capability.CLIENT_PROTOCOL_41).entries, []);
  // A block longer than the packet is malformed, not read past the end.
  const cut = ok(CHANGED, [sysvar('sql_mode', 'ANSI')]);
  assert.throws(() => parseOkSessionInfo(cut.subarray(0, cut.length - 2), TRACK), MalformedPacketError);
});

test('commands and statements that pin before they run', () => {
  const query = (sql: string): Buffer => Buffer.concat([Buffer.of(Command.COM_QUERY), Buffer.from(sql)]);
  for (const sql of ['SELECT 1', 'SELECT @@sql_mode', 'BEGIN', 'COMMIT', "SET NAMES 'utf8mb4'", 'USE db']) {
    assert.equal(commandPinReason(query(sql)), undefined, sql);
  }
  for (const sql of [
    'SET @a = 1',
    'SELECT 1 INTO @x',
    'CREATE TEMPORARY TABLE t (a INT)',
    "SELECT GET_LOCK('x', 1)",
    'LOCK TABLES t READ',
    "PREPARE s FROM 'SELECT 1'",
    'SELECT SQL_CALC_FOUND_ROWS * FROM t',
    'SELECT FOUND_ROWS()',
    'SELECT LAST_INSERT_ID()',
    'SELECT @@IDENTITY',
    'SELECT ROW_COUNT()',
    'CALL p()',
    'HANDLER t OPEN',
  ]) {
    assert.notEqual(commandPinReason(query(sql)), undefined, sql);
  }
  assert.equal(commandPinReason(Buffer.of(Command.COM_PING)), undefined);
  assert.equal(commandPinReason(Buffer.of(Command.COM_STMT_PREPARE)), 'prepared statement');
  assert.notEqual(commandPinReason(Buffer.of(Command.COM_SET_OPTION, 0, 0)), undefined);
  assert.notEqual(commandPinReason(Buffer.of(Command.COM_RESET_CONNECTION)), undefined);
});

test('a response with variables and a schema is restorable; a bare state change pins', () => {
  const state = newSessionVariables('test');
  const trx = { characteristics: false, active: false };
  const set = parseOkSessionInfo(ok(CHANGED, [sysvar('character_set_client', 'latin1'), stateChange]), TRACK);
  assert.deepEqual(judgeResponse(facts({ status: CHANGED, statusOr: CHANGED }), set, state, trx), { hold: false });
  assert.equal(state.vars.get('character_set_client'), 'latin1');
  const use = parseOkSessionInfo(ok(CHANGED, [schema('other'), stateChange]), TRACK);
  assert.deepEqual(judgeResponse(facts({ status: CHANGED, statusOr: CHANGED }), use, state, trx), { hold: false });
  assert.equal(state.schema, 'other');
  // SET @a (MariaDB): only the state change.
  const userVar = parseOkSessionInfo(ok(CHANGED, [stateChange]), TRACK);
  assert.match(
    judgeResponse(facts({ status: CHANGED, statusOr: CHANGED }), userVar, state, trx).pin ?? '',
    /state changed/,
  );
  // A state change the client could not be told about in detail (an EOF), or inside a multi-result.
  assert.ok(judgeResponse(facts({ status: CHANGED, statusOr: CHANGED }), null, state, trx).pin);
  assert.ok(judgeResponse(facts({ statusOr: CHANGED, results: 2 }), null, state, trx).pin);
  // session_track_* changed by the client, a value that would need quoting, an unknown entry.
  for (const e of [sysvar('session_track_schema', 'OFF'), sysvar('sql_mode', "a'b"), entry(9, Buffer.alloc(0))]) {
    const info = parseOkSessionInfo(ok(CHANGED, [e]), TRACK);
    assert.ok(judgeResponse(facts({ status: CHANGED, statusOr: CHANGED }), info, state, trx).pin);
  }
  // An insert id: LAST_INSERT_ID() lives in the connection.
  assert.ok(judgeResponse(facts({ insertId: 5 }), null, state, trx).pin);
});

test('transactions, warnings and errors hold the connection without pinning', () => {
  const state = newSessionVariables(null);
  const trx = { characteristics: false, active: false };
  const inTrans = ServerStatus.SERVER_STATUS_IN_TRANS | ServerStatus.SERVER_STATUS_AUTOCOMMIT;
  assert.deepEqual(judgeResponse(facts({ status: inTrans, statusOr: inTrans }), null, state, trx), { hold: true });
  assert.deepEqual(judgeResponse(facts({ warnings: 1 }), null, state, trx), { hold: true });
  assert.deepEqual(judgeResponse(facts({ outcome: 'err' }), null, state, trx), { hold: true });
  const chars = entry(SessionTrackType.TRANSACTION_CHARACTERISTICS, lenenc(Buffer.from('SET TRANSACTION READ ONLY;')));
  assert.deepEqual(
    judgeResponse(
      facts({ status: CHANGED, statusOr: CHANGED }),
      parseOkSessionInfo(ok(CHANGED, [chars]), TRACK),
      state,
      trx,
    ),
    { hold: true },
  );
  const cleared = entry(SessionTrackType.TRANSACTION_CHARACTERISTICS, lenenc(Buffer.alloc(0)));
  assert.deepEqual(
    judgeResponse(
      facts({ status: CHANGED, statusOr: CHANGED }),
      parseOkSessionInfo(ok(CHANGED, [cleared]), TRACK),
      state,
      trx,
    ),
    { hold: false },
  );
  // LOCK TABLES shows as 'L' in the transaction state: a pin.
  const locked = entry(SessionTrackType.TRANSACTION_STATE, lenenc(Buffer.from('_______L')));
  assert.ok(
    judgeResponse(
      facts({ status: CHANGED, statusOr: CHANGED }),
      parseOkSessionInfo(ok(CHANGED, [locked]), TRACK),
      state,
      trx,
    ).pin,
  );
  assert.deepEqual(judgeResponse(facts(), null, state, trx), { hold: false });
});

test('restoring variables: the session value, else the login value, else DEFAULT; charset variables first', () => {
  const want = newSessionVariables('a');
  const have = newSessionVariables('a');
  const baseline = new Map([['character_set_client', 'utf8mb4']]);
  assert.equal(restoreVariablesSql(want, have, baseline), null);
  want.vars.set('sql_mode', 'ANSI');
  want.vars.set('wait_timeout', '100');
  have.vars.set('character_set_client', 'latin1');
  have.vars.set('time_zone', '+01:00');
  assert.equal(
    restoreVariablesSql(want, have, baseline),
    "SET SESSION character_set_client = 'utf8mb4', time_zone = DEFAULT, sql_mode = 'ANSI', wait_timeout = 100",
  );
  want.vars.set('character_set_results', '');
  assert.match(restoreVariablesSql(want, have, baseline) ?? '', /character_set_results = NULL/);
});
