#!/usr/bin/env bash
# The trust checks as a user would run them, with the built binary only:
# `keystile sandbox --tls` for the venues, `keystile serve` for the gateway,
# curl for the bot. Used by .ci/run; runnable by hand (needs curl and jq).
#
#  1. Bybit, OKX and DMarket answers through the gateway parse as JSON and
#     hold no REDACTED placeholder in place of a non-secret value.
#  2. Market orders that carry a fake price of their own are refused (403)
#     and the sandbox records none of them.
#  3. A revoked token retried 30 times does not block a different valid
#     token from the same address.
#  4. A data dir moved to another path serves, with its own key.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d /tmp/ks-trust.XXXXXX)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "trust: FAIL: $*"; exit 1; }

bin="$work/keystile"
go build -o "$bin" ./cmd/keystile

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The venues.
"$bin" sandbox --tls --venues binance,kraken,okx,bybit,dmarket >"$work/sb.json" 2>"$work/sb.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/sb.json" ] && break; sleep 0.1; done
[ -s "$work/sb.json" ] || fail "sandbox printed nothing"
jq -r '.venues.binance.ca_pem' "$work/sb.json" >"$work/ca.pem"
url() { jq -r ".venues.$1.base_url" "$work/sb.json"; }
creds() { jq -r ".venues.$1.credentials | to_entries[] | \"\(.key)=\(.value)\"" "$work/sb.json"; }

# The keystile server, its config outside the data dir.
port="$(freeport)"
gw="http://127.0.0.1:$port"
export KEYSTILE_DATA_DIR="$work/data"
export KEYSTILE_CONFIG="$work/keystile.yaml"
{
	printf 'gateway:\n  listen: 127.0.0.1:%s\nvenues:\n' "$port"
	for v in binance kraken okx bybit dmarket; do
		extra=""
		[ "$v" = kraken ] && extra="    tier: none"$'\n'
		printf '  %s:\n    type: %s\n    credential: sb-%s\n    base_url: %s\n    sandbox: true\n    tls:\n      ca_file: %s\n%s' \
			"$v" "$v" "$v" "$(url "$v")" "$work/ca.pem" "$extra"
	done
	cat <<'EOF'
policies:
  capped:
    venues: [binance, kraken, okx, bybit]
    operations: ["market.read", "account.read", "order.*"]
    max_notional: ["100 USDT", "100 USD"]
EOF
} >"$KEYSTILE_CONFIG"

serve() {
	"$bin" serve >>"$work/serve.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 150); do
		curl -fsS "$gw/-/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$work/serve.log"; fail "serve did not come up"
}
stop() { # stops the newest serve
	local p="${pids[-1]}"
	kill -INT "$p"; wait "$p" || true
	unset 'pids[-1]'
}

"$bin" init >"$work/init.txt" 2>&1
serve
for v in binance kraken okx bybit dmarket; do
	creds "$v" | "$bin" secret set "sb-$v" >/dev/null
done
mint() { # name venues [policy]
	local args=(token create --name "$1" --ttl 1h --test --json)
	IFS=, read -ra vs <<<"$2"
	for v in "${vs[@]}"; do args+=(--venue "$v"); done
	[ -n "${3:-}" ] && args+=(--policy "$3")
	"$bin" "${args[@]}" | jq -r '.token'
}
bot="$(mint trust-bot binance,kraken,okx,bybit,dmarket)"
capped="$(mint trust-capped binance,kraken,okx,bybit capped)"
[ -n "$bot" ] && [ "$bot" != null ] || fail "token create printed no token"

call() { # token method path [body [content-type]] -> body on stdout, status in $work/status
	local tok="$1" m="$2" p="$3" body="${4:-}" ct="${5:-application/json}"
	local args=(-sS -o "$work/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $tok")
	[ -n "$body" ] && args+=(-H "Content-Type: $ct" --data-binary "$body")
	curl "${args[@]}" "$gw$p" >"$work/status"
	cat "$work/body"
}
status() { cat "$work/status"; }

# 1. Answers stay valid JSON with their non-secret values.
check_json() { # label path-of-json
	jq -e . "$work/body" >/dev/null 2>&1 || fail "$1: the answer is not JSON: $(head -c 300 "$work/body")"
	if grep -q 'REDACTED' "$work/body"; then fail "$1: REDACTED in the answer: $(head -c 300 "$work/body")"; fi
}
for i in 1 2 3 4 5; do
	call "$bot" POST /bybit/v5/order/create "{\"category\":\"spot\",\"symbol\":\"BTCUSDT\",\"side\":\"Buy\",\"orderType\":\"Limit\",\"qty\":\"0.001\",\"price\":\"30000\",\"orderLinkId\":\"trust-$i\"}" >/dev/null
	[ "$(status)" = 200 ] || fail "bybit order: $(status) $(cat "$work/body")"
	check_json "bybit order"
	jq -e '.result.orderId | strings | length > 0' "$work/body" >/dev/null || fail "bybit order: no order id: $(cat "$work/body")"
	jq -e '.time | numbers' "$work/body" >/dev/null || fail "bybit order: time is not a number"
	call "$bot" GET "/bybit/v5/account/wallet-balance?accountType=UNIFIED" >/dev/null
	check_json "bybit balance"
	call "$bot" POST /okx/api/v5/trade/order "{\"instId\":\"BTC-USDT\",\"tdMode\":\"cash\",\"clOrdId\":\"trust$i\",\"side\":\"buy\",\"ordType\":\"limit\",\"px\":\"30000\",\"sz\":\"0.001\"}" >/dev/null
	[ "$(status)" = 200 ] || fail "okx order: $(status) $(cat "$work/body")"
	check_json "okx order"
	jq -e '.data[0].ordId | strings | length > 0' "$work/body" >/dev/null || fail "okx order: no order id"
	call "$bot" GET /okx/api/v5/account/balance >/dev/null
	check_json "okx balance"
	call "$bot" GET /dmarket/account/v1/balance >/dev/null
	[ "$(status)" = 200 ] || fail "dmarket balance: $(status)"
	check_json "dmarket balance"
	call "$bot" POST /dmarket/marketplace-api/v1/user-targets/create '{"GameID":"a8db","Targets":[{"Amount":"1","Price":{"Currency":"USD","Amount":1.5},"Title":"AK-47 | Redline (Field-Tested)"}]}' >/dev/null
	check_json "dmarket target"
done
echo "trust: 1 ok (bybit, okx, dmarket answers are JSON with their values, 5 rounds)"

# 2. Fake-price market orders: 403, nothing reaches the venue.
orders() { curl -sS --cacert "$work/ca.pem" "$(url "$1")/-/sandbox/stats" | jq -r '.orders'; }
declare -A before
for v in binance kraken okx bybit; do before[$v]="$(orders "$v")"; done
fake() { # label method path body content-type
	call "$capped" "$2" "$3" "$4" "$5" >/dev/null
	[ "$(status)" = 403 ] || fail "$1 got $(status), want 403: $(cat "$work/body")"
	jq -e '.error.rule | startswith("policy.capped.")' "$work/body" >/dev/null || fail "$1: no policy rule: $(cat "$work/body")"
}
fake "binance MARKET price=1" POST "/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=10&price=1" "" ""
fake "binance MARKET quantity+quoteOrderQty" POST "/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quoteOrderQty=50" "" ""
fake "kraken market price=1" POST /kraken/0/private/AddOrder "pair=XBTUSD&type=buy&ordertype=market&price=1&volume=10" application/x-www-form-urlencoded
fake "okx market px" POST /okx/api/v5/trade/order '{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","px":"1","sz":"10","tgtCcy":"base_ccy"}' application/json
fake "bybit Market price" POST /bybit/v5/order/create '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"10","price":"1","marketUnit":"baseCoin"}' application/json
for v in binance kraken okx bybit; do
	[ "$(orders "$v")" = "${before[$v]}" ] || fail "$v recorded an order that should have been refused"
done
echo "trust: 2 ok (5 fake-price market orders refused with 403, the sandbox recorded none)"

# 3. A revoked bot retrying does not lock out the others on 127.0.0.1.
victim_json="$("$bin" token create --name trust-revoked --venue binance --ttl 1h --test --json)"
victim="$(jq -r .token <<<"$victim_json")"
"$bin" token revoke "$(jq -r '.id // .info.id' <<<"$victim_json")" >/dev/null
for _ in $(seq 1 30); do
	call "$victim" GET "/binance/api/v3/account" >/dev/null
	[ "$(status)" = 401 ] || [ "$(status)" = 429 ] || fail "revoked token answered $(status)"
done
call "$bot" GET "/binance/api/v3/account" >/dev/null
[ "$(status)" = 200 ] || fail "a valid token after 30 revoked retries got $(status): $(cat "$work/body")"
echo "trust: 3 ok (30 retries of a revoked token; a valid token from the same address is served)"

# 4. A moved data dir serves, with its own key.
stop
mv "$work/data" "$work/moved"
export KEYSTILE_DATA_DIR="$work/moved"
serve
call "$bot" GET "/binance/api/v3/account" >/dev/null
[ "$(status)" = 200 ] || fail "the moved data dir answered $(status): $(cat "$work/body"); $(tail -5 "$work/serve.log")"
"$bin" doctor >"$work/doctor.txt" 2>&1 || { cat "$work/doctor.txt"; fail "doctor on the moved data dir"; }
echo "trust: 4 ok (the data dir moved to another path serves and doctor passes)"

if grep -rqaF -e "$(jq -r '.venues.bybit.credentials.secret' "$work/sb.json")" -e "$(jq -r '.venues.okx.credentials.secret' "$work/sb.json")" \
	"$work/moved" "$work/serve.log" "$work/body" "$work/init.txt"; then
	fail "a venue secret leaked into the data dir or the logs"
fi
echo "trust: ok"
