-- config.lua for socket activation (examples/systemd/myproxy.socket and myproxy.service):
-- serve the socket(s) systemd passes, and send every client to one MySQL/MariaDB server
-- with the user name, password and database it presented to the proxy.
-- Install: /etc/myproxy/config.lua
--
-- Environment (optional; set it with Environment= in myproxy.service):
--   MYPROXY_BACKEND  the server's socket path or address (default /run/mysqld/mysqld.sock)

-- Resolved once, at startup.
local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  return client:connect(backend, handshake_response)
end

-- Every socket of myproxy.socket (LISTEN_FDS). Without them (the daemon started outside
-- systemd, or myproxy.socket not running) the start fails: "No systemd socket", exit 78.
mysql_listen(systemd, handler)

-- systemctl reload myproxy (SIGHUP) calls this; config.lua itself is not read again.
function reload()
  print('reload: nothing to do in this configuration')
end
