-- accounts.lua: name the account behind each client and keep notes about
-- the connection across callbacks.
--
-- client.account appears in every log line of the connection, e.g.
--   [pid=4242 uid=1000 "alice"] login user="shop" database="shop"
-- client.notes is a table that lives as long as the connection; all
-- callbacks of one connection see the same table.
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- Unix uid -> account name (in a hosting setup: the customer).
local account_of_uid = {
  [1000] = 'alice',
  [1001] = 'bob',
}

local handler = {}

function handler.on_connect(client)
  if client.uid ~= nil then
    client.account = account_of_uid[client.uid] or ('uid' .. client.uid)
  end
  -- Without credentials (TCP from systemd) the account stays nil and the
  -- log shows the peer address instead.
  client.notes.connected_at = os.time()
end

function handler.on_handshake_response(client, handshake_response)
  client.notes.user = handshake_response.user
  client.notes.database = handshake_response.database -- nil if none given
  return client:connect(backend, handshake_response)
end

-- Runs once the server accepted the login. Lua's print() writes to the
-- proxy's standard output, i.e. its log.
function handler.on_command_phase(client)
  print(string.format('[%s] logged in as %s (database %s) after %d s, server %s',
    client.account or '?', client.notes.user, client.notes.database or '-',
    os.time() - client.notes.connected_at, client.server_version))
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
