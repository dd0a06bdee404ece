package binance

import (
	"slices"
	"testing"
)

func TestSiblingHost(t *testing.T) {
	tests := []struct {
		name, base, path, want string
	}{
		{"spot stays", "api.binance.com", "/api/v3/order", ""},
		{"sapi stays", "api.binance.com", "/sapi/v1/capital/config/getall", ""},
		{"usdm futures", "api.binance.com", "/fapi/v1/exchangeInfo", "fapi.binance.com"},
		{"coinm futures", "api.binance.com", "/dapi/v1/exchangeInfo", "dapi.binance.com"},
		{"portfolio margin", "api.binance.com", "/papi/v1/balance", "papi.binance.com"},
		{"alternative spot host", "api3.binance.com", "/fapi/v1/time", "fapi.binance.com"},
		{"explicit port", "api.binance.com:443", "/fapi/v1/time", "fapi.binance.com"},
		{"case", "API.Binance.com", "/dapi/v1/time", "dapi.binance.com"},
		{"testnet", "testnet.binance.vision", "/fapi/v1/exchangeInfo", "testnet.binancefuture.com"},
		{"a prefix only as a segment", "api.binance.com", "/fapix/v1/time", ""},
		{"sandbox serves everything", "127.0.0.1:9005", "/fapi/v1/exchangeInfo", ""},
		{"unknown host", "binance.example", "/fapi/v1/exchangeInfo", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SiblingHost(tt.base, tt.path); got != tt.want {
				t.Fatalf("SiblingHost(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
			}
			if got := SiblingHost(tt.base, tt.path); got != "" && !slices.Contains(SiblingHosts(tt.base), got) {
				t.Fatalf("%q is not among SiblingHosts(%q) = %v", got, tt.base, SiblingHosts(tt.base))
			}
		})
	}
	if got := SiblingHosts("testnet.binance.vision"); len(got) != 1 {
		t.Fatalf("testnet hosts %v, want one", got)
	}
}
