#!/usr/bin/env bash
# Type-checks and lints the project (the full run only), then runs the node:test suites one file at a time.
#   bash scripts/test.sh                 # all test/unit and test/integration *.test.ts
#   bash scripts/test.sh FILE.test.ts... # only these files
# A type-check failure is reported before the tests run and makes the script
# fail, but the tests still run so their results are visible. The test
# runner's summary (# pass N / # fail N) is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."

tsc_status=0
echo "# type check: tsc -p tsconfig.check.json"
# --no-install: never let npx fetch the unrelated "tsc" package from the registry.
npx --no-install tsc -p tsconfig.check.json || tsc_status=$?
if [ "$tsc_status" -ne 0 ]; then
  echo "# type check FAILED (status $tsc_status, errors above); running the tests anyway" >&2
fi

lint_status=0
if [ "$#" -eq 0 ]; then
  echo "# lint: eslint (typescript-eslint strict, type-checked) and prettier --check"
  npx --no-install eslint . || lint_status=$?
  npx --no-install prettier --check . >/dev/null || { lint_status=$?; npx --no-install prettier --list-different . >&2 || true; }
  if [ "$lint_status" -ne 0 ]; then
    echo "# lint FAILED (status $lint_status, findings above); running the tests anyway" >&2
  fi
fi

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find test/unit test/integration -name '*.test.ts' 2>/dev/null | LC_ALL=C sort)
fi
if [ "${#files[@]}" -eq 0 ]; then
  echo "no test files found under test/unit or test/integration" >&2
  exit 1
fi

test_status=0
asan_status=0
if [ "$#" -eq 0 ]; then
  # The native addon once more, built with AddressSanitizer and UBSan, under its own tests.
  bash scripts/test-asan.sh || asan_status=$?
  if [ "$asan_status" -ne 0 ]; then
    echo "# native tests under AddressSanitizer FAILED (status $asan_status)" >&2
  fi
fi
node --import tsx --test --test-concurrency=1 "${files[@]}" || test_status=$?

if [ "$test_status" -ne 0 ]; then
  exit "$test_status"
fi
if [ "$asan_status" -ne 0 ]; then
  exit "$asan_status"
fi
if [ "$lint_status" -ne 0 ]; then
  exit "$lint_status"
fi
exit "$tsc_status"
