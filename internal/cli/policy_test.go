package cli

import (
	"strings"
	"testing"
)

func TestParseSavedRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in         string
		venue, path, qry string
		body             string
		wantErr          bool
	}{
		{"origin form", "POST /binance/api/v3/order?symbol=BTCUSDT HTTP/1.1\nHost: x\n\n", "binance", "/api/v3/order", "symbol=BTCUSDT", "", false},
		{"crlf and body", "POST /okx/api/v5/trade/order HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "okx", "/api/v5/trade/order", "", "{}", false},
		{"absolute form", "GET http://127.0.0.1:7878/kraken/0/public/Ticker?pair=XBTUSD HTTP/1.1\nHost: x\n\n", "kraken", "/0/public/Ticker", "pair=XBTUSD", "", false},
		{"escaped path kept", "GET /binance/a%2Fb HTTP/1.1\nHost: x\n\n", "binance", "/a%2Fb", "", "", false},
		{"no venue", "GET / HTTP/1.1\nHost: x\n\n", "", "", "", "", true},
		{"dot venue", "GET /../etc HTTP/1.1\nHost: x\n\n", "", "", "", "", true},
		{"dot segment", "GET /binance/api/../x HTTP/1.1\nHost: x\n\n", "", "", "", "", true},
		{"encoded venue", "GET /bin%2Fance/x HTTP/1.1\nHost: x\n\n", "", "", "", "", true},
		{"body too large", "POST /binance/x HTTP/1.1\nHost: x\nContent-Length: 20\n\n01234567890123456789", "", "", "", "", true},
		{"not http", "hello", "", "", "", "", true},
		{"asterisk", "OPTIONS * HTTP/1.1\nHost: x\n\n", "", "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseSavedRequest([]byte(tc.in), 10)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (r.Venue != tc.venue || r.Path != tc.path || r.RawQuery != tc.qry || string(r.Body) != tc.body) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func FuzzParseSavedRequest(f *testing.F) {
	f.Add([]byte("POST /binance/api/v3/order?symbol=BTCUSDT HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}"))
	f.Add([]byte("GET http://h/kraken/0/public/Ticker HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /a/../b HTTP/1.0\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseSavedRequest(data, 64)
		if err != nil {
			return
		}
		if r.Venue == "" || strings.ContainsAny(r.Venue, "/%.") || !strings.HasPrefix(r.Path, "/") || len(r.Body) > 64 {
			t.Fatalf("bad parse %+v", r)
		}
		for _, seg := range strings.Split(r.Path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("dot segment in %q", r.Path)
			}
		}
	})
}
