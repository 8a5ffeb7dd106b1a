#!/usr/bin/env bash
# A complete tour of myproxy on one machine (Debian 12, Node 20):
#
#   1. installs what is missing (Debian packages as root, npm dependencies,
#      the native addon) through scripts/install-deps.sh,
#   2. builds dist/ (npm run build),
#   3. starts a throwaway MariaDB server in a temporary directory,
#   4. writes a small config.lua (examples/basic.lua plus one rule) and
#      starts the proxy with it,
#   5. runs queries through the proxy with the mariadb command line client,
#      one of them a login that is refused,
#   6. prints the proxy's log and removes everything it created.
#
# Usage: bash scripts/demo.sh        (also: npm run demo, once npm is set up)
# Exit status 0 when every step worked as expected.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\ndemo: FAILED: %s\n' "$*" >&2
  exit 1
}
# Prints a command the way one would type it, then runs it.
show() {
  local arg line='$'
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:@%+-]+$ ]]; then
      line+=" $arg"
    else
      line+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "$line"
  "$@"
}

# ---------------------------------------------------------------------------
step "Checking prerequisites"

if ! command -v node >/dev/null 2>&1; then
  fail "node is not installed (myproxy needs Node.js 20 or newer)"
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  fail "Node.js $(node --version) is too old (myproxy needs 20 or newer)"
fi
echo "node $(node --version)"

have_binary() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}
need_install=0
for bin in mariadbd mariadb-install-db mariadb; do
  have_binary "$bin" || need_install=1
done
[ -d node_modules/tsx ] && [ -d node_modules/fengari ] && [ -d node_modules/typescript ] || need_install=1
[ -f build/Release/myproxy_native.node ] || need_install=1

if [ "$need_install" -eq 1 ]; then
  step "Installing dependencies (bash scripts/install-deps.sh)"
  bash scripts/install-deps.sh
else
  echo "MariaDB server and client, node_modules and the native addon are present"
fi

step "Building (npm run build)"
npm run build

# ---------------------------------------------------------------------------
workdir=$(mktemp -d /tmp/myproxy-demo.XXXXXX)
proxy_pid=
db_pid=
db_ctl_open=0

cleanup() {
  local status=$?
  set +e
  if [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; then
    kill -TERM "$proxy_pid" 2>/dev/null
    wait "$proxy_pid" 2>/dev/null
  fi
  # Closing our end of the pipe tells scripts/demo.ts to stop MariaDB.
  if [ "$db_ctl_open" -eq 1 ]; then
    exec 3>&-
    db_ctl_open=0
  fi
  if [ -n "$db_pid" ]; then
    wait "$db_pid" 2>/dev/null
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until file $1 contains a line matching $2; gives up after $3 seconds
# or when process $4 has exited.
wait_for_line() {
  local file=$1 pattern=$2 seconds=$3 pid=$4 i
  for ((i = 0; i < seconds * 10; i++)); do
    if [ -f "$file" ] && grep -q -- "$pattern" "$file"; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------
step "Starting a throwaway MariaDB server (scripts/demo.ts)"

mkfifo "$workdir/mariadb.ctl"
node --import tsx scripts/demo.ts "$workdir/mariadb.ready" \
  <"$workdir/mariadb.ctl" >"$workdir/mariadb.out" 2>&1 &
db_pid=$!
exec 3>"$workdir/mariadb.ctl"
db_ctl_open=1

if ! wait_for_line "$workdir/mariadb.ready" / 90 "$db_pid"; then
  cat "$workdir/mariadb.out" >&2
  fail "MariaDB did not start"
fi
db_socket=$(head -n 1 "$workdir/mariadb.ready")
echo "MariaDB is listening on $db_socket"
echo "It has the user 'native' with the password 'nativepw' (mysql_native_password)."

# ---------------------------------------------------------------------------
step "Writing the proxy configuration"

config=$workdir/config.lua
proxy_socket=$workdir/myproxy.sock
cat >"$config" <<'EOF'
-- The demo's config.lua: examples/basic.lua with one extra rule.
-- The backend and the listening socket come from the environment.
local backend = mysql_resolve(os.getenv('MYPROXY_BACKEND') or '/run/mysqld/mysqld.sock')

local handler = {}

function handler.on_handshake_response(client, handshake_response)
  -- A policy decision taken by the proxy, before any server is contacted.
  if handshake_response.user == 'root' then
    return client:err('root may not log in through myproxy')
  end
  -- Everybody else logs in to the backend with the credentials they gave.
  return client:connect(backend, handshake_response)
end

mysql_listen(os.getenv('MYPROXY_SOCKET') or '/run/myproxy/myproxy.sock', handler)
EOF
echo "$config:"
sed 's/^/    /' "$config"

export MYPROXY_BACKEND=$db_socket
export MYPROXY_SOCKET=$proxy_socket
show node bin/myproxy.js --check --config "$config"
# --check binds the socket like a real start; do not leave the file behind.
rm -f "$proxy_socket"

# ---------------------------------------------------------------------------
step "Starting the proxy"

log=$workdir/myproxy.log
printf '$ %s &\n' "node bin/myproxy.js --config $config >$log 2>&1"
node bin/myproxy.js --config "$config" >"$log" 2>&1 &
proxy_pid=$!
if ! wait_for_line "$log" '^listening on ' 30 "$proxy_pid"; then
  cat "$log" >&2
  fail "the proxy did not start"
fi
sed -n 's/^listening on /proxy is listening on /p' "$log"

# ---------------------------------------------------------------------------
step "Queries through the proxy (mariadb client)"

client=(mariadb --no-defaults --protocol=socket -S "$proxy_socket")

out=$(show "${client[@]}" -u native -pnativepw --table -e 'SELECT CURRENT_USER(), VERSION()') ||
  fail "the query failed: $out"
printf '%s\n' "$out"
grep -q 'native@' <<<"$out" || fail "unexpected CURRENT_USER() in: $out"

echo
out=$(show "${client[@]}" -u native -pnativepw -D test --table -e \
  "CREATE TABLE greetings (id INT, text TEXT); INSERT INTO greetings VALUES (1, \"hello\"), (2, \"through myproxy\"); SELECT * FROM greetings; DROP TABLE greetings") || fail "the queries in database test failed: $out"
printf '%s\n' "$out"
grep -q 'through myproxy' <<<"$out" || fail "unexpected result: $out"

step "Refused logins"

echo "A wrong password: the server refuses, the proxy passes its error on."
if out=$(show "${client[@]}" -u native -pwrong -e 'SELECT 1' 2>&1); then
  fail "a login with a wrong password succeeded"
fi
printf '%s\n' "$out"
grep -q 'ERROR 1045' <<<"$out" || fail "expected ERROR 1045, got: $out"

echo
echo "User root: refused by the Lua rule in config.lua, no server is contacted."
if out=$(show "${client[@]}" -u root -psecret -e 'SELECT 1' 2>&1); then
  fail "a login as root succeeded"
fi
printf '%s\n' "$out"
grep -q 'ERROR 1043.*root may not log in through myproxy' <<<"$out" ||
  fail "expected ERROR 1043 with the message from config.lua, got: $out"

# ---------------------------------------------------------------------------
step "Stopping the proxy (SIGTERM)"

kill -TERM "$proxy_pid"
proxy_status=0
wait "$proxy_pid" || proxy_status=$?
proxy_pid=
echo "the proxy exited with status $proxy_status"
[ "$proxy_status" -eq 0 ] || fail "the proxy exited with status $proxy_status"
[ ! -e "$proxy_socket" ] || fail "the proxy left its socket $proxy_socket behind"

step "The proxy's log (stdout and stderr)"
sed 's/^/    /' "$log"

step "Cleaning up"
exec 3>&-
db_ctl_open=0
db_status=0
wait "$db_pid" || db_status=$?
db_pid=
[ "$db_status" -eq 0 ] || fail "stopping MariaDB failed (status $db_status): $(cat "$workdir/mariadb.out")"
echo "MariaDB stopped, $workdir removed"

printf '\ndemo: OK\n'
