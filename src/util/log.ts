// Line-oriented logging to stdout/stderr (journald adds timestamps and levels by stream).
//
// Every line is escaped at the sink: control characters (newlines, ANSI escapes, C1 controls, the
// Unicode line separators) become visible escapes, so nothing a client, a server or a Lua script
// puts into a log line can start a line of its own or rewrite the terminal. A multi-line report (a
// Lua traceback) is written as several calls, each continuation line under the same prefix.

import { isAscii } from 'node:buffer';

export type LogSink = (line: string) => void;

/**
 * Info lines wait for the end of the event loop's turn and go out in one write: a login logs three
 * lines, and each write to stdout costs a system call and a pass through Node's stream code (6 %
 * of a login storm's CPU). An error line, and the process's exit, flush them first, so the order
 * of lines across the two streams is kept.
 */
let pendingInfo = '';
let flushScheduled = false;

function flushInfo(): void {
  flushScheduled = false;
  if (pendingInfo.length === 0) return;
  const text = pendingInfo;
  pendingInfo = '';
  process.stdout.write(text);
}

process.on('exit', flushInfo);

/** Put before every line (a --workers worker's "[worker i] "). */
let linePrefix = '';

export function setLogPrefix(prefix: string): void {
  linePrefix = prefix;
}

let infoSink: LogSink = (line) => {
  pendingInfo += linePrefix + line + '\n';
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushInfo);
  }
};
let errorSink: LogSink = (line) => {
  flushInfo();
  process.stderr.write(linePrefix + line + '\n');
};

/** Replace the sinks (tests capture log lines this way). */
export function setLogSinks(info: LogSink, error: LogSink): void {
  infoSink = info;
  errorSink = error;
}

// C0 controls, DEL, C1 controls, U+2028/U+2029 (line breaks for some readers), and lone surrogates.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ud800-\udfff]/;
const UNSAFE_ALL =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeChar(c: string): string {
  switch (c) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
  }
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every character that could break or restyle a log line made visible. */
export function escapeLogText(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeChar) : text;
}

export function logInfo(line: string): void {
  infoSink(escapeLogText(line));
}

export function logError(line: string): void {
  errorSink(escapeLogText(line));
}

/** A report over several lines: the first as given, the others indented under the same prefix. */
export function logErrorBlock(prefix: string, first: string, rest: string | undefined): void {
  logError(`${prefix}${first}`);
  if (rest === undefined) return;
  for (const line of rest.split('\n')) if (line.length > 0) logError(`${prefix}  ${line}`);
}

/**
 * Quote a value for a log line the way fmt's {:?} does: "..." with `"` and `\` escaped and no raw
 * control characters (the sink escapes those).
 */
export function quote(value: string): string {
  return `"${quoteEscape(value)}"`;
}

function quoteEscape(value: string): string {
  return value.replace(/[\\"]/g, (c) => `\\${c}`);
}

/**
 * Quote bytes that should be text (a user name, a database, a server message): valid UTF-8 is
 * shown as text, every byte of an invalid sequence as \xNN.
 */
export function quoteBytes(bytes: Uint8Array): string {
  return `"${bytesToLogText(bytes, quoteEscape)}"`;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes as text for a log line: UTF-8 where valid (passed through `escape`), \xNN for each byte
 * where not.
 */
export function bytesToLogText(bytes: Uint8Array, escape: (text: string) => string = (t) => t): string {
  // ASCII (user and database names, server versions, as a rule) reads the same as latin1, which
  // is much cheaper to decode than UTF-8 with validation.
  if (isAscii(bytes)) return escape(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'));
  try {
    return escape(fatalDecoder.decode(bytes));
  } catch {
    let out = '';
    let i = 0;
    while (i < bytes.length) {
      const len = utf8SequenceLength(bytes, i);
      if (len > 0) {
        out += escape(Buffer.from(bytes.subarray(i, i + len)).toString('utf8'));
        i += len;
      } else {
        out += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
        i++;
      }
    }
    return out;
  }
}

/** Length of the valid UTF-8 sequence at `i`, or 0 if the byte there does not start one. */
function utf8SequenceLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  let len: number;
  let min: number;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    min = 0x10000;
  } else return 0;
  if (i + len > b.length) return 0;
  let cp = c & (0xff >> (len + 1));
  for (let k = 1; k < len; k++) {
    const cc = b[i + k]!;
    if ((cc & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/**
 * At most `burst` lines per `intervalMs` for one kind of line; the next line after a quiet window
 * says how many were left out.
 */
export class LogRateLimit {
  readonly #burst: number;
  readonly #intervalMs: number;
  #windowStart = 0;
  #count = 0;
  #suppressed = 0;

  constructor(burst: number, intervalMs: number) {
    this.#burst = burst;
    this.#intervalMs = intervalMs;
  }

  /** Undefined: leave the line out. Otherwise a suffix for the line ('' or the suppressed count). */
  take(now = Date.now()): string | undefined {
    if (now - this.#windowStart >= this.#intervalMs) {
      this.#windowStart = now;
      this.#count = 0;
    }
    if (this.#count >= this.#burst) {
      this.#suppressed++;
      return undefined;
    }
    this.#count++;
    const suffix = this.#suppressed > 0 ? ` (${this.#suppressed} similar line(s) suppressed)` : '';
    this.#suppressed = 0;
    return suffix;
  }
}

/** Global limits per kind of line, so many sessions together cannot flood the log either. */
const globalLimits = new Map<string, LogRateLimit>();
const GLOBAL_BURST = 20;
const GLOBAL_INTERVAL_MS = 1_000;

/** A line of a kind that can repeat (refusals, resource exhaustion): globally rate-limited. */
export function logLimited(kind: string, line: string, error = true, now = Date.now()): void {
  let limit = globalLimits.get(kind);
  if (limit === undefined) {
    limit = new LogRateLimit(GLOBAL_BURST, GLOBAL_INTERVAL_MS);
    globalLimits.set(kind, limit);
  }
  const suffix = limit.take(now);
  if (suffix === undefined) return;
  if (error) logError(line + suffix);
  else logInfo(line + suffix);
}
