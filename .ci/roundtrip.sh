#!/usr/bin/env bash
# The init -> serve -> secret set (stdin) -> secret list --json round trip as
# a plain shell session with the built binary, plus the canary check over the
# data dir and every output. Used by .ci/run; runnable by hand.
set -euo pipefail
work="$(mktemp -d /tmp/ks-rt.XXXXXX)"
trap 'if [ -n "${pid:-}" ]; then kill -INT "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
bin="$work/keystile"
go build -o "$bin" ./cmd/keystile
export KEYSTILE_DATA_DIR="$work/d"
printf 'gateway:\n  listen: 127.0.0.1:0\n' >"$work/ks.yaml"
export KEYSTILE_CONFIG="$work/ks.yaml"
canary="CANARY-shell-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

"$bin" init >"$work/out.txt" 2>&1
"$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -S "$KEYSTILE_DATA_DIR/admin.sock" ] && break; sleep 0.1; done
printf 'api_key=PUBLIC-KEY-0001\nsecret=%s\n' "$canary" | "$bin" secret set shell-test >>"$work/out.txt" 2>&1
"$bin" secret list --json >"$work/list.json" 2>>"$work/out.txt"
grep -q '"name": "shell-test"' "$work/list.json"
grep -q '"secret"' "$work/list.json"
kill -INT "$pid"; wait "$pid"; pid=

if grep -rqa "$canary" "$KEYSTILE_DATA_DIR" "$work/out.txt" "$work/list.json" "$work/serve.log"; then
	echo "roundtrip: the canary leaked"; exit 1
fi
echo "roundtrip: ok (init, serve, secret set via stdin, secret list --json; canary found nowhere)"
