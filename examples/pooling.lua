-- pooling.lua: every client goes to one MySQL/MariaDB server with its own
-- credentials, and logged-in server connections are kept between sessions.
-- A client that quits outside a transaction leaves its server connection
-- reset (COM_RESET_CONNECTION) and parked; the next login with the same
-- user, password, database and client options takes it without a server
-- login. on_handshake_response still runs for every login, and a wrong
-- password never gets a parked connection (see docs/pooling.md).
--
--
-- With MYPROXY_SHARE=1 clients also share server connections between their
-- statements (connection sharing, docs/pooling.md#connection-sharing): at
-- most 32 server connections for all of them, a statement waiting up to 10 s
-- for a free one. What cannot move to another connection (user variables,
-- temporary tables, locks, prepared statements, ...) pins a client to its own.
--
-- Environment (all optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)
--   MYPROXY_SHARE    1 = connection sharing

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock', {
  pool = {
    max_idle = 64,     -- parked connections at most
    idle_timeout = 60, -- seconds a connection may stay parked
    max_per_key = 16,  -- parked connections per user/password/database at most
    share = os.getenv('MYPROXY_SHARE') == '1',
    max_connections = 32, -- with share: server connections at most
    queue_timeout = 10,   -- with share: seconds a statement waits for one
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
