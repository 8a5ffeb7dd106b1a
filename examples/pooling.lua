-- pooling.lua: every client goes to one MySQL/MariaDB server with its own
-- credentials, and logged-in server connections are kept between sessions.
-- A client that quits outside a transaction leaves its server connection
-- reset (COM_RESET_CONNECTION) and parked; the next login with the same
-- user, password, database and client options takes it without a server
-- login. on_handshake_response still runs for every login, and a wrong
-- password never gets a parked connection (see docs/pooling.md).
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock', {
  pool = {
    max_idle = 64,     -- parked connections at most
    idle_timeout = 60, -- seconds a connection may stay parked
    max_per_key = 16,  -- parked connections per user/password/database at most
  },
})

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  if handshake_response.user == 'root' then
    return client:err('root may not log in through myproxy')
  end
  return client:connect(backend, handshake_response)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
