#!/bin/bash
# stop_under_load.sh -- shows nng 1.5.2's stuck pipe reaper in shop itself
# (docs/decisions.md, "nng 1.5.2 defects"). Run by hand, from the checkout:
#   tests/nng_bugs/stop_under_load.sh [tries]
# Each try: a stack of its own (var/nngbug, port offset 16000), 64
# connections of GET /products through the gateway, then ./shop stop gateway
# and order (their connections to the products close under load) and SIGTERM
# to both product instances. A product still alive 3 s later is stuck in
# nng_close(); its threads are printed (gdb) and the try stops there. With
# the stop watchdog (lib/service.c) the stuck process exits by itself after
# its stop budget and says so in its log. Needs wrk, curl and gdb.
set -u
cd "$(dirname "$0")/../.." || exit 1
export SHOP_VAR=var/nngbug SHOP_PORT_OFFSET=16000
gw=http://127.0.0.1:$((8080 + SHOP_PORT_OFFSET))
tries=${1:-15}
for i in $(seq 1 "$tries"); do
	./shop up >/dev/null 2>&1 || { echo "./shop up failed"; exit 1; }
	tok=$(curl -s -X POST "$gw/auth/sign-up" -H 'content-type: application/json' \
		-d "{\"name\":\"nngbug$RANDOM$i\",\"password\":\"correct horse battery\"}" |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
	wrk -t2 -c64 -d8s -H "Authorization: Bearer $tok" "$gw/products?page_size=10" >/dev/null 2>&1 &
	sleep 2
	./shop stop gateway >/dev/null 2>&1
	./shop stop order >/dev/null 2>&1
	stuck=""
	pids=$(cat "$SHOP_VAR/run/product-a.pid" "$SHOP_VAR/run/product-b.pid")
	kill -TERM $pids
	sleep 3
	for pid in $pids; do
		if kill -0 "$pid" 2>/dev/null; then
			stuck="$stuck $pid"
			gdb -p "$pid" -batch -ex "thread apply all bt 12" 2>/dev/null |
				grep -E '^Thread|nng_close|shop_|rep0|req0|nni_aio_stop' | head -40
		fi
	done
	wait
	./shop down >/dev/null 2>&1
	if [[ -n $stuck ]]; then
		echo "try $i: stuck:$stuck (see $SHOP_VAR/log/product-*.log for the watchdog's line)"
		exit 0
	fi
	echo "try $i: every product stopped within 3 s"
	sleep 2
done
echo "no stuck stop in $tries tries"
