-- sealed-credentials.lua: backend passwords kept sealed in PostgreSQL.
--
-- Each login is looked up in a PostgreSQL table holding the MySQL/MariaDB
-- server of the user and the user's password there, sealed with
-- crypto_box_seal() to the proxy's public key. Only the proxy, which holds
-- the secret key, can open it; a dump of the table reveals no passwords.
--
-- WHO MAY LOG IN: the proxy substitutes the stored password, so the password
-- the client types is NOT checked by anyone. The client is identified by the
-- Unix uid of the process on the other end of the proxy's socket instead
-- (client.uid, from the kernel's peer credentials): a login is accepted only
-- when that uid equals the row's `uid`. Everything else gets the usual
-- "Access denied" (client:deny()). So use this only on a local Unix socket
-- (not TCP, where there is no uid), and keep the socket reachable only by
-- the users you mean.
--
-- The table (in the database named by MYPROXY_PG):
--
--   CREATE TABLE sealed_accounts (
--     username        text PRIMARY KEY,  -- the user name the client logs in with
--     backend         text NOT NULL,     -- server socket path or host:port
--     sealed_password bytea NOT NULL,    -- crypto_box_seal(password, proxy public key)
--     uid             integer NOT NULL   -- the only Unix uid that may log in as username
--   );
--
-- Sealing needs no secret: anything with the public key can do it, e.g.
-- libsodium-wrappers in Node.js:
--   sodium.to_hex(sodium.crypto_box_seal('the password', sodium.from_hex(pk_hex)))
-- and then
--   INSERT INTO sealed_accounts VALUES ('shop', '/run/mysqld/mysqld.sock',
--     decode('<that hex>', 'hex'), 1000);
--
-- A row whose sealed_password does not open with the proxy's keys (tampered,
-- or sealed to another key) gives the client "credential error", and the
-- reason goes to the log.
--
-- THE KEY PAIR is given hex-encoded in the environment (64 hex digits each):
--   MYPROXY_SEAL_PK   the proxy's crypto_box public key
--   MYPROXY_SEAL_SK   the matching secret key
-- Raw key files cannot be used: Fengari's small `io` library has no io.open.
-- With systemd, put them in an EnvironmentFile= readable only by root.
-- Missing, malformed or mismatched keys stop the start (and --check) with a
-- configuration error naming the variable.
--
-- Further environment (both optional):
--   MYPROXY_PG       libpq conninfo of the PostgreSQL database
--                    (default 'dbname=myproxy host=/run/postgresql')
--   MYPROXY_SOCKET   the socket the proxy listens on
--                    (default /run/myproxy/myproxy.sock)

local function key_from_env(name)
  local hex = os.getenv(name)
  if hex == nil or hex == '' then
    error(name .. ' is not set (64 hex digits of a crypto_box key)', 0)
  end
  local key = sodium.hex2bin(hex)
  if key == nil or #key ~= 32 then
    error(name .. ' must be 64 hex digits (a 32-byte crypto_box key)', 0)
  end
  return key
end

local pk = key_from_env('MYPROXY_SEAL_PK')
local sk = key_from_env('MYPROXY_SEAL_SK')
if sodium.crypto_scalarmult_base(sk) ~= pk then
  error('MYPROXY_SEAL_SK is not the secret key of MYPROXY_SEAL_PK', 0)
end

-- Nothing connects here: the first query does, so the config loads (and
-- --check passes) even while PostgreSQL is down.
local db = pg:new(os.getenv('MYPROXY_PG') or 'dbname=myproxy host=/run/postgresql')

local handler = {}

function handler.on_handshake_response(client, hr)
  local res, err = db:execute(
    "SELECT backend, encode(sealed_password, 'hex') AS sealed, uid FROM sealed_accounts WHERE username = $1",
    {hr.user})
  if not res then
    print(string.format('account lookup for %q failed: %s', hr.user, err))
    return client:err('account lookup failed')
  end
  local row = res:fetch()
  res:close()
  if not row or client.uid == nil or tonumber(row.uid) ~= client.uid then
    return client:deny()
  end
  client.account = hr.user
  local sealed = sodium.hex2bin(row.sealed)
  local password = sealed and sodium.crypto_box_seal_open(sealed, pk, sk)
  if password == nil then
    print(string.format('account %q: sealed_password does not open with this key pair', hr.user))
    return client:err('credential error')
  end
  return client:connect(row.backend, {
    user = hr.user,
    password = password,
    database = hr.database, -- nil when the client named none
  })
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
