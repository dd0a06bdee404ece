package sandbox

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"
)

// coinbaseJWT builds a JWT the way the Coinbase documentation describes,
// with overrides applied to the claims.
func coinbaseJWT(t *testing.T, c map[string]string, uri, nonce string, nbf time.Time, life time.Duration) string {
	t.Helper()
	return signCoinbase(t, c, map[string]any{"alg": "ES256", "kid": c["key_name"], "nonce": nonce, "typ": "JWT"},
		map[string]any{"sub": c["key_name"], "iss": "cdp", "nbf": nbf.Unix(), "exp": nbf.Add(life).Unix(), "uri": uri})
}

func TestCoinbaseEmulator(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueCoinbase}, Clock: clk.Now})
	vi := s.Info().Venues[VenueCoinbase]
	c := vi.Credentials
	u, _ := url.Parse(vi.BaseURL)
	host := u.Host
	const order = `{"client_order_id":"cb1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"100","post_only":false}}}`
	tests := []struct {
		name, method, path, body, uri, nonce string
		nbf                                  time.Duration
		life                                 time.Duration
		status                               int
	}{
		{"accounts", "GET", "/api/v3/brokerage/accounts", "", "GET " + host + "/api/v3/brokerage/accounts", "n1", 0, 120 * time.Second, 200},
		{"place", "POST", "/api/v3/brokerage/orders", order, "POST " + host + "/api/v3/brokerage/orders", "n2", 0, 120 * time.Second, 200},
		{"nonce reused", "GET", "/api/v3/brokerage/accounts", "", "GET " + host + "/api/v3/brokerage/accounts", "n1", 0, 120 * time.Second, 401},
		{"uri of another path", "GET", "/api/v3/brokerage/products", "", "GET " + host + "/api/v3/brokerage/accounts", "n3", 0, 120 * time.Second, 401},
		{"lifetime too long", "GET", "/api/v3/brokerage/accounts", "", "GET " + host + "/api/v3/brokerage/accounts", "n4", 0, 121 * time.Second, 401},
		{"expired", "GET", "/api/v3/brokerage/accounts", "", "GET " + host + "/api/v3/brokerage/accounts", "n5", -121 * time.Second, 120 * time.Second, 401},
		{"not yet valid", "GET", "/api/v3/brokerage/accounts", "", "GET " + host + "/api/v3/brokerage/accounts", "n6", 30 * time.Second, 60 * time.Second, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwt := coinbaseJWT(t, c, tt.uri, tt.nonce, clk.Now().Add(tt.nbf), tt.life)
			r := do(t, nil, tt.method, vi.BaseURL+tt.path, []byte(tt.body), map[string]string{"Authorization": "Bearer " + jwt})
			m := r.json(t)
			if r.status != tt.status || (tt.status == 401 && m["error"] != "UNAUTHENTICATED") {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	r := do(t, nil, "GET", vi.BaseURL+"/api/v3/brokerage/accounts", nil, map[string]string{"Authorization": "Bearer not.a.jwt"})
	if r.status != 401 {
		t.Fatalf("garbage jwt: %d", r.status)
	}
	if o := s.Orders(VenueCoinbase); len(o) != 1 || o[0].ClientOrderID != "cb1" || o[0].Price != "100" {
		t.Fatalf("orders %+v", o)
	}
	// A nonce is usable again once its JWT expired.
	clk.Advance(3 * time.Minute)
	jwt := coinbaseJWT(t, c, "GET "+host+"/api/v3/brokerage/accounts", "n1", clk.Now(), time.Minute)
	if r := do(t, nil, "GET", vi.BaseURL+"/api/v3/brokerage/accounts", nil, map[string]string{"Authorization": "Bearer " + jwt}); r.status != 200 {
		t.Fatalf("expired nonce not released: %d %s", r.status, r.body)
	}
	if _, err := Start(t.Context(), Options{Venues: []string{VenueCoinbase}, Credentials: map[string]map[string]string{VenueCoinbase: {"private_key": "junk"}}}); err == nil {
		t.Fatal("junk private_key accepted")
	}
}

// signCoinbase signs header and claims (as given) with the credential's
// P-256 key.
func signCoinbase(t *testing.T, c map[string]string, hdr, claims map[string]any) string {
	t.Helper()
	blk, _ := pem.Decode([]byte(c["private_key"]))
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestCoinbaseClaimSets: every claim set Coinbase accepts is accepted —
// the documented cdp one, the legacy coinbase-cloud one with aud
// retail_rest_api_proxy (ccxt, coinbase-advanced-py), uris instead of
// uri — and each refusal names the claim at fault.
func TestCoinbaseClaimSets(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueCoinbase}, Clock: clk.Now})
	vi := s.Info().Venues[VenueCoinbase]
	c := vi.Credentials
	u, _ := url.Parse(vi.BaseURL)
	uri := "GET " + u.Host + "/api/v3/brokerage/accounts"
	now := clk.Now().Unix()
	base := func(nonce string, over map[string]any) (map[string]any, map[string]any) {
		hdr := map[string]any{"alg": "ES256", "kid": c["key_name"], "nonce": nonce, "typ": "JWT"}
		cl := map[string]any{"sub": c["key_name"], "iss": "cdp", "nbf": now, "exp": now + 120, "uri": uri}
		for k, v := range over {
			if k == "kid" {
				hdr[k] = v
				continue
			}
			if v == nil {
				delete(cl, k)
				continue
			}
			cl[k] = v
		}
		return hdr, cl
	}
	tests := []struct {
		name string
		over map[string]any
		want string // "" accepted; else a fragment of the refusal's message
	}{
		{"cdp", nil, ""},
		{"legacy coinbase-cloud with aud and iat", map[string]any{"iss": "coinbase-cloud", "aud": []string{"retail_rest_api_proxy"}, "iat": now}, ""},
		{"aud as a string", map[string]any{"aud": "retail_rest_api_proxy"}, ""},
		{"uris instead of uri", map[string]any{"uri": nil, "uris": []string{uri}, "aud": []string{"cdp_service"}}, ""},
		{"unknown issuer", map[string]any{"iss": "coinbase"}, `iss \"coinbase\" (want cdp or coinbase-cloud)`},
		{"foreign audience", map[string]any{"aud": []string{"somebody_else"}}, "aud"},
		{"sub of another key", map[string]any{"sub": "organizations/x/apiKeys/y"}, "claim sub is not the key name"},
		{"kid of another key", map[string]any{"kid": "organizations/x/apiKeys/y"}, "header kid is not the key name"},
		{"uri of another path", map[string]any{"uri": "GET " + u.Host + "/v2/accounts"}, "jwt uri does not match the request"},
		{"too long", map[string]any{"exp": now + 600}, "valid for 10m0s, more than 2m0s"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, cl := base("claims"+string(rune('a'+i)), tt.over)
			jwt := signCoinbase(t, c, hdr, cl)
			r := do(t, nil, "GET", vi.BaseURL+"/api/v3/brokerage/accounts", nil, map[string]string{"Authorization": "Bearer " + jwt})
			if tt.want == "" {
				if r.status != 200 {
					t.Fatalf("refused: %d %s", r.status, r.body)
				}
				return
			}
			if r.status != 401 || !strings.Contains(string(r.body), tt.want) {
				t.Fatalf("%d %s, want 401 naming %q", r.status, r.body, tt.want)
			}
		})
	}
}
