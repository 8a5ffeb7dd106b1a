// A relay under test between two Unix socket pairs: the outer ends play the MySQL client and the
// backend, the inner ends are handed to the relay (the native pump or the JavaScript relay).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ByteRelay, RelayEnd, RelayOptions } from '../../src/net/relay.js';

export type RelayCtor = new (client: net.Socket, server: net.Socket, options: RelayOptions) => ByteRelay;

export interface Rig {
  /** Peer of the proxy's client-side socket (plays the MySQL client). */
  client: net.Socket;
  /** Peer of the proxy's server-side socket (plays the backend). */
  server: net.Socket;
  relay: ByteRelay;
  ended: Promise<RelayEnd>;
  cleanup(): void;
}

/** Two socket pairs over Unix sockets; the proxy ends of both are handed to the relay. */
export async function rig(
  Impl: RelayCtor,
  clientLeftover: Buffer | null = null,
  serverLeftover: Buffer | null = null,
  extra: Partial<RelayOptions> = {},
): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'myproxy-relay-'));
  const pair = async (name: string): Promise<[net.Socket, net.Socket]> => {
    const server = net.createServer({ pauseOnConnect: true });
    const p = path.join(dir, name);
    await new Promise<void>((r) => server.listen(p, r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const outer = net.connect(p);
    await new Promise((r) => outer.once('connect', r));
    const inner = await accepted;
    server.close();
    return [outer, inner];
  };
  const [client, proxyClientSide] = await pair('c.sock');
  const [server, proxyServerSide] = await pair('s.sock');
  let resolveEnd!: (r: RelayEnd) => void;
  const ended = new Promise<RelayEnd>((r) => (resolveEnd = r));
  const relay = new Impl(proxyClientSide, proxyServerSide, {
    clientLeftover,
    serverLeftover,
    onClose: resolveEnd,
    ...extra,
  });
  return {
    client,
    server,
    relay,
    ended,
    cleanup() {
      client.destroy();
      server.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function readN(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let have = 0;
    const onData = (d: Buffer): void => {
      parts.push(d);
      have += d.length;
      if (have >= n) {
        s.off('data', onData);
        s.pause();
        resolve(Buffer.concat(parts).subarray(0, n));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.resume();
  });
}

export function readToEnd(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    s.resume();
  });
}
