-- observability.lua: Prometheus metrics (with per-account labels), the control protocol, and
-- telling other proxies to disconnect accounts that moved away (as CM4all myproxy's operators do).
--
-- Environment:
--   MYPROXY_BACKEND  the server's socket path or address (default /run/mysqld/mysqld.sock)
--   MYPROXY_SOCKET   the socket the proxy listens on (default /run/myproxy/myproxy.sock)
--   MYPROXY_METRICS  where Prometheus scrapes (default 127.0.0.1:9100; '*:9100' for every address)
--   MYPROXY_CONTROL  this daemon's control socket (default @myproxy-control)
--   MYPROXY_PEERS    control addresses of the other proxies, comma-separated (default: none)
--   MYPROXY_MOVED    accounts to disconnect everywhere on `systemctl reload`, comma-separated

local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- myproxy's metrics, plus per-account counters for up to 1000 accounts.
prometheus_listen(os.getenv('MYPROXY_METRICS') or '127.0.0.1:9100', { accounts = 1000 })

-- DISCONNECT_DATABASE datagrams close every session of an account. On a Unix socket only root
-- and this daemon's own user may send them (add others with allowed_uids).
local control = os.getenv('MYPROXY_CONTROL') or '@myproxy-control'
control_listen(control)

local function split(list)
  local out = {}
  for item in (list or ''):gmatch('[^,]+') do out[#out + 1] = item end
  return out
end

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  -- The account keys the metrics' account label and DISCONNECT_DATABASE.
  client.account = handshake_response.user
  return client:connect(backend, handshake_response)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)

-- systemctl reload: every proxy (this one too) drops the sessions of the moved accounts.
function reload()
  local moved = split(os.getenv('MYPROXY_MOVED'))
  if #moved == 0 then return end
  local targets = split(os.getenv('MYPROXY_PEERS'))
  targets[#targets + 1] = control
  for _, target in ipairs(targets) do
    local c, err = control_client:new(target)
    if not c then
      print('cannot reach ' .. target .. ': ' .. err)
    else
      local builder = c:build()
      for _, account in ipairs(moved) do builder:disconnect_database(account) end
      local ok, send_err = c:send(builder)
      print((ok and 'told ' or 'failed to tell ') .. target .. (send_err and (': ' .. send_err) or ''))
    end
  end
end
