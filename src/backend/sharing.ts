// Connection sharing, the server side: set up session tracking on a server connection and give it
// a session's state (variables, schema) before one of that session's statements runs on it.
// Each step is one command answered by OK; anything else fails the step.

import { Command, PacketHeader } from '../protocol/constants.js';
import { parseErr } from '../protocol/packets/generic.js';
import { framePayload } from '../protocol/writer.js';
import type { FdPacketChannel, PacketChannel } from '../net/packet-channel.js';
import { SessionTrackType, parseOkSessionInfo } from '../protocol/packets/session-track.js';
import {
  CHARSET_VARS,
  SHARE_TRACKING_SQL,
  newSessionVariables,
  restoreVariablesSql,
  type SessionVariables,
} from './session-state.js';

/** A schema that never matches: a reset connection's default database is not known. */
const UNKNOWN = '\0unknown';

/** The state of a connection just reset (COM_RESET_CONNECTION keeps the default database). */
export function resetConnectionState(): SessionVariables {
  return newSessionVariables(UNKNOWN);
}

/**
 * Set up session tracking on a connection that has none (a fresh login, a reset one), and learn
 * its character-set variables from the OK (into `have.vars`). The error text on failure.
 */
export async function setUpTracking(
  channel: PacketChannel | FdPacketChannel,
  have: SessionVariables,
  capabilities: number,
  timeoutMs: number,
): Promise<string | undefined> {
  channel.send(framePayload(Buffer.concat([Buffer.of(Command.COM_QUERY), Buffer.from(SHARE_TRACKING_SQL)]), 0));
  const reply = await channel.next(timeoutMs);
  if (reply.payload[0] === PacketHeader.ERR) {
    const err = parseErr(reply.payload);
    return `setting up session tracking: ${err.errno} ${err.message}`;
  }
  if (reply.payload[0] !== PacketHeader.OK) return 'unexpected reply to the session tracking setup';
  for (const e of parseOkSessionInfo(reply.payload, capabilities).entries) {
    if (e.type !== SessionTrackType.SYSTEM_VARIABLES) continue;
    const name = e.name.toString('latin1').toLowerCase();
    if (CHARSET_VARS.includes(name)) have.vars.set(name, e.value.toString('latin1'));
  }
  return undefined;
}

/** The commands that make a connection in state `have` carry the session state `want`. */
export function restoreCommands(
  want: SessionVariables,
  have: SessionVariables,
  baseline: ReadonlyMap<string, string>,
): Buffer[] {
  const out: Buffer[] = [];
  const sql = restoreVariablesSql(want, have, baseline);
  if (sql !== null) out.push(Buffer.concat([Buffer.of(Command.COM_QUERY), Buffer.from(sql, 'latin1')]));
  if (want.schema !== have.schema && want.schema !== null) {
    out.push(Buffer.concat([Buffer.of(Command.COM_INIT_DB), Buffer.from(want.schema, 'latin1')]));
  }
  return out;
}

/** Run `commands` one after the other; the error text of the first that is not answered OK. */
export async function runCommands(
  channel: PacketChannel | FdPacketChannel,
  commands: readonly Buffer[],
  timeoutMs: number,
): Promise<string | undefined> {
  for (const payload of commands) {
    channel.send(framePayload(payload, 0));
    const reply = await channel.next(timeoutMs);
    if (reply.payload[0] === PacketHeader.OK) continue;
    const what = payload[0] === Command.COM_INIT_DB ? 'COM_INIT_DB' : payload.toString('latin1', 1, 60);
    if (reply.payload[0] !== PacketHeader.ERR) return `unexpected reply to ${what}`;
    const err = parseErr(reply.payload);
    return `${what}: ${err.errno} ${err.message}`;
  }
  return undefined;
}
