#!/bin/sh
# test_format.sh ROOT -- every C source and header of the repository is
# formatted as the committed .clang-format says (clang-format --dry-run
# -Werror); generated C (build folders) is not looked at. Prints the files
# that differ, and how to fix them.
set -eu
root=$1
cd "$root"
bad=0
for f in $(find lib registry svc-auth svc-product svc-order edge-gateway bench tests \
	\( -name '*.c' -o -name '*.h' \) -type f | sort); do
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f"
		bad=1
	fi
done
if [ "$bad" -ne 0 ]; then
	echo "run: clang-format -i on the files above (the committed .clang-format)"
fi
exit "$bad"
