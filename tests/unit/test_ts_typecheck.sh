#!/bin/sh
# test_ts_typecheck.sh -- `tsc --noEmit` (strict, clients/typescript/tsconfig.json)
# over the Node.js client, its tests and the stubs of gen/typescript/.
# usage: test_ts_typecheck.sh SOURCE_ROOT
set -eu
[ $# -eq 1 ] || { echo "usage: $0 SOURCE_ROOT" >&2; exit 2; }
root=$1
tsc=$root/node_modules/.bin/tsc
[ -x "$tsc" ] || { echo "FAIL: no $tsc; run 'npm ci' at the repository root" >&2; exit 1; }
command -v node >/dev/null || { echo "FAIL: no node on PATH (./shop test installs nodejs)" >&2; exit 1; }
cd "$root"
"$tsc" -p clients/typescript --noEmit
echo "ok: tsc --noEmit clean (strict)"
