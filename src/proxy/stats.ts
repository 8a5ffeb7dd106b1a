// Process-wide counters (names follow myproxy's Prometheus metrics).

export class Stats {
  connectionsAccepted = 0;
  connectionsRejected = 0;
  clientMalformedPackets = 0;
  clientHandshakeResponses = 0;
  clientAuthOk = 0;
  clientAuthErr = 0;
  luaErrors = 0;
  serverConnects = 0;
  serverConnectErrors = 0;
  /** Sessions closed because a peer stopped taking data (--write-timeout). */
  writeTimeouts = 0;
  activeConnections = 0;
}
