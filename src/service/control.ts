// The control protocol listener (control_listen): datagrams in CM4all's beng-proxy format, of which
// DISCONNECT_DATABASE (close every session of an account) is carried out, as myproxy does. On a
// Unix socket the sender's uid is checked (beyond myproxy, which accepts anyone who can write to
// the socket): root and the daemon's own user, plus `allowed_uids`.

import { addonFunctions, type DatagramHandle } from '../net/native.js';
import { ControlCommand, parseControlDatagram } from '../protocol/control.js';
import {} from '../protocol/constants.js';
import { bytesToLogText, logError, logLimited, quote } from '../util/log.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { ClientErrors, type ClientErrorSpec } from '../util/errors.js';

/** A session the control protocol can end. */
export interface ControllableSession {
  readonly account: string | undefined;
  close(error: ClientErrorSpec): void;
}

export interface ControlTarget {
  readonly metrics: ProxyMetrics;
  /** Every live session of `account`. */
  sessionsOf(account: string): ControllableSession[];
}

export interface ControlListener {
  readonly fd: number;
  readonly label: string;
  readonly local: boolean;
  readonly allowedUids: 'any' | ReadonlySet<number>;
}

/** Carries out one datagram; returns the number of sessions it closed. */
export function handleControlDatagram(datagram: Buffer, target: ControlTarget, label: string): number {
  const metrics = target.metrics;
  metrics.controlDatagrams++;
  const { commands, error } = parseControlDatagram(datagram);
  let closed = 0;
  // Commands before a malformed one are carried out (myproxy dispatches them while parsing).
  for (const { command, payload } of commands) {
    if (command !== ControlCommand.DISCONNECT_DATABASE || payload.length === 0) continue;
    const account = payload.toString('utf8');
    const sessions = Buffer.from(account, 'utf8').equals(payload) ? target.sessionsOf(account) : [];
    for (const s of sessions) s.close(ClientErrors.CONNECTION_KILLED);
    closed += sessions.length;
    metrics.controlDisconnects += sessions.length;
    if (sessions.length > 0)
      logError(`Closed ${sessions.length} connections for account ${quote(bytesToLogText(payload))}`);
  }
  if (error !== undefined) {
    metrics.controlMalformed++;
    logLimited('control_malformed', `control ${label}: ${error}`);
  }
  return closed;
}

/** Starts receiving on a bound datagram socket; returns a function that stops it. */
export function startControl(listener: ControlListener, target: ControlTarget): () => void {
  return startControlReceiver(listener, target.metrics, (bytes) =>
    handleControlDatagram(bytes, target, listener.label),
  );
}

/**
 * Receives on a bound datagram socket and hands every datagram that passes the sender check to
 * `onDatagram` (the supervisor of a `--workers N` daemon passes them on to every worker).
 */
export function startControlReceiver(
  listener: ControlListener,
  metrics: ProxyMetrics,
  onDatagram: (bytes: Buffer) => void,
): () => void {
  const ownUid = process.getuid?.() ?? -1;
  const handle: DatagramHandle = addonFunctions().datagramListen(listener.fd, (bytes, uid, truncated) => {
    if (
      listener.local &&
      listener.allowedUids !== 'any' &&
      uid !== 0 &&
      uid !== ownUid &&
      !listener.allowedUids.has(uid)
    ) {
      metrics.controlMalformed++;
      logLimited('control_uid', `control ${listener.label}: datagram from uid ${uid} refused (not in allowed_uids)`);
      return;
    }
    if (truncated) {
      metrics.controlMalformed++;
      logLimited('control_malformed', `control ${listener.label}: datagram too long, ignored`);
      return;
    }
    try {
      onDatagram(bytes);
    } catch (e) {
      logError(`control ${listener.label}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  });
  return () => addonFunctions().datagramClose(handle);
}
