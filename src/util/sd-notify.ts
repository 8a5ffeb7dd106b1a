// systemd service notifications (sd_notify(3)): READY=1, RELOADING=1, STOPPING=1, STATUS=,
// WATCHDOG=1. Sent through the `sd-notify` package (libsystemd's sd_notify); Node itself cannot
// send AF_UNIX datagrams. Everything is a no-op when NOTIFY_SOCKET is unset (not started by
// systemd), and nothing here throws: a missing native module or an unusable NOTIFY_SOCKET only
// costs the notifications.

import { createRequire } from 'node:module';
import { errorMessage } from './errors.js';
import { logError } from './log.js';

/** The part of the sd-notify package used here: `sendState` is its raw sd_notify(0, state). */
interface SdNotify {
  sendState(state: string): void;
}

let loaded: SdNotify | null | undefined;

function sd(): SdNotify | null {
  if (loaded !== undefined) return loaded;
  const socket = process.env['NOTIFY_SOCKET'];
  if (socket === undefined || socket === '') return (loaded = null);
  try {
    const mod = createRequire(import.meta.url)('sd-notify') as Partial<SdNotify>;
    if (typeof mod.sendState !== 'function') throw new Error('sd-notify has no sendState()');
    loaded = mod as SdNotify;
  } catch (e) {
    logError(`sd_notify disabled: cannot load the sd-notify package: ${errorMessage(e)}`);
    loaded = null;
  }
  return loaded;
}

/** True when notifications go anywhere (NOTIFY_SOCKET is set and sd-notify loaded). */
export function notifyEnabled(): boolean {
  return sd() !== null;
}

/** Send newline-separated `KEY=value` assignments in one datagram. */
function send(...assignments: string[]): void {
  const s = sd();
  if (s === null) return;
  try {
    // sd_notify() returns an error code for a bad socket; it does not throw. Be safe anyway.
    s.sendState(assignments.join('\n'));
  } catch (e) {
    logError(`sd_notify failed: ${errorMessage(e)}`);
  }
}

/** A STATUS= line: one line of text, no newlines (they would start a new assignment). */
function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, ' ')}`;
}

export function notifyReady(status?: string): void {
  if (status === undefined) send('READY=1');
  else send('READY=1', statusLine(status));
}

/**
 * RELOADING=1 with MONOTONIC_USEC, which systemd ≥ 253 requires for Type=notify-reload (older
 * versions ignore the extra field). Send READY=1 when the reload is over.
 */
export function notifyReloading(status?: string): void {
  const fields = ['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`];
  if (status !== undefined) fields.push(statusLine(status));
  send(...fields);
}

export function notifyStopping(status?: string): void {
  if (status === undefined) send('STOPPING=1');
  else send('STOPPING=1', statusLine(status));
}

export function notifyStatus(text: string): void {
  send(statusLine(text));
}

/**
 * CLOCK_MONOTONIC in µs, as systemd compares it. libuv's hrtime reads CLOCK_MONOTONIC on Linux.
 */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/**
 * The watchdog interval systemd expects (WATCHDOG_USEC, in µs), or undefined when the watchdog is
 * off or meant for another process (WATCHDOG_PID set to a pid other than ours).
 */
export function watchdogUsec(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const usec = env['WATCHDOG_USEC'];
  if (usec === undefined || !/^[0-9]+$/.test(usec)) return undefined;
  const n = Number(usec);
  if (!Number.isSafeInteger(n) || n <= 0) return undefined;
  const forPid = env['WATCHDOG_PID'];
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return undefined;
  return n;
}

/** setInterval's limit (ms): longer delays fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Send WATCHDOG=1 every half of WATCHDOG_USEC, if systemd enabled the watchdog. The timer is
 * unref'd (it never keeps the process alive). Returns a function that stops it.
 */
export function startWatchdog(): () => void {
  const usec = watchdogUsec();
  if (usec === undefined || !notifyEnabled()) return () => undefined;
  const ms = Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(usec / 2000)));
  send('WATCHDOG=1');
  const timer = setInterval(() => send('WATCHDOG=1'), ms);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * STATUS= text that changes often (the connection count): sent at once when the last update is
 * a second old or more, otherwise once that second is over (the latest text wins). The timer is
 * unref'd.
 */
export class StatusThrottle {
  readonly #intervalMs: number;
  readonly #send: (text: string) => void;
  #lastSentAt = -Infinity;
  #sent: string | undefined;
  #pending: string | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(intervalMs = 1000, sendText: (text: string) => void = notifyStatus) {
    this.#intervalMs = intervalMs;
    this.#send = sendText;
  }

  /** Text for the next STATUS= (dropped if it equals what was sent last). */
  update(text: string): void {
    this.#pending = text;
    if (this.#timer !== undefined) return;
    const wait = this.#lastSentAt + this.#intervalMs - performance.now();
    if (wait <= 0) {
      this.#flush();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, wait);
    this.#timer.unref();
  }

  /** Record `text` as sent by someone else (e.g. together with READY=1), so it is not repeated. */
  sentElsewhere(text: string): void {
    this.#sent = text;
    this.#lastSentAt = performance.now();
    if (this.#pending === text) this.#pending = undefined;
  }

  #flush(): void {
    const text = this.#pending;
    this.#pending = undefined;
    if (text === undefined || text === this.#sent) return;
    this.#sent = text;
    this.#lastSentAt = performance.now();
    this.#send(text);
  }
}
