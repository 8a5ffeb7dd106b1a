-- basic.lua: every client goes to one MySQL/MariaDB server, logging in
-- with the user name, password and database it presented to the proxy.
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

-- Resolve the backend once, at startup (not in every login).
local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  -- handshake_response = { user = ..., password = ..., database = ... }
  -- is passed on unchanged.
  return client:connect(backend, handshake_response)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
