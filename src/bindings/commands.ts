// What on_query and on_command hand to Lua and take back: the arguments of client:forward(),
// client:ok{} and client:result{}, the `mysql_null` sentinel for SQL NULL in result rows, and the
// info table of on_result. client.ts turns them into action objects.

import { lua, lauxlib, to_luastring, type LuaState } from '../lua/fengari.js';
import { pushBytes, pushNumber, toBuffer, toText, typeName } from '../lua/convert.js';
import { COLUMN_TYPES } from '../protocol/packets/local-reply.js';
import { commandName } from '../net/tracking.js';
import { ServerStatus } from '../protocol/constants.js';
import type { CommandResult, ForwardAction, OkAction, ResultAction } from '../proxy/handler.js';

/** SQL NULL inside client:result{} rows (a nil would end a Lua array; nil also works where columns are known). */
const NULL_TOKEN = Object.freeze({ mysql_null: true });

/** Most columns a local result set may have (MySQL's own limit on a table). */
const MAX_COLUMNS = 4096;

export function installNull(L: LuaState): void {
  lua.lua_pushlightuserdata(L, NULL_TOKEN);
  lua.lua_setglobal(L, 'mysql_null');
}

/** client:forward(payload): the command goes to the server with this payload (for a query: the SQL). */
export function checkForward(L: LuaState): ForwardAction {
  if (lua.lua_gettop(L) !== 2 || lua.lua_type(L, 2) !== lua.LUA_TSTRING) {
    return lauxlib.luaL_error(L, 'client:forward() expects one string argument');
  }
  return { kind: 'forward', payload: toBuffer(L, 2)! };
}

function optionalCount(L: LuaState, idx: number, key: string, max: number): number {
  lua.lua_getfield(L, idx, to_luastring(key));
  let value = 0;
  if (lua.lua_type(L, -1) !== lua.LUA_TNIL) {
    const n = lua.lua_type(L, -1) === lua.LUA_TNUMBER ? lua.lua_tonumber(L, -1) : NaN;
    if (!Number.isInteger(n) || n < 0 || n > max) {
      return lauxlib.luaL_error(L, `client:ok(): '${key}' must be an integer from 0 to ${max}`);
    }
    value = n;
  }
  lua.lua_pop(L, 1);
  return value;
}

const OK_FIELDS = new Set(['affected_rows', 'insert_id', 'warnings', 'info']);

/** client:ok([{affected_rows=, insert_id=, warnings=, info=}]). */
export function checkOk(L: LuaState): OkAction {
  const n = lua.lua_gettop(L);
  if (n === 1 || (n === 2 && lua.lua_type(L, 2) === lua.LUA_TNIL)) {
    return { kind: 'ok', affectedRows: 0, insertId: 0, warnings: 0, info: Buffer.alloc(0) };
  }
  if (n !== 2 || lua.lua_type(L, 2) !== lua.LUA_TTABLE) return lauxlib.luaL_error(L, 'client:ok() expects a table');
  lua.lua_pushnil(L);
  while (lua.lua_next(L, 2) !== 0) {
    const key = toText(L, -2);
    if (key === undefined || !OK_FIELDS.has(key)) {
      return lauxlib.luaL_error(L, `client:ok(): unknown field '${key ?? typeName(L, -2)}'`);
    }
    lua.lua_pop(L, 1);
  }
  lua.lua_getfield(L, 2, to_luastring('info'));
  const info = lua.lua_type(L, -1) === lua.LUA_TNIL ? Buffer.alloc(0) : toBuffer(L, -1);
  if (info === undefined) return lauxlib.luaL_error(L, "client:ok(): 'info' must be a string");
  lua.lua_pop(L, 1);
  return {
    kind: 'ok',
    affectedRows: optionalCount(L, 2, 'affected_rows', Number.MAX_SAFE_INTEGER),
    insertId: optionalCount(L, 2, 'insert_id', Number.MAX_SAFE_INTEGER),
    warnings: optionalCount(L, 2, 'warnings', 0xffff),
    info,
  };
}

/** A value of a result row as text bytes (null for SQL NULL); `kind` tells the inferred type. */
function cellAt(L: LuaState, idx: number): { value: Buffer | null; kind: 'null' | 'int' | 'float' | 'bool' | 'text' } {
  switch (lua.lua_type(L, idx)) {
    case lua.LUA_TNIL:
      return { value: null, kind: 'null' };
    case lua.LUA_TLIGHTUSERDATA:
      if (lua.lua_touserdata(L, idx) === NULL_TOKEN) return { value: null, kind: 'null' };
      break;
    case lua.LUA_TBOOLEAN:
      return { value: Buffer.from(lua.lua_toboolean(L, idx) ? '1' : '0'), kind: 'bool' };
    case lua.LUA_TNUMBER: {
      const v = lua.lua_tonumber(L, idx);
      if (!Number.isFinite(v)) break;
      return { value: Buffer.from(String(v)), kind: lua.lua_isinteger(L, idx) ? 'int' : 'float' };
    }
    case lua.LUA_TSTRING:
      return { value: toBuffer(L, idx)!, kind: 'text' };
  }
  return lauxlib.luaL_error(L, `client:result(): a ${typeName(L, idx)} cannot be a column value`);
}

const INFERRED_TYPE = {
  int: COLUMN_TYPES['longlong']!,
  float: COLUMN_TYPES['double']!,
  bool: COLUMN_TYPES['tiny']!,
  text: COLUMN_TYPES['var_string']!,
} as const;

/**
 * client:result{columns = {'a', {name = 'b', type = 'longlong'}}, rows = {{1, 'x'}, ...}}: a text
 * result set. A column's type is given, or taken from its first non-NULL value.
 */
export function checkResult(L: LuaState): ResultAction {
  if (lua.lua_gettop(L) !== 2 || lua.lua_type(L, 2) !== lua.LUA_TTABLE) {
    return lauxlib.luaL_error(L, 'client:result() expects a table {columns = {...}, rows = {...}}');
  }
  lua.lua_getfield(L, 2, to_luastring('columns'));
  if (lua.lua_type(L, -1) !== lua.LUA_TTABLE) return lauxlib.luaL_error(L, "client:result(): 'columns' must be a list");
  const ncols = lua.lua_rawlen(L, -1);
  if (ncols === 0 || ncols > MAX_COLUMNS) {
    return lauxlib.luaL_error(L, `client:result(): from 1 to ${MAX_COLUMNS} columns`);
  }
  const names: Buffer[] = [];
  const types: (number | undefined)[] = [];
  for (let i = 1; i <= ncols; i++) {
    lua.lua_rawgeti(L, -1, i);
    if (lua.lua_type(L, -1) === lua.LUA_TSTRING) {
      names.push(toBuffer(L, -1)!);
      types.push(undefined);
    } else if (lua.lua_type(L, -1) === lua.LUA_TTABLE) {
      lua.lua_getfield(L, -1, to_luastring('name'));
      const name = toBuffer(L, -1);
      if (name === undefined) return lauxlib.luaL_error(L, `client:result(): column ${i} has no name`);
      lua.lua_pop(L, 1);
      lua.lua_getfield(L, -1, to_luastring('type'));
      let type: number | undefined;
      if (lua.lua_type(L, -1) !== lua.LUA_TNIL) {
        const typeText = toText(L, -1);
        type = typeText === undefined ? undefined : COLUMN_TYPES[typeText];
        if (type === undefined) {
          return lauxlib.luaL_error(L, `client:result(): column ${i}: unknown type ${JSON.stringify(typeText ?? '')}`);
        }
      }
      lua.lua_pop(L, 1);
      names.push(name);
      types.push(type);
    } else {
      return lauxlib.luaL_error(L, `client:result(): column ${i} must be a name or {name=, type=}`);
    }
    lua.lua_pop(L, 1);
  }
  lua.lua_pop(L, 1);
  lua.lua_getfield(L, 2, to_luastring('rows'));
  const rows: (Buffer | null)[][] = [];
  if (lua.lua_type(L, -1) !== lua.LUA_TNIL) {
    if (lua.lua_type(L, -1) !== lua.LUA_TTABLE) return lauxlib.luaL_error(L, "client:result(): 'rows' must be a list");
    const nrows = lua.lua_rawlen(L, -1);
    for (let r = 1; r <= nrows; r++) {
      lua.lua_rawgeti(L, -1, r);
      if (lua.lua_type(L, -1) !== lua.LUA_TTABLE)
        return lauxlib.luaL_error(L, `client:result(): row ${r} is not a list`);
      const row: (Buffer | null)[] = [];
      for (let c = 1; c <= ncols; c++) {
        lua.lua_rawgeti(L, -1, c);
        const cell = cellAt(L, -1);
        if (types[c - 1] === undefined && cell.kind !== 'null') types[c - 1] = INFERRED_TYPE[cell.kind];
        row.push(cell.value);
        lua.lua_pop(L, 1);
      }
      rows.push(row);
      lua.lua_pop(L, 1);
    }
  }
  lua.lua_pop(L, 1);
  return {
    kind: 'result',
    columns: names.map((name, i) => ({ name, type: types[i] ?? COLUMN_TYPES['var_string']! })),
    rows,
  };
}

/** on_result's info table. */
export function pushResultInfo(L: LuaState, result: CommandResult): void {
  const r = result.record;
  lua.lua_createtable(L, 0, 12);
  lua.lua_pushstring(L, to_luastring(commandName(r.command)));
  lua.lua_setfield(L, -2, to_luastring('command'));
  if (result.sql !== undefined) {
    pushBytes(L, result.sql);
    lua.lua_setfield(L, -2, to_luastring('sql'));
  }
  lua.lua_pushstring(L, to_luastring(r.outcome));
  lua.lua_setfield(L, -2, to_luastring('outcome'));
  const numbers: [string, number][] = [
    ['duration_us', r.durationUs],
    ['error_code', r.errorCode],
    ['affected_rows', r.affectedRows],
    ['insert_id', r.insertId],
    ['warnings', r.warnings],
    ['rows', r.rows],
    ['results', r.results],
    ['bytes_in', r.bytesIn],
    ['bytes_out', r.bytesOut],
  ];
  for (const [key, value] of numbers) {
    pushNumber(L, value);
    lua.lua_setfield(L, -2, to_luastring(key));
  }
  lua.lua_pushboolean(L, (r.status & ServerStatus.SERVER_STATUS_IN_TRANS) !== 0);
  lua.lua_setfield(L, -2, to_luastring('in_transaction'));
  lua.lua_pushboolean(L, (r.statusOr & ServerStatus.SERVER_QUERY_WAS_SLOW) !== 0);
  lua.lua_setfield(L, -2, to_luastring('slow'));
  lua.lua_pushboolean(
    L,
    (r.statusOr & (ServerStatus.SERVER_QUERY_NO_INDEX_USED | ServerStatus.SERVER_QUERY_NO_GOOD_INDEX_USED)) !== 0,
  );
  lua.lua_setfield(L, -2, to_luastring('no_index_used'));
}
