package demo

import (
	"fmt"
	"strings"

	"github.com/keystile/keystile/internal/sandbox"
)

// configYAML renders the demo's keystile.yaml for a running sandbox. It is
// an ordinary config file, parsed and validated like any other.
func configYAML(info sandbox.Info, caFile string) string {
	var b strings.Builder
	b.WriteString(`log:
  level: info
gateway:
  listen: 127.0.0.1:0
tokens:
  default_ttl: 1h
  max_ttl: 24h
venues:
`)
	venue := func(id, kind, sb string, extra string) {
		fmt.Fprintf(&b, `  %s:
    type: %s
    credential: demo-%s
    base_url: %s
    sandbox: true
    tls:
      ca_file: %q
%s`, id, kind, id, info.Venues[sb].BaseURL, caFile, extra)
	}
	venue("stake", "stake", sandbox.VenueStake, "")
	venue("dmarket", "dmarket", sandbox.VenueDMarket, "")
	venue("betfair", "betfair", sandbox.VenueBetfair, fmt.Sprintf("    identity_url: %s\n    login: certlogin\n", info.Venues[sandbox.VenueBetfair].IdentityURL))
	venue("stapi", "stapi", sandbox.VenueSTAPI, fmt.Sprintf(`    auth:
      scheme: oauth2
      oauth2:
        token_url: %s/oauth/token
`, info.Venues[sandbox.VenueSTAPI].BaseURL))
	venue("binance", "binance", sandbox.VenueBinance, "")
	venue("kraken", "kraken", sandbox.VenueKraken, "    tier: none\n")
	venue("okx", "okx", sandbox.VenueOKX, "")
	venue("bybit", "bybit", sandbox.VenueBybit, "")
	venue("coinbase", "coinbase", sandbox.VenueCoinbase, "")
	venue("betpro", "generic", sandbox.VenueGeneric, `    auth:
      scheme: hmac
      key_field: api_key
      secret_field: secret
      hmac:
        template: "{timestamp}{method}{path}{query}{body}"
        algorithm: sha256
        encoding: hex
        timestamp_format: unix_ms
        key_header: X-API-KEY
        timestamp_header: X-TIMESTAMP
        signature_header: X-SIGNATURE
    operations:
      - {method: GET, path: /api/v1/balance, op: account.read}
      - {method: GET, path: /api/v1/markets, op: market.read}
      - {method: GET, path: /api/v1/orders, op: order.read}
      - {method: POST, path: /api/v1/orders, op: order.place}
      - {method: DELETE, path: "/api/v1/orders/{id}", op: order.cancel}
`)
	b.WriteString(policyYAML)
	return b.String()
}
