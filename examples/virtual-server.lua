-- virtual-server.lua: a small read-only MySQL front to a PostgreSQL table,
-- with no MySQL server at all (client:accept() and on_query).
--
-- Clients (the mariadb CLI, mysql2, PyMySQL, PHP mysqli, DBD::MariaDB...) log
-- in with mysql_native_password as one of the users below and can run:
--
--   SELECT * FROM products                     -- every row
--   SELECT * FROM products WHERE id = 3        -- one row (any column list)
--   SHOW TABLES
--   SELECT @@version_comment, SELECT DATABASE(), SET ..., USE ..., ping
--
-- Everything else is refused with 1064 (42000), as a server would refuse
-- SQL it cannot parse. The table (in the database named by MYPROXY_PG):
--
--   CREATE TABLE products (id integer PRIMARY KEY, name text NOT NULL, price numeric(10,2));
--
-- Environment (both optional):
--   MYPROXY_PG       libpq conninfo (default 'dbname=myproxy host=/run/postgresql')
--   MYPROXY_SOCKET   the socket to listen on (default /run/myproxy/virtual.sock)

local db = pg:new(os.getenv('MYPROXY_PG') or 'dbname=myproxy host=/run/postgresql')

-- Stored mysql_native_password hashes ('*' + HEX(SHA1(SHA1(password)))),
-- as in mysql.user: this one is the password 'reader-secret'.
local users = {
  reader = '*9080A2E3CF0F5D6894E8A2B07CA3B9CF4B37FAD8',
}

local COLUMNS = {
  {name = 'id', type = 'long'},
  {name = 'name', type = 'var_string'},
  {name = 'price', type = 'newdecimal'},
}

local function refuse(client, what)
  return client:err("You have an error in your SQL syntax: this server answers SELECT ... FROM products only (near '"
    .. what:sub(1, 40) .. "')", 1064, '42000')
end

local function products(client, id)
  local sql = 'SELECT id, name, price FROM products'
  local params = {}
  if id then
    sql = sql .. ' WHERE id = $1'
    params = {id}
  end
  local res, err = db:execute(sql .. ' ORDER BY id', params)
  if not res then
    print('products lookup failed: ' .. tostring(err))
    return client:err('products are not available right now', 1105, 'HY000')
  end
  local rows = {}
  for row in function() return res:fetch({}, 'n') end do
    rows[#rows + 1] = {math.tointeger(tonumber(row[1])), row[2], row[3]}
  end
  res:close()
  return client:result{columns = COLUMNS, rows = rows}
end

local handler = {}

function handler.on_handshake_response(client, hr)
  local stored = users[hr.user]
  if stored == nil or client:verify_native_password(stored) == nil then
    return client:deny()
  end
  client.account = hr.user
  return client:accept()
end

function handler.on_query(client, sql)
  local q = sql:lower():gsub('^%s+', ''):gsub('[%s;]+$', '')
  if q:find('^set%s') then
    return client:ok()
  end
  if q == 'select @@version_comment limit 1' or q == 'select @@version_comment' then
    return client:result{columns = {'@@version_comment'}, rows = {{'myproxy virtual server'}}}
  end
  if q == 'select database()' then
    return client:result{columns = {'database()'}, rows = {{client.database or mysql_null}}}
  end
  if q == 'show tables' then
    return client:result{columns = {'Tables_in_virtual'}, rows = {{'products'}}}
  end
  local from = q:match('^select%s+[%w_%*, ]+%s+from%s+products(.*)$')
  if from then
    if from == '' then return products(client) end
    local id = from:match('^%s+where%s+id%s*=%s*(%d+)$')
    if id then return products(client, id) end
  end
  return refuse(client, sql)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/virtual.sock', handler, {auth = 'native'})
