// The commands the relay takes out of a session's stream and hands here: COM_CHANGE_USER (always
// refused: it would let a client become another user without the login policy), COM_INIT_DB (to
// on_init_db, when the handler has one), KILL (COM_PROCESS_KILL and KILL statements, which name
// the proxy's connection ids and must be translated: see kill.ts), and, only for handlers that
// define them, every query (on_query) or every other command (on_command), which policy may
// forward, rewrite, refuse or answer in the server's place.

import { Command, PacketHeader } from '../protocol/constants.js';
import { PacketWriter, framePayload } from '../protocol/writer.js';
import type { InterceptReply } from '../net/relay.js';
import { COMMAND_NAMES, commandName } from '../net/tracking.js';
import { logicalPayload, writeOkPacket, writeResultSet } from '../protocol/packets/local-reply.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { ClientErrors, type ClientErrorSpec, errorMessage } from '../util/errors.js';
import { quoteBytes } from '../util/log.js';
import { ON_HEAP_BYTES, ownCopy } from '../util/bytes.js';
import { errPacket } from './client-login.js';
import { PolicyError, type ClientSession, type CommandAction, type SessionHooks } from './handler.js';
import { killSql, parseKillStatement, runKill, type KillStatement, type KillTarget } from './kill.js';
import type { SessionRegistry } from './registry.js';

/** A session as KILL sees it: where it runs, and as whom. */
export interface KillableSession extends ClientSession {
  readonly backendLabel: string | undefined;
  readonly serverThreadId: number | undefined;
  /** How to log in to its server as its user (undefined until it is relayed). */
  readonly killTarget: KillTarget | undefined;
  /** Ends the session at once (a KILL CONNECTION of a session that is still logging in). */
  close(error: ClientErrorSpec): void;
}

/** What the filter needs of its session. */
export interface FilterHost {
  readonly session: KillableSession;
  readonly hooks: SessionHooks;
  readonly metrics: ProxyMetrics;
  readonly registry: SessionRegistry<KillableSession>;
  readonly connectTimeoutMs: number;
  log(line: string): void;
  /** A line that can repeat: rate-limited per session and globally. */
  logLimited(kind: string, line: string): void;
  /** A failed Lua callback: count it, log it with its traceback. */
  policyFailed(e: PolicyError): void;
  /** Capabilities in effect between client and server (the shape of a local result set). */
  readonly capabilities: number;
  /** MariaDB extended capabilities in effect (extended metadata shapes column definitions). */
  readonly extendedCapabilities: number;
  /** Status flags for a local reply: the server's last (autocommit, in transaction). */
  serverStatus(): number;
}

/** A command packet with this payload after the command byte (split past 16 MiB). */
function commandPacket(command: number, payload: Buffer, seq: number): Buffer {
  return new PacketWriter(1 + payload.length).int1(command).bytes(payload).finish(seq);
}

/**
 * The payload after the command byte. Of a small command (a typical query) a copy of its own, made
 * without moving the packet off V8's heap (see ownCopy); of a bigger one a view of the packet (the
 * packet is the filter's own). Either way the hook may keep it.
 */
function commandPayload(packet: Buffer): Buffer {
  if (packet.length > 4 && packet.length <= ON_HEAP_BYTES && packet.readUIntLE(0, 3) + 4 === packet.length) {
    return ownCopy(packet, 5);
  }
  return logicalPayload(packet).subarray(1);
}

/** The command bytes a session's relay must take out of the stream for this filter. */
export function filteredCommands(hooks: SessionHooks): number[] {
  const commands = new Set<number>([Command.COM_CHANGE_USER, Command.COM_PROCESS_KILL]);
  if (hooks.onInitDb !== undefined) commands.add(Command.COM_INIT_DB);
  if (hooks.onQuery !== undefined) commands.add(Command.COM_QUERY);
  if (hooks.onCommand !== undefined) {
    for (const c of Object.keys(COMMAND_NAMES).map(Number)) if (c !== Command.COM_QUERY) commands.add(c);
  }
  return [...commands];
}

/**
 * The largest command a hook gets whole: hooks see queries of 16 MiB and more, while a client
 * cannot make the daemon hold more than this for one command.
 */
export const MAX_HOOKED_COMMAND = 64 * 1024 * 1024;

/** How large an intercepted command may be before it is cut (see CommandInterceptor.maxPacket). */
export function interceptLimit(hooks: SessionHooks): number | undefined {
  return hooks.onQuery !== undefined || hooks.onCommand !== undefined ? MAX_HOOKED_COMMAND + 4 * 5 : undefined;
}

/** Commands the server does not answer: a hook may forward or rewrite them, not answer them. */
const NO_RESPONSE = new Set<number>([Command.COM_QUIT, Command.COM_STMT_SEND_LONG_DATA, Command.COM_STMT_CLOSE]);

/** Commands whose answer is not an OK or a text result set: a hook may forward or refuse them. */
const ERR_ONLY = new Set<number>([
  Command.COM_STMT_PREPARE,
  Command.COM_STMT_EXECUTE,
  Command.COM_STMT_FETCH,
  Command.COM_FIELD_LIST,
  Command.COM_STATISTICS,
  Command.COM_BINLOG_DUMP,
  Command.COM_BINLOG_DUMP_GTID,
  Command.COM_STMT_BULK_EXECUTE,
]);

/** A command going on (its packet, as it was or rewritten) or answered here. */
type Decision = Buffer | InterceptReply;

function asReply(decided: Decision): InterceptReply {
  return Buffer.isBuffer(decided) ? { toServer: decided } : decided;
}

export class CommandFilter {
  readonly #host: FilterHost;
  /** SQL of the forwarded COM_QUERYs whose responses are still to come (for on_result), oldest first. */
  readonly #pendingSql: Buffer[] = [];
  #pendingHead = 0;
  #untracked = false;

  constructor(host: FilterHost) {
    this.#host = host;
  }

  /**
   * An intercepted command (the whole logical packet, or its head when `truncated`). The reply
   * comes at once when no hook had to wait (the relay resumes without a promise), else as a promise.
   */
  onCommand(packet: Buffer, truncated: boolean): InterceptReply | Promise<InterceptReply> {
    const decided = this.decide(packet, truncated, false);
    return decided instanceof Promise ? decided.then(asReply) : asReply(decided);
  }

  /**
   * What becomes of a command: the command packet to send on (as it was, or rewritten), or the
   * reply that answers it; a promise only when a hook waits or the command needs I/O (KILL).
   * `local`: there is no server behind the session (client:accept()), so no KILL is translated and
   * no SQL is kept for on_result.
   */
  decide(packet: Buffer, truncated: boolean, local: boolean): Decision | Promise<Decision> {
    const seq = packet[3]!;
    const command = packet[4]!;
    const hooks = this.#host.hooks;
    if (command === Command.COM_CHANGE_USER) {
      this.#host.logLimited('change_user', 'COM_CHANGE_USER refused');
      return { toClient: errPacket(seq + 1, ClientErrors.CHANGE_USER_REFUSED) };
    }
    if (command === Command.COM_INIT_DB && hooks.onInitDb !== undefined) {
      return this.#initDb(packet, seq, truncated).then((reply) => reply.toServer ?? reply);
    }
    const hooked = command === Command.COM_QUERY ? hooks.onQuery !== undefined : hooks.onCommand !== undefined;
    if (truncated) {
      // The rest of the packet is gone: the server must not get the head alone.
      this.#host.logLimited('too_large', `${commandName(command)} of more than ${MAX_HOOKED_COMMAND} bytes refused`);
      return { toClient: errPacket(seq + 1, ClientErrors.COMMAND_TOO_LARGE) };
    }
    const original = commandPayload(packet);
    if (!hooked) return this.#pass(packet, command, seq, original, original, local);
    const decided = this.#hook(command, seq, original);
    if (decided instanceof Promise) {
      return decided.then((d) => (Buffer.isBuffer(d) ? this.#pass(packet, command, seq, original, d, local) : d));
    }
    return Buffer.isBuffer(decided) ? this.#pass(packet, command, seq, original, decided, local) : decided;
  }

  /** A command going on to the server with `payload` (the original, or a hook's rewrite). */
  #pass(
    packet: Buffer,
    command: number,
    seq: number,
    original: Buffer,
    payload: Buffer,
    local: boolean,
  ): Decision | Promise<Decision> {
    if (local) return payload === original ? packet : commandPacket(command, payload, seq);
    if (command === Command.COM_PROCESS_KILL && payload.length >= 4) {
      return this.#kill(seq, { kind: 'connection', modifier: '', id: payload.readUInt32LE(0) }, true);
    }
    if (command === Command.COM_QUERY) {
      const statement = parseKillStatement(payload);
      if (statement !== null) return this.#kill(seq, statement, false);
      if (this.#host.hooks.onResult !== undefined && !this.#untracked) this.#pendingSql.push(payload);
    }
    return { toServer: payload === original ? packet : commandPacket(command, payload, seq) };
  }

  /** The SQL of the oldest forwarded query still waiting for its response (on_result's `sql`). */
  takeSql(): Buffer | undefined {
    if (this.#pendingHead >= this.#pendingSql.length) return undefined;
    const sql = this.#pendingSql[this.#pendingHead++];
    if (this.#pendingHead > 64 && this.#pendingHead * 2 > this.#pendingSql.length) {
      this.#pendingSql.splice(0, this.#pendingHead);
      this.#pendingHead = 0;
    }
    return sql;
  }

  /** Responses can no longer be matched to commands (the session became untracked). */
  forgetSql(): void {
    this.#untracked = true;
    this.#pendingSql.length = 0;
    this.#pendingHead = 0;
  }

  /**
   * Runs on_query or on_command: the payload to forward (unchanged or rewritten), or the reply that
   * answers the command in the server's place. A failing hook answers 1105 "Lua error"; the session
   * goes on. The hook gets `payload` itself: the packet is this filter's own, and nothing writes it.
   */
  #hook(command: number, seq: number, payload: Buffer): Decision | Promise<Decision> {
    const hooks = this.#host.hooks;
    let action: CommandAction | undefined | Promise<CommandAction | undefined>;
    try {
      action =
        command === Command.COM_QUERY ? hooks.onQuery!(payload) : hooks.onCommand!(commandName(command), payload);
    } catch (e) {
      return this.#hookFailed(e, command, seq, payload);
    }
    if (action instanceof Promise) {
      return action.then(
        (a) => this.#act(command, seq, payload, a),
        (e: unknown) => this.#hookFailed(e, command, seq, payload),
      );
    }
    return this.#act(command, seq, payload, action);
  }

  #hookFailed(e: unknown, command: number, seq: number, payload: Buffer): Decision {
    if (!(e instanceof PolicyError)) throw e;
    this.#host.policyFailed(e);
    // A command without a response cannot be answered: it goes to the server as it was.
    return NO_RESPONSE.has(command) ? payload : { toClient: errPacket(seq + 1, ClientErrors.HOOK_LUA_ERROR) };
  }

  /** What a hook's action makes of the command (see #hook). */
  #act(command: number, seq: number, payload: Buffer, action: CommandAction | undefined): Decision {
    const host = this.#host;
    if (action === undefined) return payload;
    if (action.kind === 'forward') return action.payload;
    const name = commandName(command);
    if (NO_RESPONSE.has(command) || (action.kind !== 'err' && ERR_ONLY.has(command))) {
      const what = NO_RESPONSE.has(command) ? 'has no response' : `cannot be answered with client:${action.kind}()`;
      host.policyFailed(new PolicyError(`on_command: '${name}' ${what}: forward it or refuse it with client:err()`));
      return NO_RESPONSE.has(command) ? payload : { toClient: errPacket(seq + 1, ClientErrors.HOOK_LUA_ERROR) };
    }
    switch (action.kind) {
      case 'err':
        host.metrics.commandsAnswered++;
        return { toClient: errPacket(seq + 1, action.error ?? ClientErrors.QUERY_REFUSED, action.message) };
      case 'ok':
        host.metrics.commandsAnswered++;
        return {
          toClient: writeOkPacket(
            seq + 1,
            {
              affectedRows: action.affectedRows,
              insertId: action.insertId,
              status: host.serverStatus(),
              warnings: action.warnings,
              info: action.info,
            },
            host.capabilities,
          ),
        };
      case 'result':
        host.metrics.commandsAnswered++;
        return {
          toClient: writeResultSet(
            seq + 1,
            action.columns,
            action.rows,
            host.capabilities,
            host.serverStatus(),
            host.extendedCapabilities,
          ),
        };
    }
  }

  async #initDb(packet: Buffer, seq: number, truncated: boolean): Promise<InterceptReply> {
    const host = this.#host;
    const hooks = host.hooks;
    if (hooks.onInitDb === undefined) return { toServer: packet };
    const database = packet.subarray(5);
    if (truncated) {
      return { toClient: errPacket(seq + 1, ClientErrors.WRONG_DB_NAME) };
    }
    let action;
    try {
      action = await hooks.onInitDb(Buffer.from(database));
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      host.policyFailed(e);
      return { close: errPacket(seq + 1, ClientErrors.INIT_DB_REFUSED, 'Lua error') };
    }
    if (action.kind === 'err') {
      host.metrics.connectionsRejected++;
      host.log(`init_db ${quoteBytes(database)} rejected`);
      return { toClient: errPacket(seq + 1, ClientErrors.INIT_DB_REFUSED, action.message) };
    }
    host.log(`init_db ${quoteBytes(action.database)}`);
    return {
      toServer: new PacketWriter(8 + action.database.length)
        .int1(Command.COM_INIT_DB)
        .bytes(action.database)
        .finish(seq),
    };
  }

  /**
   * KILL: find the session the id names (a connection id of this daemon, or the server thread id
   * of a session on the asking client's own server), check that the client may kill it, and kill
   * its thread on its server.
   */
  async #kill(seq: number, statement: KillStatement, comProcessKill: boolean): Promise<InterceptReply> {
    const host = this.#host;
    const self = host.session;
    const metrics = host.metrics;
    const what = comProcessKill ? 'COM_PROCESS_KILL' : `KILL ${statement.kind.toUpperCase()}`;
    let target = host.registry.get(statement.id) ?? (await host.registry.findElsewhere(statement.id));
    if (target === undefined && self.backendLabel !== undefined) {
      target = host.registry.byServerThread(self.backendLabel, statement.id);
    }
    if (target === undefined || target.closed || target.killTarget === undefined) {
      metrics.kill('unknown');
      host.log(`${what} ${statement.id}: unknown connection id`);
      return { toClient: errPacket(seq + 1, ClientErrors.UNKNOWN_THREAD, `Unknown thread id: ${statement.id}`) };
    }
    const targetId = target.killTarget;
    // Killing our own connection on our own server: the server does exactly that.
    if (target === self) {
      metrics.kill('self');
      const sql = Buffer.from(killSql(statement, targetId.threadId), 'utf8');
      return { toServer: new PacketWriter(8 + sql.length).int1(Command.COM_QUERY).bytes(sql).finish(0) };
    }
    if (!(await this.#mayKill(target, statement.kind === 'query'))) {
      metrics.kill('denied');
      host.log(`${what} ${statement.id}: denied (not the same user)`);
      return {
        toClient: errPacket(seq + 1, ClientErrors.KILL_DENIED, `You are not owner of thread ${statement.id}`),
      };
    }
    const sql = killSql(statement, targetId.threadId);
    host.log(`${what} ${statement.id}: ${sql} on ${target.backendLabel ?? '?'} for [${target.logName}]`);
    let reply: Buffer;
    try {
      reply = await runKill(targetId, sql, host.connectTimeoutMs);
    } catch (e) {
      metrics.kill('failed');
      host.log(`${what} ${statement.id} failed: ${errorMessage(e)}`);
      return {
        toClient: errPacket(
          seq + 1,
          ClientErrors.KILL_FAILED,
          `KILL could not reach the server of connection ${statement.id}`,
        ),
      };
    }
    metrics.kill(reply[0] === PacketHeader.OK ? 'done' : 'server_error');
    return { toClient: framePayload(reply, seq + 1) };
  }

  /** The server's own rule (a user kills its own threads), unless the handler's on_kill decides. */
  async #mayKill(target: KillableSession, query: boolean): Promise<boolean> {
    const host = this.#host;
    const hooks = host.hooks;
    if (hooks.onKill !== undefined) {
      try {
        return await hooks.onKill(target, query);
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        host.policyFailed(e);
        return false;
      }
    }
    const mine = host.session.killTarget;
    return mine !== undefined && target.killTarget !== undefined && mine.user.equals(target.killTarget.user);
  }
}
