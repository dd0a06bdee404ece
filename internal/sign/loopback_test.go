package sign

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// TestHMACLoopback sends Binance-style signed requests through a real client
// to a loopback server that recomputes the signature, independently, from
// the raw query and body it received: what was signed is what was sent.
func TestHMACLoopback(t *testing.T) {
	const sk = "loopback-secret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		q, sig, ok := strings.Cut(r.URL.RawQuery, "&signature=")
		if !ok || strings.Contains(sig, "&") {
			http.Error(w, "signature not last", http.StatusBadRequest)
			return
		}
		if want := refHMAC(t, "sha256", "hex", sk, q+string(body)); sig != want {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.Header.Get("X-MBX-APIKEY") != "ak" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h := HMAC{Template: "{query}{body}", KeyHeader: "X-MBX-APIKEY", TimestampQueryParam: "timestamp", SignatureQueryParam: "signature"}
	tests := []struct{ name, query, body string }{
		{"order kept, non-ascii escaped", "symbol=%EF%BC%91&side=BUY&b=2&a=1", ""},
		{"bot timestamp and signature replaced", "signature=forged&timestamp=1&symbol=X", "quantity=1&price=0.1"},
		{"no query", "", "a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := srv.URL + "/api/v3/order"
			if tt.query != "" {
				u += "?" + tt.query
			}
			req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader([]byte(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Sign(req, []byte(tt.body), secret.FromString("ak"), secret.FromString(sk), time.UnixMilli(1700000000123), ""); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(req.URL.RawQuery, "forged") || !strings.Contains(req.URL.RawQuery, "timestamp=1700000000123") {
				t.Fatalf("query = %s", req.URL.RawQuery)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d: %s", resp.StatusCode, msg)
			}
		})
	}
}
