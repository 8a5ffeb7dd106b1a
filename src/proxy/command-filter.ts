// The commands the relay takes out of a session's stream and hands here: COM_CHANGE_USER (always
// refused: it would let a client become another user without the login policy), COM_INIT_DB (to
// on_init_db, when the handler has one), and KILL (COM_PROCESS_KILL and KILL statements, which
// name the proxy's connection ids and must be translated: see kill.ts).

import { Command, PacketHeader } from '../protocol/constants.js';
import { PacketWriter, framePayload } from '../protocol/writer.js';
import type { InterceptReply } from '../net/relay.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { ClientErrors, type ClientErrorSpec, errorMessage } from '../util/errors.js';
import { quoteBytes } from '../util/log.js';
import { errPacket } from './client-login.js';
import { PolicyError, type ClientSession, type SessionHooks } from './handler.js';
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
}

/** The command bytes a session's relay must take out of the stream for this filter. */
export function filteredCommands(hooks: SessionHooks): number[] {
  const commands: number[] = [Command.COM_CHANGE_USER, Command.COM_PROCESS_KILL];
  if (hooks.onInitDb !== undefined) commands.push(Command.COM_INIT_DB);
  return commands;
}

export class CommandFilter {
  readonly #host: FilterHost;

  constructor(host: FilterHost) {
    this.#host = host;
  }

  /** An intercepted command (the whole logical packet, or its head when `truncated`). */
  async onCommand(packet: Buffer, truncated: boolean): Promise<InterceptReply> {
    const seq = packet[3]!;
    const command = packet[4];
    switch (command) {
      case Command.COM_CHANGE_USER:
        this.#host.logLimited('change_user', 'COM_CHANGE_USER refused');
        return {
          toClient: errPacket(seq + 1, ClientErrors.CHANGE_USER_REFUSED),
        };
      case Command.COM_INIT_DB:
        return this.#initDb(packet, seq, truncated);
      case Command.COM_PROCESS_KILL: {
        if (truncated || packet.length < 9) return { toServer: packet };
        return this.#kill(seq, { kind: 'connection', modifier: '', id: packet.readUInt32LE(5) }, true);
      }
      case Command.COM_QUERY: {
        const statement = truncated ? null : parseKillStatement(packet.subarray(5));
        if (statement === null) return { toServer: packet }; // not a KILL we translate: as it is
        return this.#kill(seq, statement, false);
      }
      default:
        return { toServer: packet };
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
    let target = host.registry.get(statement.id);
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
