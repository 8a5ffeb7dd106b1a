// The live sessions of the daemon: by connection id (the id the greeting announces), for KILL; by
// account, for DISCONNECT_DATABASE; and all of them, for drain, the write timeout and metrics.

/** What the registry needs of a session. */
export interface RegisteredSession {
  readonly id: number;
  readonly account: string | undefined;
  /** The server the session is relayed to (its address text) and its thread id there, once known. */
  readonly backendLabel: string | undefined;
  readonly serverThreadId: number | undefined;
}

/**
 * Connection ids live in their own range, above the thread ids servers hand out (MariaDB and MySQL
 * count from 1), so an id a client learnt from the greeting can never be mistaken for a server's
 * thread id and the other way round. A worker of a multi-process daemon gets a range of its own.
 */
export const CONNECTION_ID_BASE = 0x40000000;
const IDS_PER_WORKER = 1 << 24;

/** The worker of a `--workers N` daemon whose range a connection id is in (-1: none). */
export function workerOfId(id: number): number {
  return id >= CONNECTION_ID_BASE ? Math.floor((id - CONNECTION_ID_BASE) / IDS_PER_WORKER) : -1;
}

export class SessionRegistry<S extends RegisteredSession = RegisteredSession> {
  readonly #byId = new Map<number, S>();
  readonly #first: number;
  #next: number;
  /** Looks up a session of another worker (set in a worker of `--workers N`). */
  #elsewhere: ((id: number) => Promise<S | undefined>) | undefined;

  constructor(worker = 0) {
    this.#first = CONNECTION_ID_BASE + worker * IDS_PER_WORKER;
    this.#next = this.#first;
  }

  /** A connection id no live session has (ids wrap around within this process's range). */
  allocateId(): number {
    for (;;) {
      const id = this.#next;
      this.#next = this.#next + 1 >= this.#first + IDS_PER_WORKER ? this.#first : this.#next + 1;
      if (!this.#byId.has(id)) return id;
    }
  }

  add(session: S): void {
    this.#byId.set(session.id, session);
  }

  delete(session: S): boolean {
    if (this.#byId.get(session.id) !== session) return false;
    return this.#byId.delete(session.id);
  }

  get size(): number {
    return this.#byId.size;
  }

  get(id: number): S | undefined {
    return this.#byId.get(id);
  }

  /** How sessions of the other workers are found (a worker of `--workers N` sets it). */
  setElsewhere(lookup: (id: number) => Promise<S | undefined>): void {
    this.#elsewhere = lookup;
  }

  /**
   * A session with an id from another worker's range, as that worker describes it (KILL by
   * connection id, which may arrive on any worker); undefined when there is none.
   */
  async findElsewhere(id: number): Promise<S | undefined> {
    if (this.#elsewhere === undefined || workerOfId(id) < 0) return undefined;
    if (id >= this.#first && id < this.#first + IDS_PER_WORKER) return undefined;
    return this.#elsewhere(id);
  }

  /** The session running as thread `threadId` on the server `label` (a scan: KILL is rare). */
  byServerThread(label: string, threadId: number): S | undefined {
    for (const s of this.#byId.values()) {
      if (s.serverThreadId === threadId && s.backendLabel === label) return s;
    }
    return undefined;
  }

  /** Every session whose account is exactly `account` (a scan: control commands are rare). */
  byAccount(account: string): S[] {
    const out: S[] = [];
    for (const s of this.#byId.values()) if (s.account === account) out.push(s);
    return out;
  }

  values(): IterableIterator<S> {
    return this.#byId.values();
  }
}
