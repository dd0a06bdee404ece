package session

import (
	"encoding/json"
	"testing"
	"time"
)

func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"Bearer","expires_in":60,"refresh_token":"r","scope":"x"}`))
	f.Add(200, "application/json; charset=utf-8", []byte(`{"access_token":"a","token_type":"bearer","expires_in":null}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant","error_description":"nope"}`))
	f.Add(401, "application/json", []byte(`{"error":"invalid_client"}`))
	f.Add(200, "text/plain", []byte(`access_token=a`))
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"Bearer","expires_in":1e99}`))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		toks, err := parseTokenResponse(status, ct, body, now)
		if err != nil {
			return
		}
		if toks.AccessToken.IsZero() || toks.TokenType != "Bearer" || toks.Lifetime < 0 || toks.Lifetime > maxLifetime {
			t.Fatalf("accepted an invalid response: %q", body)
		}
		// Round trip: re-encoding the parsed values parses to the same values.
		m := map[string]any{"access_token": string(toks.AccessToken.Reveal()), "token_type": toks.TokenType}
		if !toks.Expiry.IsZero() {
			m["expires_in"] = int64(toks.Lifetime / time.Second)
		}
		if !toks.RefreshToken.IsZero() {
			m["refresh_token"] = string(toks.RefreshToken.Reveal())
		}
		if toks.Scope != "" {
			m["scope"] = toks.Scope
		}
		again, _ := json.Marshal(m)
		back, err := parseTokenResponse(200, "application/json", again, now)
		if err != nil || !back.AccessToken.Equal(toks.AccessToken) || !back.RefreshToken.Equal(toks.RefreshToken) ||
			!back.Expiry.Equal(toks.Expiry) || back.Scope != toks.Scope {
			t.Fatalf("round trip differs for %q: %v", body, err)
		}
	})
}

func FuzzBetfairSessionExpired(f *testing.F) {
	f.Add(400, []byte(`{"detail":{"APINGException":{"errorCode":"INVALID_SESSION_INFORMATION"}}}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","error":{"data":{"APINGException":{"errorCode":"NO_SESSION"}}},"id":1}`))
	f.Add(200, []byte(`[{"jsonrpc":"2.0","result":[]},{"error":{"data":{"APINGException":{"errorCode":"NO_SESSION"}}}}]`))
	f.Add(200, []byte(`[]`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		got := BetfairSessionExpired(status, body)
		// A JSON-RPC answer means the same alone and inside a batch.
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) == nil && obj != nil {
			if _, isRPC := obj["error"]; isRPC && rpcExpired(body) {
				if !got || !BetfairSessionExpired(status, append(append([]byte("["), body...), ']')) {
					t.Fatalf("rpc expiry not detected consistently: %q", body)
				}
			}
		}
	})
}
