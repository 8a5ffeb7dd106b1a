#!/usr/bin/env bash
# Builds the native addon with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/
# and runs the tests that exercise it (the pump's close paths, the tracker, interception) against
# that build. A memory error or undefined behaviour aborts the run with a report.
#   bash scripts/test-asan.sh            # what CI runs (npm run test:asan)
set -euo pipefail
cd "$(dirname "$0")/.."

include=$(node -p "require('path').resolve(process.execPath, '..', '..', 'include', 'node')")
if [ ! -f "$include/node_api.h" ]; then
  include="$HOME/.cache/node-gyp/$(node -p 'process.versions.node')/include/node"
fi
if [ ! -f "$include/node_api.h" ]; then
  echo "test-asan: Node's headers not found (looked in $include)" >&2
  exit 1
fi

mkdir -p build-asan
gcc -shared -fPIC -std=gnu11 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -Wall -Wextra -DNAPI_VERSION=8 -I"$include" \
  native/myproxy_native.c native/napi-util.c native/pump.c native/sockets.c native/tracker.c native/tracker-binding.c \
  -o build-asan/myproxy_native.node

export MYPROXY_NATIVE_ADDON="$PWD/build-asan/myproxy_native.node"
# Node itself is not built with the sanitizers: the runtimes are preloaded. Node leaks by design at
# exit, so leak detection is off; everything else stops the run.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "# native tests under AddressSanitizer + UBSan ($MYPROXY_NATIVE_ADDON)"
node --import tsx --test --test-concurrency=1 \
  test/unit/native.test.ts test/unit/net/pump-safety.test.ts test/unit/net/relay.test.ts \
  test/unit/net/tracker.test.ts test/unit/net/intercept.test.ts
