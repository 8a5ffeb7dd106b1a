-- pg-routing.lua: a "username -> server" map kept in PostgreSQL.
--
-- Each login is looked up in a PostgreSQL table that says which MySQL/MariaDB
-- server the user belongs to and the SHA1 of the user's password there. The
-- proxy then logs in to that server as the same user with `password_sha1`
-- (mysql_native_password accounts); the password the client types is not
-- checked here, so protect the proxy's socket.
--
-- The table (in the database named by MYPROXY_PG):
--
--   CREATE TABLE accounts (
--     username      text PRIMARY KEY,  -- the user name the client logs in with
--     backend       text NOT NULL,     -- server socket path or host:port
--     password_sha1 bytea NOT NULL     -- SHA1(password), 20 raw bytes
--   );
--
-- PostgreSQL has no sha1() of its own: with the pgcrypto extension write
-- digest('the password', 'sha1'), without it decode('<40 hex digits>', 'hex')
-- with the digits from `printf '%s' 'the password' | sha1sum`:
--
--   INSERT INTO accounts VALUES ('shop', '/run/mysqld/mysqld.sock',
--     decode('ddb3bd3e0799296143a31331b0b2f87a6b5d49b8', 'hex'));  -- SHA1('shop-secret')
--
-- Unknown users get the server's usual "Access denied". While PostgreSQL is
-- unreachable, logins fail with "account lookup failed" (the reason goes to
-- the log) and work again as soon as it is back.
--
-- Environment (both optional):
--   MYPROXY_PG       libpq conninfo of the PostgreSQL database
--                    (default 'dbname=myproxy host=/run/postgresql')
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

-- Nothing connects here: the first query does, so the config loads (and
-- --check passes) even while PostgreSQL is down.
local db = pg:new(os.getenv('MYPROXY_PG') or 'dbname=myproxy host=/run/postgresql')

local handler = {}

function handler.on_handshake_response(client, hr)
  local res, err = db:execute(
    "SELECT backend, encode(password_sha1, 'hex') AS password_sha1 FROM accounts WHERE username = $1",
    {hr.user})
  if not res then
    print(string.format('account lookup for %q failed: %s', hr.user, err))
    return client:err('account lookup failed')
  end
  local row = res:fetch()
  res:close()
  if not row then
    return client:deny()
  end
  client.account = hr.user
  local digest = sodium.hex2bin(row.password_sha1)
  if digest == nil or #digest ~= 20 then
    print(string.format('account %q: password_sha1 is not 20 bytes', hr.user))
    return client:err('account lookup failed')
  end
  return client:connect(row.backend, {
    user = hr.user,
    password_sha1 = digest,
    database = hr.database, -- nil when the client named none
  })
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
