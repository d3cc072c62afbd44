#!/bin/sh
# test_stubs_fresh.sh -- fails when the committed Python stubs in gen/python/
# differ from what gen/python.sh makes of proto/shop/v1 now.
# usage: test_stubs_fresh.sh PYTHON_SH PROTOC PROTO_ROOT COMMITTED_DIR
set -eu
[ $# -eq 4 ] || { echo "usage: $0 PYTHON_SH PROTOC PROTO_ROOT COMMITTED_DIR" >&2; exit 2; }
python_sh=$1 protoc=$2 root=$3 committed=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh "$python_sh" "$protoc" "$root" "$tmp"
if diff -r -x __pycache__ -x '*.pyc' "$tmp/shop" "$committed/shop"; then
	echo "ok: gen/python matches proto/shop/v1"
else
	echo "FAIL: gen/python is stale; regenerate with: ninja -C build gen-python" >&2
	exit 1
fi
