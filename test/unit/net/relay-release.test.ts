// Both relays with keepServer (the backend connection pool): the server connection is handed back
// (onClose's keptServerFd) only when the client leaves while the server owes nothing and no
// transaction is open; otherwise both sides are closed as without a pool.
import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { Capability, Command, ServerStatus } from '../../../src/protocol/constants.js';
import { writeOk } from '../../../src/protocol/packets/generic.js';
import { framePayload } from '../../../src/protocol/writer.js';
import { NativeRelay } from '../../../src/net/native-relay.js';
import { Relay, type RelayEnd, type RelayOptions } from '../../../src/net/relay.js';
import { readN, readToEnd, rig, type Rig } from '../../helpers/relay-rig.js';

const CAPS = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS | Capability.CLIENT_SECURE_CONNECTION;
const QUIT = framePayload(Buffer.of(Command.COM_QUIT), 0);
const query = (sql: string): Buffer => framePayload(Buffer.concat([Buffer.of(Command.COM_QUERY), Buffer.from(sql)]), 0);

type RigBody = (r: Rig, ended: Promise<Ended>) => Promise<void>;

interface Ended {
  reason: RelayEnd;
  fd: number | undefined;
}

for (const [name, Impl] of [
  ['native pump', NativeRelay],
  ['JavaScript relay', Relay],
] as const) {
  describe(`${name}: keepServer`, () => {
    /** A rig whose relay intercepts COM_QUIT and answers it with release(), as a pooled session does. */
    async function pooledRig(keepServer = true): Promise<{ r: Rig; ended: Promise<Ended> }> {
      let resolve!: (e: Ended) => void;
      const ended = new Promise<Ended>((res) => (resolve = res));
      const holder: { relay?: Rig['relay'] } = {};
      const extra: Partial<RelayOptions> = {
        keepServer,
        onClose: (reason, fd) => resolve({ reason, fd }),
        tracking: { capabilities: CAPS, track: true, stats: null },
        intercept: {
          commands: [Command.COM_QUIT],
          onCommand: () => {
            holder.relay!.release();
            return new Promise(() => undefined);
          },
        },
      };
      const r = await rig(Impl, null, null, extra);
      holder.relay = r.relay;
      return { r, ended };
    }

    /** Runs `body` on a fresh pooled rig and cleans the rig up, whatever happens. */
    async function withPooledRig(...args: [boolean, RigBody] | [RigBody]): Promise<void> {
      const body = args.length === 2 ? args[1] : args[0];
      const { r, ended } = await pooledRig(args.length === 2 ? args[0] : true);
      try {
        await body(r, ended);
      } finally {
        r.cleanup();
      }
    }

    /** The kept fd is the live server connection: bytes written on it reach the backend's end. */
    async function assertLive(r: Rig, fd: number): Promise<void> {
      const s = new net.Socket({ fd, readable: true, writable: true });
      const got = readN(r.server, 5);
      s.write(query('x').subarray(0, 5));
      assert.deepEqual(await got, query('x').subarray(0, 5));
      s.destroy();
    }

    test('COM_QUIT after a finished response: the server fd is handed back, the client sees its end', () =>
      withPooledRig(async (r, ended) => {
        const atServer = readN(r.server, query('SELECT 1').length);
        r.client.write(query('SELECT 1'));
        assert.deepEqual(await atServer, query('SELECT 1'));
        const atClient = readN(r.client, 11);
        r.server.write(writeOk(1, ServerStatus.SERVER_STATUS_AUTOCOMMIT));
        await atClient;
        const clientEnd = readToEnd(r.client);
        r.client.write(QUIT);
        const e = await ended;
        assert.equal(typeof e.fd, 'number');
        await clientEnd;
        await assertLive(r, e.fd!);
      }));

    test('a client that closes without COM_QUIT leaves the server kept too', () =>
      withPooledRig(async (r, ended) => {
        r.client.end();
        const e = await ended;
        assert.equal(typeof e.fd, 'number');
        await assertLive(r, e.fd!);
      }));

    test('a response still owed: the server is closed', () =>
      withPooledRig(async (r, ended) => {
        const atServer = readN(r.server, query('SELECT SLEEP(10)').length);
        r.client.write(query('SELECT SLEEP(10)'));
        await atServer;
        const serverEnd = readToEnd(r.server);
        r.client.write(QUIT);
        r.client.end();
        const e = await ended;
        assert.equal(e.fd, undefined);
        await serverEnd;
      }));

    test('an open transaction (SERVER_STATUS_IN_TRANS in the last OK): the server is closed', () =>
      withPooledRig(async (r, ended) => {
        const atServer = readN(r.server, query('BEGIN').length);
        r.client.write(query('BEGIN'));
        await atServer;
        const atClient = readN(r.client, 11);
        r.server.write(writeOk(1, ServerStatus.SERVER_STATUS_AUTOCOMMIT | ServerStatus.SERVER_STATUS_IN_TRANS));
        await atClient;
        const serverEnd = readToEnd(r.server);
        r.client.write(QUIT);
        const e = await ended;
        assert.equal(e.fd, undefined);
        await serverEnd;
      }));

    test('half a command sent: the server is closed', () =>
      withPooledRig(async (r, ended) => {
        const serverEnd = readToEnd(r.server);
        r.client.write(query('SELECT 1').subarray(0, 3)); // a header cut short
        await new Promise((res) => setTimeout(res, 50));
        r.client.end();
        const e = await ended;
        assert.equal(e.fd, undefined);
        await serverEnd;
      }));

    test('without keepServer nothing is kept', () =>
      withPooledRig(false, async (r, ended) => {
        const serverEnd = readToEnd(r.server);
        r.client.write(QUIT);
        const e = await ended;
        assert.equal(e.fd, undefined);
        await serverEnd;
      }));
  });
}
