#!/bin/sh
# test_stubs_fresh.sh -- fails when the committed stubs of one language
# (gen/python/, gen/typescript/) differ from what its generator script
# (gen/python.sh, gen/typescript.sh) makes of proto/shop/v1 now.
# usage: test_stubs_fresh.sh GEN_SH PROTOC PROTO_ROOT COMMITTED_DIR
set -eu
[ $# -eq 4 ] || { echo "usage: $0 GEN_SH PROTOC PROTO_ROOT COMMITTED_DIR" >&2; exit 2; }
gen_sh=$1 protoc=$2 root=$3 committed=$4
lang=$(basename "$committed")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh "$gen_sh" "$protoc" "$root" "$tmp"
if diff -r -x __pycache__ -x '*.pyc' "$tmp/shop" "$committed/shop"; then
	echo "ok: gen/$lang matches proto/shop/v1"
else
	echo "FAIL: gen/$lang is stale; regenerate with: ninja -C build gen-$lang" >&2
	exit 1
fi
