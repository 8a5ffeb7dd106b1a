// libpq connection strings for node-postgres, which understands URIs but not libpq's
// keyword/value form ('dbname=foo host=/run/postgresql user=proxy').

import type { PoolConfig } from 'pg';

/** Keywords we map onto node-postgres options; anything else is rejected. */
const KNOWN = new Set(['host', 'port', 'dbname', 'user', 'password', 'connect_timeout', 'application_name']);

/**
 * Split a libpq keyword/value string into pairs. Values are either bare (up to the next
 * whitespace, `\x` escapes x) or single-quoted (`\'` and `\\` escapes). Throws on malformed input.
 */
export function parseKeywordValue(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const n = text.length;
  const isSpace = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);
  while (i < n) {
    while (isSpace(text[i])) i++;
    if (i >= n) break;
    const ks = i;
    while (i < n && text[i] !== '=' && !isSpace(text[i])) i++;
    const key = text.slice(ks, i);
    while (isSpace(text[i])) i++;
    if (text[i] !== '=' || key === '') throw new Error(`missing "=" after "${key}" in connection info string`);
    i++;
    while (isSpace(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new Error('unterminated quoted string in connection info string');
        const c = text[i]!;
        if (c === '\\' && i + 1 < n) {
          value += text.charAt(i + 1);
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      while (i < n && !isSpace(text[i])) {
        if (text[i] === '\\' && i + 1 < n) {
          value += text.charAt(i + 1);
          i += 2;
        } else {
          value += text.charAt(i);
          i++;
        }
      }
    }
    out.set(key, value);
  }
  return out;
}

/** node-postgres pool options for a libpq conninfo string or a postgres:// / postgresql:// URI. */
export function conninfoToConfig(conninfo: string): PoolConfig {
  if (/^postgres(?:ql)?:\/\//i.test(conninfo)) return { connectionString: conninfo };
  const config: PoolConfig = {};
  for (const [key, value] of parseKeywordValue(conninfo)) {
    if (!KNOWN.has(key)) throw new Error(`unsupported connection option "${key}"`);
    switch (key) {
      case 'host':
        // A directory (leading '/') is a Unix socket directory; node-postgres does the same.
        config.host = value;
        break;
      case 'port': {
        const port = Number(value);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid port "${value}"`);
        config.port = port;
        break;
      }
      case 'dbname':
        config.database = value;
        break;
      case 'user':
        config.user = value;
        break;
      case 'password':
        config.password = value;
        break;
      case 'connect_timeout': {
        const s = Number(value);
        if (!Number.isFinite(s) || s < 0) throw new Error(`invalid connect_timeout "${value}"`);
        // libpq: 0 means wait forever; values below 2 count as 2.
        if (s > 0) config.connectionTimeoutMillis = Math.max(2, Math.floor(s)) * 1000;
        break;
      }
      case 'application_name':
        config.application_name = value;
        break;
    }
  }
  return config;
}
