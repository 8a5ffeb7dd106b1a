// Capability transparency: which capabilities the proxy greets clients with and passes on to the
// server. The proxy greets before it knows the server, so it learns the greeting of every server
// it may relay to (configured addresses and cluster nodes at startup, cluster checks, every backend
// login) and greets with what those servers share. See docs/protocol.md, "Capabilities".

import { Capability, DEFAULT_CHARSET, MariaDbCapability } from '../protocol/constants.js';
import type { HandshakeV10 } from '../protocol/packets/handshake.js';
import { formatAddress, type SocketAddress } from '../net/address.js';

/** Capabilities the proxy handles itself, whatever the server: the login's own framing. */
export const PROXY_OWN_CAPABILITIES =
  Capability.CLIENT_PROTOCOL_41 |
  Capability.CLIENT_RESERVED |
  Capability.CLIENT_SECURE_CONNECTION |
  Capability.CLIENT_CONNECT_WITH_DB |
  Capability.CLIENT_PLUGIN_AUTH |
  Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

/**
 * Capabilities passed from the client to the server when both have them. Left out on purpose:
 * CLIENT_COMPRESS and CLIENT_ZSTD_COMPRESSION_ALGORITHM (the relay moves uncompressed packets),
 * CLIENT_SSL (a transport matter of each side), CLIENT_OPTIONAL_RESULTSET_METADATA (MySQL's
 * metadata-follows byte: the response tracker does not follow it), CLIENT_QUERY_ATTRIBUTES (puts
 * parameters before the SQL of COM_QUERY, which on_query, the KILL filter and the command scanner
 * read as text), CLIENT_MULTI_FACTOR_AUTHENTICATION (the proxy logs in itself). CLIENT_LOCAL_FILES
 * is offered only by listeners with local_infile (so it is in a client's set only there).
 */
export const PASS_THROUGH_CAPABILITIES =
  Capability.CLIENT_LONG_PASSWORD |
  Capability.CLIENT_LOCAL_FILES |
  Capability.CLIENT_FOUND_ROWS |
  Capability.CLIENT_LONG_FLAG |
  Capability.CLIENT_NO_SCHEMA |
  Capability.CLIENT_ODBC |
  Capability.CLIENT_IGNORE_SPACE |
  Capability.CLIENT_INTERACTIVE |
  Capability.CLIENT_IGNORE_SIGPIPE |
  Capability.CLIENT_TRANSACTIONS |
  Capability.CLIENT_MULTI_STATEMENTS |
  Capability.CLIENT_MULTI_RESULTS |
  Capability.CLIENT_PS_MULTI_RESULTS |
  Capability.CLIENT_CONNECT_ATTRS |
  Capability.CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS |
  Capability.CLIENT_SESSION_TRACK |
  Capability.CLIENT_DEPRECATE_EOF |
  Capability.CLIENT_REMEMBER_OPTIONS;

/**
 * Capabilities that change the wire format of command-phase traffic. The relay forwards bytes
 * unchanged, so client and server must agree on each of these exactly; a server lacking one the
 * client took fails the login with a clear error instead of corrupting result sets later.
 */
export const WIRE_FORMAT_CAPABILITIES =
  Capability.CLIENT_LONG_FLAG |
  Capability.CLIENT_TRANSACTIONS |
  Capability.CLIENT_MULTI_RESULTS |
  Capability.CLIENT_PS_MULTI_RESULTS |
  Capability.CLIENT_SESSION_TRACK |
  Capability.CLIENT_DEPRECATE_EOF;

/**
 * MariaDB extended capabilities passed through. The tracker follows each (native/tracker.c):
 * progress reports are ERR-shaped packets it skips, a cached-metadata result has no column
 * definitions, bulk execution answers like COM_STMT_EXECUTE, extended metadata only adds bytes
 * inside column definitions. Left out: COM_MULTI (withdrawn by MariaDB) and BULK_UNIT_RESULTS
 * (11.5+: a bulk execution then answers with a result set of per-row results, not yet followed).
 */
export const PASS_THROUGH_EXTENDED =
  MariaDbCapability.MARIADB_CLIENT_PROGRESS |
  MariaDbCapability.MARIADB_CLIENT_STMT_BULK_OPERATIONS |
  MariaDbCapability.MARIADB_CLIENT_EXTENDED_METADATA |
  MariaDbCapability.MARIADB_CLIENT_CACHE_METADATA;

/**
 * Extended capabilities that change what the client parses: the server must have them when the
 * client took them. (Progress reports are only sent when both have it: a server without simply
 * sends none.)
 */
export const WIRE_FORMAT_EXTENDED =
  MariaDbCapability.MARIADB_CLIENT_STMT_BULK_OPERATIONS |
  MariaDbCapability.MARIADB_CLIENT_EXTENDED_METADATA |
  MariaDbCapability.MARIADB_CLIENT_CACHE_METADATA;

/**
 * What the proxy assumes of a server it knows nothing about (none learned yet): the set it offered
 * before it learned greetings, which every MySQL 5.7+/MariaDB 10.2+ server has, and no extended
 * capabilities.
 */
const ASSUMED_SERVER_CAPABILITIES =
  (PASS_THROUGH_CAPABILITIES | PROXY_OWN_CAPABILITIES | Capability.CLIENT_LOCAL_FILES) >>> 0;

/** What the proxy learned of one server from its greeting. */
export interface ServerProfile {
  readonly capabilities: number;
  readonly extendedCapabilities: number;
  readonly serverVersion: Buffer;
  readonly characterSet: number;
}

/** What a listener greets its clients with. */
export interface GreetingProfile {
  /** Server capabilities offered (before the listener's own additions, e.g. CLIENT_LOCAL_FILES). */
  readonly capabilities: number;
  readonly extendedCapabilities: number;
  /**
   * The version to greet with: the servers' common one, or the oldest of MariaDB servers that
   * differ (libmariadb sends its extended capabilities only to a server whose version says MariaDB);
   * undefined when none is known or MySQL and MariaDB are mixed.
   */
  readonly serverVersion: Buffer | undefined;
  readonly characterSet: number;
}

function sameProfile(a: ServerProfile, b: ServerProfile): boolean {
  return (
    a.capabilities === b.capabilities &&
    a.extendedCapabilities === b.extendedCapabilities &&
    a.characterSet === b.characterSet &&
    a.serverVersion.equals(b.serverVersion)
  );
}

/** The servers' greetings by address label, and the greeting they share (recomputed on change). */
export class ServerProfiles {
  readonly #byLabel = new Map<string, ServerProfile>();
  #shared: GreetingProfile | undefined;
  /** Bumped whenever a profile changes (listeners' cached greetings check it). */
  generation = 0;

  /** Note a server's greeting (startup probe, cluster check, backend login). */
  note(label: string, greeting: HandshakeV10): void {
    const profile: ServerProfile = {
      capabilities: greeting.capabilities >>> 0,
      extendedCapabilities: greeting.extendedCapabilities >>> 0,
      serverVersion: Buffer.from(greeting.serverVersion),
      characterSet: greeting.characterSet,
    };
    const old = this.#byLabel.get(label);
    if (old !== undefined && sameProfile(old, profile)) return;
    this.#byLabel.set(label, profile);
    this.#shared = undefined;
    this.generation++;
  }

  get(label: string): ServerProfile | undefined {
    return this.#byLabel.get(label);
  }

  get size(): number {
    return this.#byLabel.size;
  }

  /** Forget everything (tests). */
  clear(): void {
    this.#byLabel.clear();
    this.#shared = undefined;
    this.generation++;
  }

  /** What every known server has (the proxy's defaults while none is known). Cached until a greeting changes. */
  shared(): GreetingProfile {
    return (this.#shared ??= this.#computeShared(this.#byLabel.values()));
  }

  /** What the servers at `labels` share (those known; all known servers when none of them is). */
  sharedOf(labels: Iterable<string>): GreetingProfile {
    const known: ServerProfile[] = [];
    for (const l of labels) {
      const p = this.#byLabel.get(l);
      if (p !== undefined) known.push(p);
    }
    return known.length === 0 ? this.shared() : this.#computeShared(known.values());
  }

  #computeShared(profiles: Iterable<ServerProfile>): GreetingProfile {
    const list = [...profiles];
    if (list.length === 0) {
      return {
        capabilities: ASSUMED_SERVER_CAPABILITIES,
        extendedCapabilities: 0,
        serverVersion: undefined,
        characterSet: DEFAULT_CHARSET,
      };
    }
    let caps = 0xffffffff;
    let ext = 0xffffffff;
    let version: Buffer | undefined;
    let charset: number | undefined;
    let first = true;
    for (const p of list) {
      caps &= p.capabilities;
      // A MySQL server (CLIENT_LONG_PASSWORD set) has no extended capabilities.
      ext &= p.extendedCapabilities;
      if (first) {
        version = p.serverVersion;
        charset = p.characterSet;
        first = false;
      } else {
        if (version !== undefined && !version.equals(p.serverVersion)) version = olderMariaDb(version, p.serverVersion);
        if (charset !== p.characterSet) charset = undefined;
      }
    }
    return {
      capabilities: caps >>> 0,
      extendedCapabilities: ext >>> 0,
      serverVersion: version,
      characterSet: charset ?? DEFAULT_CHARSET,
    };
  }
}

/** "5.5.5-10.11.6-MariaDB-..." or "11.4.2-MariaDB" → [10, 11, 6] / [11, 4, 2]; undefined if not MariaDB. */
function mariaDbVersion(v: Buffer): number[] | undefined {
  const m = /^(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)-MariaDB/.exec(v.toString('latin1'));
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])];
}

function olderMariaDb(a: Buffer, b: Buffer): Buffer | undefined {
  const va = mariaDbVersion(a);
  const vb = mariaDbVersion(b);
  if (va === undefined || vb === undefined) return undefined;
  for (let i = 0; i < 3; i++) if (va[i] !== vb[i]) return va[i]! < vb[i]! ? a : b;
  return a;
}

/** A listener's greeting before it knows its servers: the common set, no MariaDB extensions. */
function unrouted(shared: GreetingProfile): GreetingProfile {
  if (shared.extendedCapabilities === 0 && shared.serverVersion === undefined) return shared;
  return { ...shared, extendedCapabilities: 0, serverVersion: undefined };
}

/** The process's servers, by address label. */
export const serverProfiles = new ServerProfiles();

/** A destination a listener names in advance (mysql_listen option `destinations`). */
export interface DeclaredDestination {
  /** Read when first needed: host names of mysql_resolve() objects are resolved after the config ran. */
  readonly address: SocketAddress;
}

/**
 * The servers one listener's sessions go to. Its greeting offers what those share.
 *
 * Which servers a listener routes to is Lua's secret, unless the config states them (mysql_listen
 * option `destinations`): then the listener greets with exactly what those servers share, MariaDB's
 * extended capabilities included, from its first client on. Without it, until its first session
 * reached a server, it offers what every server the proxy knows shares (configured addresses and
 * cluster nodes, probed at startup), but none of MariaDB's extended capabilities, which a MySQL
 * server reached first would lack. Servers its sessions reach are added in both cases.
 */
export class ListenerServers {
  readonly #labels = new Set<string>();
  readonly #declared: readonly DeclaredDestination[];
  /** The declared destinations by label (made on first use, when host names are resolved). */
  #declaredByLabel: Map<string, SocketAddress> | undefined;
  #generation = -1;
  #profile: GreetingProfile | undefined;
  /** The one wait for declared greetings not learned yet (shared by the clients that arrive meanwhile). */
  #wait: Promise<void> | undefined;
  /**
   * Nothing to wait for before a greeting: no destinations stated, all their greetings known
   * (profiles are never forgotten), or a wait already gave up (later clients do not wait again).
   */
  #settled: boolean;

  constructor(declared: readonly DeclaredDestination[] = []) {
    this.#declared = declared;
    this.#settled = declared.length === 0;
  }

  /** True when a client must wait for ready() before its greeting (cheap: checked on every login). */
  get pending(): boolean {
    if (this.#settled) return false;
    if (this.#wait === undefined && this.missing().length === 0) this.#settled = true;
    return !this.#settled;
  }

  add(label: string): void {
    if (this.#labels.has(label)) return;
    this.#labels.add(label);
    this.#profile = undefined;
  }

  profile(): GreetingProfile {
    if (this.#profile === undefined || this.#generation !== serverProfiles.generation) {
      this.#generation = serverProfiles.generation;
      this.#profile = this.#compute();
    }
    return this.#profile;
  }

  #compute(): GreetingProfile {
    if (this.#declared.length === 0) {
      return this.#labels.size === 0 ? unrouted(serverProfiles.shared()) : serverProfiles.sharedOf(this.#labels);
    }
    const labels = [...this.#declaredLabels().keys(), ...this.#labels];
    // None of the stated servers is known (unreachable so far): the cautious greeting.
    return labels.some((l) => serverProfiles.get(l) !== undefined)
      ? serverProfiles.sharedOf(labels)
      : unrouted(serverProfiles.shared());
  }

  #declaredLabels(): Map<string, SocketAddress> {
    return (this.#declaredByLabel ??= new Map(this.#declared.map((d) => [formatAddress(d.address), d.address])));
  }

  /** The stated destinations whose greeting is not known yet. */
  missing(): SocketAddress[] {
    if (this.#declared.length === 0) return [];
    return [...this.#declaredLabels()].filter(([l]) => serverProfiles.get(l) === undefined).map(([, a]) => a);
  }

  /**
   * Where `pending`: the one wait in progress, or a new one started with `learn` (a bounded probe
   * of the missing servers); every client arriving meanwhile waits for the same. `gaveUp` is called
   * once, when that wait ends without some of them: those clients and all later ones are greeted
   * with what is known (sessions and cluster checks still teach the missing greetings later).
   */
  ready(learn: (addresses: SocketAddress[]) => Promise<void>, gaveUp: (missing: string[]) => void): Promise<void> {
    if (this.#wait !== undefined) return this.#wait;
    const missing = this.missing();
    this.#wait = learn(missing)
      .catch(() => undefined)
      .then(() => {
        const still = this.missing();
        this.#wait = undefined;
        this.#settled = true;
        if (still.length > 0) gaveUp(still.map(formatAddress));
      });
    return this.#wait;
  }
}

/**
 * The capabilities of a greeting to clients: the proxy's own, plus what the known servers share of
 * what can be passed through. MariaDB's extended capabilities are offered when every known server
 * is a MariaDB with them; then CLIENT_LONG_PASSWORD is cleared, which tells MariaDB clients to
 * send theirs.
 */
export function greetingCapabilities(
  shared: GreetingProfile,
  listenerExtra: number,
): {
  capabilities: number;
  extendedCapabilities: number;
} {
  const offered = (PASS_THROUGH_CAPABILITIES & ~Capability.CLIENT_LOCAL_FILES) | listenerExtra;
  let caps = (PROXY_OWN_CAPABILITIES | (shared.capabilities & offered)) >>> 0;
  const ext = (shared.extendedCapabilities & PASS_THROUGH_EXTENDED) >>> 0;
  if (ext !== 0) caps = (caps & ~Capability.CLIENT_LONG_PASSWORD) >>> 0;
  else caps = (caps | Capability.CLIENT_LONG_PASSWORD) >>> 0;
  return { capabilities: caps, extendedCapabilities: ext };
}
