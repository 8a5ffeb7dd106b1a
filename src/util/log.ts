// Line-oriented logging to stdout/stderr (journald adds timestamps and levels by stream).

export type LogSink = (line: string) => void;

let infoSink: LogSink = (line) => process.stdout.write(line + '\n');
let errorSink: LogSink = (line) => process.stderr.write(line + '\n');

/** Replace the sinks (tests capture log lines this way). */
export function setLogSinks(info: LogSink, error: LogSink): void {
  infoSink = info;
  errorSink = error;
}

export function logInfo(line: string): void {
  infoSink(line);
}

export function logError(line: string): void {
  errorSink(line);
}

/** Quote a value for a log line the way fmt's {:?} does: "..." with escapes, never raw control bytes. */
export function quote(value: string): string {
  return JSON.stringify(value);
}
