-- tls.lua: a TCP listener with TLS, where applications log in with a client
-- certificate: the certificate's subject names the application, and only the
-- database users listed for it may log in through the proxy.
--
-- Environment:
--   MYPROXY_TLS_DIR  directory with server.pem, server.key (the proxy's
--                    certificate and key) and ca.pem (the CA of the client
--                    certificates); default /etc/myproxy/tls
--   MYPROXY_ADDRESS  the TCP address to listen on (default *:3306)
--   MYPROXY_BACKEND  the server's socket path or address
--                    (default /run/mysqld/mysqld.sock)
--
-- Certificates are read again on SIGHUP (systemctl reload myproxy); see
-- docs/tls.md. The connection to the backend is plain here (a Unix socket);
-- mysql_resolve() takes TLS options for backends on other hosts.

local dir = os.getenv('MYPROXY_TLS_DIR') or '/etc/myproxy/tls'
local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

-- Certificate subject -> the database users that application may log in as.
local applications = {
  ['O=Example,CN=app1'] = {native = true},
  ['O=Example,CN=report'] = {report = true},
}

local handler = {}

function handler.on_handshake_response(client, hr)
  local cert = client.tls and client.tls.peer_certificate
  if cert == nil then
    -- require = true below: every client has TLS, but not every one a certificate.
    print('refused: no client certificate')
    return client:deny()
  end
  local users = applications[cert.subject]
  if users == nil or not users[hr.user] then
    print(string.format('refused: %s may not log in as %s', cert.subject, hr.user))
    return client:deny()
  end
  client.account = cert.subject
  -- Inside TLS the client sends its clear password: passed on to the server.
  return client:connect(backend, hr)
end

mysql_listen(os.getenv('MYPROXY_ADDRESS') or '*:3306', handler, {
  tls = {
    cert = dir .. '/server.pem',
    key = dir .. '/server.key',
    ca = dir .. '/ca.pem',
    require = true,
  },
  handshake_timeout = 10,
  max_connect_errors = 100,
})
