// Client-side authentication towards a backend: choose the plugin the server asks for and
// compute the responses. Plugin names come from the network, so lookups go through a
// null-prototype table that names like "__proto__" or "toString" cannot trick.

import { createHash, constants as cryptoConstants, publicEncrypt } from 'node:crypto';

import { AuthPluginName } from '../protocol/constants.js';
import { ed25519Sign } from './ed25519.js';
import { nativePasswordResponse, sha1 } from './native-password.js';
import { ErrorCodes, ProxyError } from '../util/errors.js';

/** What the proxy knows about the password it logs in with. */
export interface BackendCredentials {
  /** The clear password, when Lua gave one. */
  readonly password: Uint8Array | undefined;
  /** SHA1(password): given by Lua as `password_sha1`, or derived from `password`. */
  readonly passwordSha1: Uint8Array | undefined;
}

export class AuthPluginError extends ProxyError {
  readonly pluginName: string;
  constructor(pluginName: string, message: string) {
    super(ErrorCodes.AUTH_PLUGIN, message);
    this.pluginName = pluginName;
  }
}

/** Where the login happens, for plugins whose exchange depends on the transport. */
export interface BackendAuthContext {
  /** True when a clear password may cross the transport (Unix socket; TLS once it exists). */
  readonly secureTransport: boolean;
  /** Identifies the backend (its address text), e.g. for caching its RSA public key. */
  readonly backendKey: string;
  /** caching_sha2_password over plain TCP: the server's pinned RSA public key (PEM). */
  readonly serverPublicKey?: Buffer;
  /** caching_sha2_password over plain TCP: may ask the server for its key (trusting the network). */
  readonly getServerPublicKey?: boolean;
}

/** A backend auth plugin: one response per server challenge. */
export interface BackendAuthPlugin {
  readonly name: string;
  /** The first response to the server's scramble (HandshakeResponse or AuthSwitchResponse). */
  initialResponse(scramble: Buffer, creds: BackendCredentials): Buffer;
  /**
   * An AuthMoreData packet (`data` is its payload without the 0x01 header). Returns the payload
   * to send next, or null to wait for the server's next packet. Plugins without it treat
   * AuthMoreData as an unexpected reply. Throws AuthPluginError on a packet it cannot use.
   */
  moreData?(data: Buffer, scramble: Buffer, creds: BackendCredentials, ctx: BackendAuthContext): Buffer | null;
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

/** The first `n` bytes of a scramble (a trailing NUL the packet parser dropped comes back as 0). */
function nonce(scramble: Buffer, n: number): Buffer {
  if (scramble.length >= n) return scramble.subarray(0, n);
  const out = Buffer.alloc(n);
  scramble.copy(out);
  return out;
}

const ed25519: BackendAuthPlugin = {
  name: AuthPluginName.ED25519,
  initialResponse(scramble, creds) {
    const pw = needClearPassword(AuthPluginName.ED25519, creds);
    return ed25519Sign(pw, nonce(scramble, 32));
  },
};

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** caching_sha2_password's scramble response: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ nonce). */
export function cachingSha2Response(password: Uint8Array, scramble: Uint8Array): Buffer {
  if (password.length === 0) return Buffer.alloc(0);
  const stage1 = sha256(password);
  const mask = sha256(sha256(stage1), scramble.subarray(0, 20));
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 32; i++) out[i] = stage1[i]! ^ mask[i]!;
  return out;
}

/** RSA-OAEP (SHA-1) of (password ‖ NUL) XOR the nonce, repeated over the whole input. */
export function cachingSha2EncryptPassword(password: Uint8Array, scramble: Uint8Array, pem: string | Buffer): Buffer {
  const plain = Buffer.concat([password, Buffer.of(0)]);
  const n = scramble.subarray(0, 20);
  for (let i = 0; i < plain.length; i++) plain[i] = plain[i]! ^ n[i % n.length]!;
  return publicEncrypt({ key: pem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
}

/** Backend public keys (PEM) seen over insecure transports, by backend address. */
const serverPublicKeys = new Map<string, Buffer>();

/** Forget cached backend RSA keys (tests; a backend whose key changed). */
export function clearCachedServerKeys(): void {
  serverPublicKeys.clear();
}

const CACHING_SHA2_FAST_AUTH_OK = 0x03;
const CACHING_SHA2_FULL_AUTH = 0x04;
const CACHING_SHA2_REQUEST_PUBLIC_KEY = 0x02;

const cachingSha2: BackendAuthPlugin = {
  name: AuthPluginName.CACHING_SHA2_PASSWORD,
  initialResponse(scramble, creds) {
    const pw = needClearPassword(AuthPluginName.CACHING_SHA2_PASSWORD, creds);
    return cachingSha2Response(pw, nonce(scramble, 20));
  },
  moreData(data, scramble, creds, ctx) {
    const name = AuthPluginName.CACHING_SHA2_PASSWORD;
    if (data.length === 1 && data[0] === CACHING_SHA2_FAST_AUTH_OK) return null;
    if (data.length === 1 && data[0] === CACHING_SHA2_FULL_AUTH) {
      const pw = needClearPassword(name, creds);
      // Inside TLS or over a Unix socket the protocol sends the password as it is.
      if (ctx.secureTransport) return Buffer.concat([pw, Buffer.of(0)]);
      if (ctx.serverPublicKey !== undefined) {
        try {
          return cachingSha2EncryptPassword(pw, nonce(scramble, 20), ctx.serverPublicKey);
        } catch {
          throw new AuthPluginError(name, 'The pinned server_public_key is not a usable RSA public key');
        }
      }
      // A key handed over by the network would let a man in the middle read the password: only
      // with the operator's explicit get_server_public_key.
      if (ctx.getServerPublicKey !== true) {
        throw new AuthPluginError(
          name,
          'caching_sha2_password full authentication over plain TCP needs TLS, server_public_key or get_server_public_key',
        );
      }
      const pem = serverPublicKeys.get(ctx.backendKey);
      if (pem !== undefined) return cachingSha2EncryptPassword(pw, nonce(scramble, 20), pem);
      return Buffer.of(CACHING_SHA2_REQUEST_PUBLIC_KEY);
    }
    if (data.length > 1 && data.subarray(0, 10).toString('latin1') === '-----BEGIN') {
      if (ctx.getServerPublicKey !== true) throw new AuthPluginError(name, 'Unrequested public key from server');
      const pw = needClearPassword(name, creds);
      const pem = Buffer.from(data);
      let response: Buffer;
      try {
        response = cachingSha2EncryptPassword(pw, nonce(scramble, 20), pem);
      } catch {
        throw new AuthPluginError(name, 'Bad public key from server');
      }
      serverPublicKeys.set(ctx.backendKey, pem);
      return response;
    }
    throw new AuthPluginError(name, 'Bad fast auth result packet from server');
  },
};

const registry: Readonly<Record<string, BackendAuthPlugin>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, BackendAuthPlugin>, {
    [nativePassword.name]: nativePassword,
    [clearPassword.name]: clearPassword,
    [ed25519.name]: ed25519,
    [cachingSha2.name]: cachingSha2,
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
