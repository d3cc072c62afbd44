#!/bin/sh
# typescript.sh -- (re)write the committed TypeScript stubs of proto/shop/v1
# into OUT with protoc-gen-es (@bufbuild/protoc-gen-es, pinned in the root
# package.json; `npm ci` at the root installs it into node_modules/).
# The stubs are ES modules with declarations (target=js+dts), so that Node
# runs them as they are and tsc type-checks against them.
# usage: typescript.sh PROTOC PROTO_ROOT OUT [PLUGIN]
set -eu
protoc=$1 root=$2 out=$3
plugin=${4:-$(dirname "$0")/../node_modules/.bin/protoc-gen-es}
[ -x "$plugin" ] || { echo "typescript.sh: no $plugin; run 'npm ci' at the repository root" >&2; exit 1; }
mkdir -p "$out"
rm -rf "$out/shop"
"$protoc" --proto_path="$root" --plugin=protoc-gen-es="$plugin" \
	--es_out="$out" --es_opt=target=js+dts,import_extension=js "$root"/shop/v1/*.proto
