#!/bin/sh
# protoc-c.sh -- run protoc's C generator for one .proto and flatten its output.
# protoc writes shop/v1/x.pb-c.{c,h} and includes "shop/v1/x.pb-c.h"; meson
# wants both files directly in the build folder, so include paths are made flat.
# usage: protoc-c.sh PROTOC PROTO_ROOT INPUT OUT_C OUT_H
set -eu
protoc=$1 root=$2 input=$3 out_c=$4 out_h=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base=$(basename "$input" .proto)
"$protoc" --proto_path="$root" --c_out="$tmp" "$root/shop/v1/$base.proto"
sed 's|#include "shop/v1/\([^"]*\)"|#include "\1"|' "$tmp/shop/v1/$base.pb-c.c" > "$out_c"
sed 's|#include "shop/v1/\([^"]*\)"|#include "\1"|' "$tmp/shop/v1/$base.pb-c.h" > "$out_h"
