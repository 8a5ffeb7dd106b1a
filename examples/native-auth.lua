-- native-auth.lua: clients that will not send a clear password (mysql2
-- without enableCleartextPlugin, Oracle's libmysqlclient without
-- --enable-cleartext-plugin) log in with mysql_native_password, checked
-- against stored hashes. No clear password exists anywhere: not on the
-- wire, not in Lua, not in this file.
--
-- With { auth = 'native' } the proxy greets with mysql_native_password and
-- a random scramble. handshake_response then holds only `user` and
-- `database`. client:verify_native_password(stored) checks the client's
-- answer against the stored hash and returns a *verified credential*
-- (nil on a wrong password). Only that credential carries SHA1(password),
-- which the proxy recovers from the client's answer, and it is what
-- client:connect() uses as `password_sha1`. A script that forgets the
-- check has no credential to pass: a connect without `password` or
-- `password_sha1` is refused with 1045 and the backend is not contacted.
--
-- The stored hash is MySQL's authentication_string for the account, as
--   SELECT user, authentication_string FROM mysql.user
-- shows it ('*' followed by 40 hex digits, = '*' .. hex(SHA1(SHA1(pw)))),
-- or '' for an account without a password. This shell line prints it:
--
--   printf '%s' 'the password' | openssl sha1 -binary | openssl sha1 | \
--     sed 's/.*= //' | tr a-f A-F | sed 's/^/*/'
--
-- The backend accounts must use mysql_native_password: the proxy logs in
-- with SHA1(password), and a backend that asks for the clear password
-- (PAM, ed25519, caching_sha2_password) fails the login with
-- "backend requires the clear-text password".
--
-- Environment (both optional):
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- Key: the MySQL user name; value: its stored hash.
local accounts = {
  native = '*78D8E4AEC8940BC13034D1A9F9D1622A961DCEF2', -- PASSWORD('nativepw')
  nopw = '',                                             -- no password
}

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  local stored = accounts[handshake_response.user]
  if stored == nil then
    -- ERR 1045 (28000), what a server says for a wrong password.
    return client:deny()
  end
  local verified = client:verify_native_password(stored)
  if not verified then
    return client:deny()
  end
  return client:connect(backend, {
    user = handshake_response.user,
    password_sha1 = verified, -- the verified credential, not a string
    database = handshake_response.database, -- nil when the client named none
  })
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler, { auth = 'native' })
