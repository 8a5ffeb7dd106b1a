#!/usr/bin/env bash
# Installs what building and testing myproxy needs on Debian 12:
#   1. the Debian packages below (only those missing; needs root), without
#      leaving the distribution's MariaDB service running (the tests start
#      their own throwaway servers);
#   2. the npm dependencies (npm ci when package-lock.json exists, otherwise
#      npm install), which also builds the native addon (binding.gyp).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(mariadb-server mariadb-client postgresql sysbench socat libsystemd-dev python3 make g++ python3-pymysql php-cli php-mysql prometheus libdbd-mariadb-perl)

is_installed() {
  dpkg -s "$1" 2>/dev/null | grep -qx 'Status: install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root, or install them first:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi

  # Keep maintainer scripts from starting services (mariadb) during the
  # install: a policy-rc.d that denies every action, removed afterwards
  # unless it existed before.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
    trap 'rm -f "$policy"' EXIT
  fi

  echo "install-deps: installing ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

  if [ "$created_policy" -eq 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi

  # If the package install started the distribution's server anyway (e.g. a
  # pre-existing policy-rc.d allowed it), stop it. Only when we installed it
  # just now: a server that was already there is left alone.
  for p in "${missing[@]}"; do
    if [ "$p" = prometheus ]; then
      if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop prometheus.service >/dev/null 2>&1 || true
      elif [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      fi
    fi
    if [ "$p" = mariadb-server ]; then
      if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop mariadb.service >/dev/null 2>&1 || true
      elif [ -x /etc/init.d/mariadb ]; then
        /etc/init.d/mariadb stop >/dev/null 2>&1 || true
      fi
    fi
  done
else
  echo "install-deps: Debian packages already installed: ${PACKAGES[*]}"
fi

# node-gyp must use Debian's python3 (another python3 may come first on PATH).
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
  export PYTHON=/usr/bin/python3
fi

if [ -f package-lock.json ]; then
  npm ci
else
  npm install
fi
