// A replicated group of MySQL servers (mysql_cluster): node health from periodic checks, the
// per-account node order (rendezvous hashing, best state first), failover candidates for the
// session engine, and closing sessions on nodes that became worse (disconnect_unavailable).

import { formatAddress, type SocketAddress } from '../net/address.js';
import type { BackendCandidate, BackendSelector, SelectingClient } from '../backend/selector.js';
import type { BackendPool } from '../backend/pool.js';
import { logError, logInfo } from '../util/log.js';
import type { ProxyMetrics } from '../util/metrics.js';
import { checkServer, NODE_STATES, type CheckResult, type NodeState } from './check.js';
import { nodeIdentity, rendezvousHash } from './rendezvous.js';

export interface ClusterOptions {
  readonly monitoring: boolean;
  readonly user: Buffer | undefined;
  readonly password: Buffer | undefined;
  readonly noReadOnly: boolean;
  readonly disconnectUnavailable: boolean;
  /** Time from one check result of a node to its next check. */
  readonly checkIntervalMs: number;
  /** Bounds a check, and connecting a session to a node. */
  readonly connectTimeoutMs: number;
  /** The `pool` option: logged-in connections to every node are kept here between sessions. */
  readonly pool?: BackendPool | undefined;
}

/** myproxy's behaviour: no monitoring, check every 20 s and 10 s connect timeout once it is on. */
export const DEFAULT_CLUSTER_OPTIONS: ClusterOptions = Object.freeze({
  monitoring: false,
  user: undefined,
  password: undefined,
  noReadOnly: false,
  disconnectUnavailable: false,
  checkIntervalMs: 20_000,
  connectTimeoutMs: 10_000,
});

/** A failed session connect triggers an early check, but not more often than this. */
const MIN_EARLY_CHECK_GAP_MS = 1_000;

/** What a cluster node looks like from outside (Lua's cluster:nodes(), logs, tests). */
export interface NodeStatus {
  readonly address: SocketAddress;
  readonly state: NodeState;
  /** A session could not connect to it since its last check (it sorts after its peers). */
  readonly suspect: boolean;
}

/** Runs one check; replaceable so the scheduling logic can be tested without servers. */
export type Checker = (address: SocketAddress, options: ClusterOptions) => Promise<CheckResult>;

const defaultChecker: Checker = (address, o) =>
  checkServer(address, { user: o.user, password: o.password, noReadOnly: o.noReadOnly, timeoutMs: o.connectTimeoutMs });

class ClusterNode {
  readonly address: SocketAddress;
  readonly label: string;
  readonly identity: Buffer;
  readonly index: number;
  state: NodeState = 'unknown';
  checked = false;
  checking = false;
  suspect = false;
  lastCheckEnd = 0;
  timer: NodeJS.Timeout | undefined;
  /** Sessions to close when this node becomes unavailable (disconnect_unavailable). */
  readonly observers = new Set<() => void>();

  constructor(address: SocketAddress, index: number) {
    this.address = address;
    this.label = formatAddress(address);
    this.identity = nodeIdentity(address);
    this.index = index;
  }
}

/** Preference of a state: higher is better. With read_only=true, read_only beats alive. */
function rank(state: NodeState, readOnly: boolean): number {
  if (readOnly && state === 'read_only') return NODE_STATES.length;
  return NODE_STATES.indexOf(state);
}

export class Cluster implements BackendSelector {
  readonly kind = 'selector';
  readonly name: string;
  readonly options: ClusterOptions;
  readonly #nodes: ClusterNode[];
  readonly #checker: Checker;
  #started = false;
  #stopped = false;
  #ready: boolean;
  #readyWaiters: (() => void)[] = [];
  /** Sessions attached to any node (disconnect_unavailable). */
  #observerCount = 0;
  /**
   * Whoever owns this cluster (the Lua object), held only while logins wait for readiness or
   * sessions are attached: an owner that drops a busy cluster (and stops it when collected) must
   * not pull it from under them.
   */
  #owner: WeakRef<object> | undefined;
  #pinnedOwner: object | undefined;

  readonly #metrics: ProxyMetrics | undefined;

  constructor(
    name: string,
    addresses: readonly SocketAddress[],
    options: ClusterOptions,
    checker = defaultChecker,
    metrics?: ProxyMetrics,
  ) {
    if (addresses.length === 0) throw new Error('Cluster is empty');
    this.name = name;
    this.options = options;
    this.#nodes = addresses.map((a, i) => new ClusterNode(a, i));
    this.#checker = checker;
    this.#ready = !options.monitoring;
    this.#metrics = metrics;
    // As myproxy: every node has its per-server counters from the start.
    for (const node of this.#nodes) metrics?.server(node.label);
  }

  /** Begin monitoring (no-op without it): every node is checked now, then every check interval. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    if (!this.options.monitoring) return;
    logInfo(
      `[${this.name}] monitoring ${this.#nodes.map((n) => n.label).join(', ')} every ${this.options.checkIntervalMs / 1000} s` +
        (this.options.user === undefined
          ? ' (greeting only)'
          : this.options.noReadOnly
            ? ' (login, read_only)'
            : ' (login)'),
    );
    for (const node of this.#nodes) void this.#runCheck(node);
  }

  /** Stop monitoring for good; waiting logins go on with what is known. */
  stop(): void {
    this.#stopped = true;
    for (const node of this.#nodes) {
      clearTimeout(node.timer);
      node.timer = undefined;
    }
    this.#markReady();
  }

  get ready(): boolean {
    return this.#ready;
  }

  status(): NodeStatus[] {
    return this.#nodes.map((n) => ({ address: n.address, state: n.state, suspect: n.suspect }));
  }

  /** Nodes in order of preference for `account`: best state, not suspect, smallest hash. */
  order(account: Uint8Array, readOnly: boolean): SocketAddress[] {
    return this.#order(account, readOnly).map((n) => n.address);
  }

  #order(account: Uint8Array, readOnly: boolean): ClusterNode[] {
    const keyed = this.#nodes.map((node) => ({
      node,
      rank: rank(node.state, readOnly),
      hash: rendezvousHash(node.identity, account),
    }));
    keyed.sort(
      (a, b) =>
        b.rank - a.rank ||
        Number(a.node.suspect) - Number(b.node.suspect) ||
        (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : a.node.index - b.node.index),
    );
    return keyed.map((k) => k.node);
  }

  async select(client: SelectingClient, readOnly: boolean): Promise<readonly BackendCandidate[]> {
    if (!this.#ready) {
      await new Promise<void>((resolve) => {
        this.#readyWaiters.push(resolve);
        this.#updatePin();
      });
    }
    const account = Buffer.from(client.account ?? '', 'utf8');
    const observe = this.options.disconnectUnavailable && !readOnly;
    return this.#order(account, readOnly).map((node): BackendCandidate => {
      const candidate: BackendCandidate = {
        address: node.address,
        connectTimeoutMs: this.options.connectTimeoutMs,
        failed: (reason) => this.#connectFailed(node, reason),
        ...(this.options.pool !== undefined ? { pool: this.options.pool } : {}),
      };
      if (!observe) return candidate;
      return {
        ...candidate,
        attach: (onUnavailable) => {
          node.observers.add(onUnavailable);
          this.#observerCount++;
          this.#updatePin();
          return () => {
            if (node.observers.delete(onUnavailable)) this.#observerCount--;
            this.#updatePin();
          };
        },
      };
    });
  }

  #markReady(): void {
    if (this.#ready && this.#readyWaiters.length === 0) return;
    this.#ready = true;
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
    this.#updatePin();
  }

  /** Weakly: only #updatePin() holds the owner, and only while the cluster is busy. */
  set owner(value: object) {
    this.#owner = new WeakRef(value);
  }

  /** True while the owner is held (logins waiting or sessions attached). */
  get ownerPinned(): boolean {
    return this.#pinnedOwner !== undefined;
  }

  #updatePin(): void {
    this.#pinnedOwner = this.#readyWaiters.length > 0 || this.#observerCount > 0 ? this.#owner?.deref() : undefined;
  }

  /** A session could not reach `node`: it sorts after its peers until it is checked again. */
  #connectFailed(node: ClusterNode, reason: string): void {
    if (!node.suspect) logError(`[${this.name}] node ${node.label} failed a session connect: ${reason}`);
    node.suspect = true;
    if (this.#stopped) return;
    if (!this.options.monitoring || !this.#started) {
      // Nothing would check it: the suspicion lapses after one check interval.
      clearTimeout(node.timer);
      node.timer = setTimeout(() => {
        node.suspect = false;
      }, this.options.checkIntervalMs).unref();
      return;
    }
    if (node.checking) return;
    const wait = node.lastCheckEnd + MIN_EARLY_CHECK_GAP_MS - Date.now();
    clearTimeout(node.timer);
    node.timer = setTimeout(() => void this.#runCheck(node), Math.max(0, wait)).unref();
  }

  async #runCheck(node: ClusterNode): Promise<void> {
    if (this.#stopped || node.checking) return;
    node.checking = true;
    clearTimeout(node.timer);
    node.timer = undefined;
    let result: CheckResult;
    try {
      result = await this.#checker(node.address, this.options);
    } catch (e) {
      result = { state: 'dead', detail: e instanceof Error ? e.message : String(e) };
    }
    node.checking = false;
    node.lastCheckEnd = Date.now();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stop() may have run while we awaited
    if (this.#stopped) return;
    node.checked = true;
    node.suspect = false;
    try {
      this.#apply(node, result);
    } catch (e) {
      // Never let one result stop the node's checks (or become an unhandled rejection).
      logError(`[${this.name}] node ${node.label}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
    node.timer = setTimeout(() => void this.#runCheck(node), this.options.checkIntervalMs).unref();
  }

  #apply(node: ClusterNode, result: CheckResult): void {
    const before = node.state;
    node.state = result.state;
    const server = this.#metrics?.server(node.label);
    if (server !== undefined) server.state = result.state;
    if (before !== result.state) {
      const line = `[${this.name}] node ${node.label}: ${before} -> ${result.state} (${result.detail})`;
      if (result.state === 'alive' || result.state === 'read_only') logInfo(line);
      else logError(line);
    }
    if (result.state === 'alive' || this.#nodes.every((n) => n.checked)) this.#markReady();
    if (this.options.disconnectUnavailable) this.#disconnectWorse(node);
  }

  /**
   * After a check of `node`: if another node is better, close the sessions on `node`; otherwise
   * close the sessions on every worse node, so their clients reconnect to a better one.
   */
  #disconnectWorse(node: ClusterNode): void {
    const mine = rank(node.state, false);
    const best = Math.max(...this.#nodes.map((n) => rank(n.state, false)));
    const victims = mine < best ? [node] : this.#nodes.filter((n) => rank(n.state, false) < mine);
    for (const victim of victims) {
      if (victim.observers.size === 0) continue;
      logInfo(`[${this.name}] closing ${victim.observers.size} session(s) on ${victim.state} node ${victim.label}`);
      const closes = [...victim.observers];
      this.#observerCount -= victim.observers.size;
      victim.observers.clear();
      for (const close of closes) {
        try {
          close();
        } catch (e) {
          logError(
            `[${this.name}] closing a session on ${victim.label}: ${e instanceof Error ? e.message : String(e)}`,
          );
        }
      }
    }
    this.#updatePin();
  }
}
