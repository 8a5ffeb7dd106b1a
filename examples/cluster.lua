-- cluster.lua: a hosting setup with several replicated MySQL/MariaDB servers.
--
-- Every account (here: the MySQL user name the client logs in with) is
-- placed on one node by rendezvous hashing, so every proxy instance on
-- every machine sends the same account to the same node without talking
-- to the others. The proxy checks each node every few seconds; dead or
-- read-only nodes are avoided, and when the node an account prefers cannot
-- be reached the next one in the account's order is tried.
--
-- The monitoring user needs no privileges at all:
--   CREATE USER 'myproxy_monitor'@'%' IDENTIFIED BY '...';
--
-- Environment:
--   MYPROXY_NODES             comma-separated node addresses
--                             (default 127.0.0.1:3306,127.0.0.1:3307,127.0.0.1:3308)
--   MYPROXY_MONITOR_USER      monitoring user (default myproxy_monitor)
--   MYPROXY_MONITOR_PASSWORD  its password (default empty)
--   MYPROXY_CHECK_INTERVAL    seconds between checks of a node (default 20)
--   MYPROXY_SOCKET            the socket the proxy listens on
--                             (default /run/myproxy/myproxy.sock)

local nodes = {}
for address in string.gmatch(os.getenv('MYPROXY_NODES')
    or '127.0.0.1:3306,127.0.0.1:3307,127.0.0.1:3308', '[^,]+') do
  -- mysql_resolve() also accepts host names (resolved once at startup).
  nodes[#nodes + 1] = mysql_resolve(address)
end

local cluster = mysql_cluster(nodes, {
  monitoring = true,
  user = os.getenv('MYPROXY_MONITOR_USER') or 'myproxy_monitor',
  password = os.getenv('MYPROXY_MONITOR_PASSWORD') or '',
  -- Ask every node for @@global.read_only: replicas are used only when
  -- no writable node is left (or when a client asks for read_only).
  no_read_only = true,
  -- When a better node appears (the master is back), close the sessions
  -- on worse nodes with ERR 1047 "Node is unavailable", so that clients
  -- reconnect to the writable master.
  disconnect_unavailable = true,
  check_interval = tonumber(os.getenv('MYPROXY_CHECK_INTERVAL') or '20'),
  connect_timeout = 5,
})

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  -- The account keys the node choice (and appears in every log line).
  client.account = handshake_response.user
  -- Users ending in "_ro" are reporting jobs: they prefer a read-only
  -- replica and are never disconnected by disconnect_unavailable.
  local read_only = handshake_response.user:sub(-3) == '_ro'
  return client:connect(cluster, handshake_response, { read_only = read_only })
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
