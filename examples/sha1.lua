-- sha1.lua: log in to the server with stored credentials, keeping only
-- SHA1(password) in this file, never the password itself.
--
-- A client logs in with one of the user names below; the password it
-- types is ignored. The proxy logs in to the server as the mapped MySQL
-- user with `password_sha1`, which works with mysql_native_password
-- accounts: that method needs SHA1(password), not the password.
--
-- The digest is 20 raw bytes (not hex). Lua here cannot compute SHA1, so
-- write it as "\x.." escapes; this shell line prints the escaped form:
--
--   printf '%s' 'the password' | sha1sum | cut -c1-40 | sed 's/../\\x&/g'
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- Key: the user name the client logs in with.
--   user           the MySQL user on the server
--   password_sha1  SHA1 of that user's password, 20 raw bytes
--   uid            (optional) only clients running as this Unix uid may use
--                  the entry; without it, anyone who can open the proxy's
--                  socket can, so protect the socket's directory.
local accounts = {
  -- The shop application, running as uid 1000. SHA1('shop-secret')
  shop = {
    uid = 1000,
    user = 'shop',
    password_sha1 = '\xdd\xb3\xbd\x3e\x07\x99\x29\x61\x43\xa3\x13\x31\xb0\xb2\xf8\x7a\x6b\x5d\x49\xb8',
  },
  -- A shared read-only reporting account. SHA1('report-secret')
  report = {
    user = 'report',
    password_sha1 = '\xed\x84\x58\x56\x5a\x97\x4d\xee\x5a\x47\xa4\x9a\xda\xfd\xd2\x84\xa5\x71\xaf\x57',
  },
}

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  local entry = accounts[handshake_response.user]
  if entry == nil then
    return client:err('Unknown user ' .. handshake_response.user)
  end
  if entry.uid ~= nil and client.uid ~= entry.uid then
    return client:err('User ' .. handshake_response.user .. ' is reserved for another Unix user')
  end
  return client:connect(backend, {
    user = entry.user,
    password_sha1 = entry.password_sha1,
    database = handshake_response.database, -- nil when the client named none
  })
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
