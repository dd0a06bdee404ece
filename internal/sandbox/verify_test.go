package sandbox

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

type testVectors struct {
	RFC8032 struct {
		Cases []struct {
			Seed, Public, MessageHex, Signature string
		} `json:"cases"`
	} `json:"rfc8032_ed25519"`
	RFC4231 struct {
		Cases []struct {
			KeyHex string `json:"key_hex"`
			Data   string `json:"data"`
			SHA256 string `json:"sha256"`
		} `json:"cases"`
	} `json:"rfc4231_hmac"`
	OAuth2Basic struct {
		ClientID      string `json:"client_id"`
		ClientSecret  string `json:"client_secret"`
		Authorization string `json:"authorization"`
	} `json:"oauth2_client_basic"`
}

func loadVectors(t *testing.T) testVectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v testVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfc8032Key1 returns the RFC 8032 §7.1 test-1 key, after checking the
// published signature of the empty message with it.
func rfc8032Key1(t *testing.T) ed25519.PrivateKey {
	c := loadVectors(t).RFC8032.Cases[0]
	priv := ed25519.NewKeyFromSeed(mustHex(t, c.Seed))
	if got := hex.EncodeToString(priv.Public().(ed25519.PublicKey)); got != c.Public {
		t.Fatalf("public key %s, want %s", got, c.Public)
	}
	if got := hex.EncodeToString(ed25519.Sign(priv, mustHex(t, c.MessageHex))); got != c.Signature {
		t.Fatalf("signature %s, want %s", got, c.Signature)
	}
	return priv
}

func TestVerifyDMarket(t *testing.T) {
	priv := rfc8032Key1(t)
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Unix(1700000000, 0)
	const (
		method = "POST"
		path   = "/marketplace-api/v1/user-targets/create"
		query  = "GameID=a8db&Title=AK-47%20%7C%20Redline"
	)
	body := []byte(`{"GameID":"a8db","Targets":[{"Amount":"1","Price":{"Currency":"USD","Amount":1.5},"Title":"AK-47 | Redline"}]}`)
	date := strconv.FormatInt(now.Unix(), 10)
	signed := DMarketSignedString(method, path, query, body, date)
	if want := method + path + "?" + query + string(body) + date; string(signed) != want {
		t.Fatalf("signed string %q, want %q", signed, want)
	}
	headers := func() http.Header {
		h := http.Header{}
		h.Set("X-Api-Key", hex.EncodeToString(pub))
		h.Set("X-Sign-Date", date)
		h.Set("X-Request-Sign", FormatDMarketSign(ed25519.Sign(priv, signed)))
		return h
	}
	if err := VerifyDMarket(method, path, query, body, headers(), pub, now); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	tests := []struct {
		name    string
		method  string
		path    string
		query   string
		body    string
		mutate  func(h http.Header)
		now     time.Time
		pub     ed25519.PublicKey
		wantErr error
	}{
		{name: "method", method: "PUT", wantErr: ErrDMarketSignature},
		{name: "path", path: "/marketplace-api/v1/user-targets/delete", wantErr: ErrDMarketSignature},
		{name: "encoded path", path: "/marketplace-api/v1/user-targets%2Fcreate", wantErr: ErrDMarketSignature},
		{name: "query", query: "GameID=a8db", wantErr: ErrDMarketSignature},
		{name: "body", body: strings.Replace(string(body), "1.5", "15", 1), wantErr: ErrDMarketSignature},
		{name: "date header", mutate: func(h http.Header) { h.Set("X-Sign-Date", strconv.FormatInt(now.Unix()+1, 10)) }, wantErr: ErrDMarketSignature},
		{name: "old date", now: now.Add(DMarketWindow + time.Second), wantErr: ErrDMarketDate},
		{name: "future date", now: now.Add(-DMarketWindow - time.Second), wantErr: ErrDMarketDate},
		{name: "edge of window", now: now.Add(DMarketWindow)},
		{name: "non numeric date", mutate: func(h http.Header) { h.Set("X-Sign-Date", "yesterday") }, wantErr: ErrDMarketDate},
		{name: "other key", pub: otherPub, wantErr: ErrDMarketKey},
		{name: "missing sign", mutate: func(h http.Header) { h.Del("X-Request-Sign") }, wantErr: ErrDMarketMissing},
		{name: "missing key", mutate: func(h http.Header) { h.Del("X-Api-Key") }, wantErr: ErrDMarketMissing},
		{name: "bad prefix", mutate: func(h http.Header) {
			h.Set("X-Request-Sign", strings.Replace(h.Get("X-Request-Sign"), "dmar", "dmarket", 1))
		}, wantErr: ErrDMarketMalformed},
		{name: "short signature", mutate: func(h http.Header) { h.Set("X-Request-Sign", "dmar ed25519 abcd") }, wantErr: ErrDMarketMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, p, q, b, n, k := method, path, query, string(body), now, pub
			if tc.method != "" {
				m = tc.method
			}
			if tc.path != "" {
				p = tc.path
			}
			if tc.query != "" {
				q = tc.query
			}
			if tc.body != "" {
				b = tc.body
			}
			if !tc.now.IsZero() {
				n = tc.now
			}
			if tc.pub != nil {
				k = tc.pub
			}
			h := headers()
			if tc.mutate != nil {
				tc.mutate(h)
			}
			err := VerifyDMarket(m, p, q, []byte(b), h, k, n)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestGenericSignatureRFC4231(t *testing.T) {
	for i, c := range loadVectors(t).RFC4231.Cases {
		// With empty method, path, query and body the string signed is the
		// timestamp alone, so the HMAC core is checked against RFC 4231.
		got := GenericSignature(mustHex(t, c.KeyHex), c.Data, "", "", "", nil)
		if got != c.SHA256 {
			t.Errorf("case %d: %s, want %s", i+1, got, c.SHA256)
		}
	}
}

func TestVerifyGeneric(t *testing.T) {
	key, sec := secret.FromString("bp_canary_key"), secret.FromString("betpro-test-secret")
	now := time.UnixMilli(1700000000123)
	body := []byte(`{"market_id":"MKT-1001","size":"2"}`)
	// Hand-computed: HMAC-SHA256("betpro-test-secret",
	// "1700000000123POST/api/v1/orders?dry=1{...body...}") with Python's hmac.
	const want = "43a2e967e69f67151fa218f15f8fb6fdef634823656c3bb50e9fc8920afd5c41"
	if got := GenericSignature(sec.Reveal(), "1700000000123", "POST", "/api/v1/orders", "dry=1", body); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	headers := func() http.Header {
		h := http.Header{}
		h.Set("X-API-KEY", "bp_canary_key")
		h.Set("X-TIMESTAMP", "1700000000123")
		h.Set("X-SIGNATURE", want)
		return h
	}
	tests := []struct {
		name         string
		method, path string
		query        string
		body         string
		mutate       func(http.Header)
		now          time.Time
		wantErr      error
	}{
		{name: "valid"},
		{name: "uppercase hex accepted", mutate: func(h http.Header) { h.Set("X-SIGNATURE", strings.ToUpper(want)) }},
		{name: "method", method: "PUT", wantErr: ErrGenericSignature},
		{name: "path", path: "/api/v1/orders/", wantErr: ErrGenericSignature},
		{name: "query", query: "dry=0", wantErr: ErrGenericSignature},
		{name: "body", body: `{"market_id":"MKT-1001","size":"20"}`, wantErr: ErrGenericSignature},
		{name: "timestamp", mutate: func(h http.Header) { h.Set("X-TIMESTAMP", "1700000000124") }, wantErr: ErrGenericSignature},
		{name: "stale", now: now.Add(GenericWindow + time.Millisecond), wantErr: ErrGenericTimestamp},
		{name: "seconds not ms", mutate: func(h http.Header) { h.Set("X-TIMESTAMP", "1700000000") }, wantErr: ErrGenericTimestamp},
		{name: "key", mutate: func(h http.Header) { h.Set("X-API-KEY", "bp_other") }, wantErr: ErrGenericKey},
		{name: "missing", mutate: func(h http.Header) { h.Del("X-SIGNATURE") }, wantErr: ErrGenericMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, p, q, b, n := "POST", "/api/v1/orders", "dry=1", string(body), now
			if tc.method != "" {
				m = tc.method
			}
			if tc.path != "" {
				p = tc.path
			}
			if tc.query != "" {
				q = tc.query
			}
			if tc.body != "" {
				b = tc.body
			}
			if !tc.now.IsZero() {
				n = tc.now
			}
			h := headers()
			if tc.mutate != nil {
				tc.mutate(h)
			}
			err := VerifyGeneric(m, p, q, []byte(b), h, key, sec, n)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "canary") {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}

func TestVerifySTAPIClientRFC6749(t *testing.T) {
	v := loadVectors(t).OAuth2Basic
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/oauth/token", nil)
	r.Header.Set("Authorization", v.Authorization)
	if !VerifySTAPIClient(r, secret.FromString(v.ClientID), secret.FromString(v.ClientSecret)) {
		t.Fatal("RFC 6749 §4.4.2 example credentials refused")
	}
	if VerifySTAPIClient(r, secret.FromString(v.ClientID), secret.FromString("wrong")) {
		t.Fatal("wrong secret accepted")
	}
	// Form-encoded credentials (RFC 6749 §2.3.1): "a b:c" is sent as "a+b%3Ac".
	r.SetBasicAuth("id+1", "a+b%3Ac")
	if !VerifySTAPIClient(r, secret.FromString("id 1"), secret.FromString("a b:c")) {
		t.Fatal("form-encoded client credentials refused")
	}
}

func TestVerifyStake(t *testing.T) {
	tok := secret.FromString(strings.Repeat("ab", 32))
	tests := []struct {
		name, header string
		ok           bool
	}{
		{"valid", strings.Repeat("ab", 32), true},
		{"wrong", strings.Repeat("cd", 32), false},
		{"short", "abab", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("x-access-token", tc.header)
			if err := VerifyStake(h, tok); (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
