// The exporter's exposition: every metric of CM4all myproxy, with its exact name, type and HELP
// text (dashboards built for it must work unchanged), fed from the daemon's counters.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { buildRegistry } from '../../../src/service/prometheus.js';
import { ProxyMetrics, StatSlot } from '../../../src/util/metrics.js';

const MYPROXY: [string, string, 'counter' | 'gauge'][] = [
  ['event_loop_iterations', 'Total number of EventLoop iterations', 'counter'],
  ['event_loop_idle_duration', 'Total duration waiting for events', 'counter'],
  ['event_loop_busy_duration', 'Total duration handling events', 'counter'],
  [
    'myproxy_connections_accepted',
    'Number of accepted MySQL connections (including those that were rejected later)',
    'counter',
  ],
  ['myproxy_connections_rejected', 'Number of rejected MySQL connections', 'counter'],
  ['myproxy_client_bytes_received', 'Number of bytes received from clients', 'counter'],
  ['myproxy_client_packets_received', 'Number of packets received from clients', 'counter'],
  ['myproxy_client_malformed_packets', 'Number of malformed packets received from clients', 'counter'],
  ['myproxy_client_handshake_responses', 'Number of handshake responses received from clients', 'counter'],
  ['myproxy_client_auth_ok', 'Number of successful authentications', 'counter'],
  ['myproxy_client_auth_err', 'Number of failed authentication attempts', 'counter'],
  ['myproxy_client_queries', 'Number of queries received from clients', 'counter'],
  ['myproxy_lua_errors', 'Number of Lua errors', 'counter'],
  ['myproxy_server_state', 'Monitoring state of the server', 'gauge'],
  ['myproxy_server_connects', 'Number of connection attempts to this server', 'counter'],
  ['myproxy_server_connect_errors', 'Number of failed connection attempts to this server', 'counter'],
  ['myproxy_server_bytes_received', 'Number of bytes received from this server', 'counter'],
  ['myproxy_server_packets_received', 'Number of packets received from this server', 'counter'],
  ['myproxy_server_malformed_packets', 'Number of malformed packets received from this server', 'counter'],
  ['myproxy_server_queries', 'Number of queries sent to this server', 'counter'],
  ['myproxy_server_query_errors', 'Number of query warnigs received from this server', 'counter'],
  ['myproxy_server_query_warnings', 'Number of query warnings received from this server', 'counter'],
  ['myproxy_server_no_good_index_queries', 'Number of queries which used no good index', 'counter'],
  ['myproxy_server_no_index_queries', 'Number of queries which used no index', 'counter'],
  ['myproxy_server_slow_queries', 'Number of slow queries', 'counter'],
  ['myproxy_server_affected_rows', 'Number of affected rows by INSERT, UPDATE etc.', 'counter'],
  ['myproxy_server_query_wait', 'Total wait time for query results', 'counter'],
];

test('every myproxy metric, with its name, type and HELP text, and values from the counters', async () => {
  const m = new ProxyMetrics();
  m.connectionsAccepted = 7;
  m.luaErrors = 2;
  const s = m.server('/run/mysqld/mysqld.sock');
  s.connects = 3;
  s.state = 'read_only';
  s.stats[StatSlot.QUERIES] = 11;
  s.stats[StatSlot.QUERY_WAIT] = 0.25;
  s.stats[StatSlot.CLIENT_QUERIES] = 11;
  m.server('[::1]:3306').stats[StatSlot.CLIENT_QUERIES] = 4;
  const body = await buildRegistry({ metrics: m, sessions: () => 5 }).metrics();
  for (const [name, help, type] of MYPROXY) {
    assert.ok(body.includes(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`), `${name} with its HELP and TYPE`);
  }
  assert.match(body, /^myproxy_connections_accepted 7$/m);
  assert.match(body, /^myproxy_lua_errors 2$/m);
  assert.match(body, /^myproxy_client_queries 15$/m);
  assert.match(body, /^myproxy_server_connects\{server="\/run\/mysqld\/mysqld.sock"\} 3$/m);
  assert.match(body, /^myproxy_server_queries\{server="\/run\/mysqld\/mysqld.sock"\} 11$/m);
  assert.match(body, /^myproxy_server_query_wait\{server="\/run\/mysqld\/mysqld.sock"\} 0.25$/m);
  assert.match(body, /^myproxy_server_state\{server="\/run\/mysqld\/mysqld.sock",state="read_only"\} 1$/m);
  assert.doesNotMatch(body, /myproxy_server_state\{server="\[::1\]:3306"/); // no state before a check
  assert.match(body, /^myproxy_sessions 5$/m);
  assert.match(body, /^event_loop_iterations\{process="myproxy"\} \d+$/m);
});
