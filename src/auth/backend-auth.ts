// Client-side authentication towards a backend: choose the plugin the server asks for and
// compute the responses. Plugin names come from the network, so lookups go through a
// null-prototype table that names like "__proto__" or "toString" cannot trick.

import { AuthPluginName } from '../protocol/constants.js';
import { nativePasswordResponse, sha1 } from './native-password.js';

/** What the proxy knows about the password it logs in with. */
export interface BackendCredentials {
  /** The clear password, when Lua gave one. */
  readonly password: Uint8Array | undefined;
  /** SHA1(password): given by Lua as `password_sha1`, or derived from `password`. */
  readonly passwordSha1: Uint8Array | undefined;
}

export class AuthPluginError extends Error {
  readonly pluginName: string;
  constructor(pluginName: string, message: string) {
    super(message);
    this.pluginName = pluginName;
    this.name = 'AuthPluginError';
  }
}

/** A backend auth plugin: one response per server challenge. */
export interface BackendAuthPlugin {
  readonly name: string;
  /** The first response to the server's scramble (HandshakeResponse or AuthSwitchResponse). */
  initialResponse(scramble: Buffer, creds: BackendCredentials): Buffer;
}

function needClearPassword(name: string, creds: BackendCredentials): Uint8Array {
  if (creds.password === undefined) {
    throw new AuthPluginError(name, 'backend requires the clear-text password');
  }
  return creds.password;
}

const nativePassword: BackendAuthPlugin = {
  name: AuthPluginName.NATIVE_PASSWORD,
  initialResponse(scramble, creds) {
    const digest = creds.passwordSha1 ?? (creds.password !== undefined ? sha1(creds.password) : undefined);
    // An empty password is an empty response (hashing "" would lock passwordless accounts out).
    if (digest === undefined || (creds.password !== undefined && creds.password.length === 0)) {
      return Buffer.alloc(0);
    }
    return nativePasswordResponse(digest, scramble);
  },
};

const clearPassword: BackendAuthPlugin = {
  name: AuthPluginName.CLEAR_PASSWORD,
  initialResponse(_scramble, creds) {
    const pw = needClearPassword(AuthPluginName.CLEAR_PASSWORD, creds);
    return Buffer.concat([pw, Buffer.of(0)]);
  },
};

const registry: Readonly<Record<string, BackendAuthPlugin>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, BackendAuthPlugin>, {
    [nativePassword.name]: nativePassword,
    [clearPassword.name]: clearPassword,
  }),
);

/**
 * Look up a backend auth plugin. `strict` (AuthSwitchRequest) returns undefined for unknown
 * names; lenient (the greeting) falls back to mysql_native_password as myproxy does.
 */
export function backendAuthPlugin(name: string, strict: boolean): BackendAuthPlugin | undefined {
  const plugin = Object.hasOwn(registry, name) ? registry[name] : undefined;
  if (plugin !== undefined) return plugin;
  return strict ? undefined : nativePassword;
}

/** Names of the plugins the proxy can use towards a backend. */
export function supportedBackendPlugins(): string[] {
  return Object.keys(registry);
}
