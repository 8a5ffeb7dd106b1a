// systemd readiness notification (sd_notify) through the sd-notify package. Every call is a
// no-op when NOTIFY_SOCKET is unset (not started by systemd), so this is safe everywhere.

import { createRequire } from 'node:module';

interface SdNotify {
  ready(): void;
  stopping(): void;
  sendStatus(text: string): void;
}

let loaded: SdNotify | null | undefined;

function sd(): SdNotify | null {
  if (loaded !== undefined) return loaded;
  if (process.env['NOTIFY_SOCKET'] === undefined) return (loaded = null);
  loaded = createRequire(import.meta.url)('sd-notify') as SdNotify;
  return loaded;
}

export function notifyReady(): void {
  sd()?.ready();
}

export function notifyStopping(): void {
  sd()?.stopping();
}

export function notifyStatus(text: string): void {
  sd()?.sendStatus(text);
}
