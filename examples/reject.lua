-- reject.lua: turn clients away, early (by Unix user) and at login (by
-- MySQL user), with messages the client sees as ERROR 1043 (08S01).
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- Unix users below this uid are system accounts (root, daemons).
local FIRST_REGULAR_UID = 1000

-- MySQL users nobody may log in as through the proxy.
local blocked_users = {
  root = true,
  ['mariadb.sys'] = true,
}

local handler = {}

-- Runs before the proxy greets the client. Returning client:err(...) sends
-- the error instead of the greeting; returning nothing lets the login go on.
function handler.on_connect(client)
  -- client.uid is nil when the kernel reports no credentials (a TCP
  -- socket handed over by systemd).
  if client.uid == nil then
    return client:err('Only local clients are served')
  end
  if client.uid < FIRST_REGULAR_UID then
    return client:err(string.format('uid %d may not use this proxy', client.uid))
  end
end

-- Runs when the client has sent its user name and password.
function handler.on_handshake_response(client, handshake_response)
  local user = handshake_response.user
  if blocked_users[user] then
    return client:err(string.format('User %s may not log in through this proxy', user))
  end
  if handshake_response.password == '' then
    return client:err('A password is required')
  end
  return client:connect(backend, handshake_response)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
