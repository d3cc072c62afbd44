#!/bin/sh
# python.sh -- (re)write the committed Python stubs of proto/shop/v1 into OUT.
# usage: python.sh PROTOC PROTO_ROOT OUT
set -eu
protoc=$1 root=$2 out=$3
mkdir -p "$out"
rm -rf "$out/shop"
"$protoc" --proto_path="$root" --python_out="$out" "$root"/shop/v1/*.proto
touch "$out/shop/__init__.py" "$out/shop/v1/__init__.py"
