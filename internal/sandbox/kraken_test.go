package sandbox

import (
	"encoding/base64"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Kraken spot REST authentication guide, as copied in
// /work/shared/vectors/vectors.json "kraken_api_sign".
const (
	krakenVecSecret   = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
	krakenVecNonce    = "1616492376594"
	krakenVecPostdata = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
	krakenVecPath     = "/0/private/AddOrder"
	krakenVecSign     = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
)

func TestKrakenVector(t *testing.T) {
	sec, _ := base64.StdEncoding.DecodeString(krakenVecSecret)
	if got := KrakenSignature(sec, krakenVecPath, krakenVecNonce, []byte(krakenVecPostdata)); got != krakenVecSign {
		t.Fatalf("KrakenSignature = %s, want %s", got, krakenVecSign)
	}
	h := http.Header{"Api-Key": {"key"}, "Api-Sign": {krakenVecSign}}
	n, err := VerifyKraken(krakenVecPath, []byte(krakenVecPostdata), h, "key", sec)
	if err != nil || strconv.FormatUint(n, 10) != krakenVecNonce {
		t.Fatalf("VerifyKraken = %d, %v", n, err)
	}
	tests := []struct {
		name, path, body, key string
		want                  error
	}{
		{"other key", krakenVecPath, krakenVecPostdata, "other", ErrKrakenKey},
		{"other path", "/0/private/Balance", krakenVecPostdata, "key", ErrKrakenSignature},
		{"changed body", krakenVecPath, krakenVecPostdata + "&x=1", "key", ErrKrakenSignature},
		{"no nonce", krakenVecPath, "pair=XBTUSD", "key", ErrKrakenNonce},
		{"two nonces", krakenVecPath, krakenVecPostdata + "&nonce=1", "key", ErrKrakenNonce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyKraken(tt.path, []byte(tt.body), h, tt.key, sec); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKrakenEndToEnd(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueKraken}})
	vi := s.Info().Venues[VenueKraken]
	key := vi.Credentials["api_key"]
	sec, err := base64.StdEncoding.DecodeString(vi.Credentials["secret"])
	if err != nil || len(sec) != 64 || len(key) != 56 {
		t.Fatalf("credential formats: %v", vi.Credentials)
	}
	nonce := uint64(time.Now().UnixMicro())
	post := func(method, form string, n uint64, k string) map[string]any {
		t.Helper()
		body := "nonce=" + strconv.FormatUint(n, 10)
		if form != "" {
			body += "&" + form
		}
		path := "/0/private/" + method
		r := do(t, nil, "POST", vi.BaseURL+path, []byte(body), map[string]string{
			"API-Key": k, "API-Sign": KrakenSignature(sec, path, strconv.FormatUint(n, 10), []byte(body)),
			"Content-Type": "application/x-www-form-urlencoded",
		})
		if r.status != 200 {
			t.Fatalf("%s: %d %s", method, r.status, r.body)
		}
		return r.json(t)
	}
	next := func() uint64 { nonce++; return nonce }
	errOf := func(m map[string]any) string {
		e, _ := m["error"].([]any)
		if len(e) == 0 {
			return ""
		}
		return e[0].(string)
	}
	if m := post("Balance", "", next(), key); errOf(m) != "" || m["result"].(map[string]any)["ZUSD"] == nil {
		t.Fatalf("balance: %v", m)
	}
	m := post("AddOrder", "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&cl_ord_id=cid-7", next(), key)
	txid := m["result"].(map[string]any)["txid"].([]any)[0].(string)
	if m := post("OpenOrders", "", next(), key); !strings.Contains(mustJSONString(t, m), "cid-7") {
		t.Fatalf("open orders: %v", m)
	}
	if m := post("CancelOrder", "txid="+txid, next(), key); errOf(m) != "" {
		t.Fatalf("cancel: %v", m)
	}
	if m := post("CancelOrder", "txid="+txid, next(), key); errOf(m) != "EOrder:Unknown order" {
		t.Fatalf("cancel again: %v", m)
	}
	post("AddOrder", "ordertype=market&pair=XBTUSD&type=sell&volume=1&userref=42", next(), key)
	if m := post("CancelAll", "", next(), key); errOf(m) != "" || m["result"].(map[string]any)["count"] != float64(1) {
		t.Fatalf("cancel all: %v", m)
	}
	if m := post("AddOrder", "pair=XBTUSD&type=hold", next(), key); errOf(m) != "EGeneral:Invalid arguments" {
		t.Fatalf("bad order: %v", m)
	}
	// Kraken's error strings.
	if m := post("Balance", "", next(), "kst_test_"+canaryToken); errOf(m) != "EAPI:Invalid key" || strings.Contains(mustJSONString(t, m), canaryToken) {
		t.Fatalf("bad key: %v", m)
	}
	if m := post("Balance", "", nonce-5, key); errOf(m) != "EAPI:Invalid nonce" {
		t.Fatalf("old nonce: %v", m)
	}
	if m := post("Balance", "", nonce-1, key); errOf(m) != "EAPI:Invalid nonce" { // the last accepted nonce
		t.Fatalf("repeated nonce: %v", m)
	}
	r := do(t, nil, "POST", vi.BaseURL+"/0/private/Balance", []byte("nonce="+strconv.FormatUint(next(), 10)), map[string]string{"API-Key": key, "API-Sign": "AAAA"})
	if errOf(r.json(t)) != "EAPI:Invalid signature" {
		t.Fatalf("bad signature: %s", r.body)
	}
	r = do(t, nil, "GET", vi.BaseURL+"/0/public/Ticker?pair=XBTUSD", nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"XBTUSD"`) {
		t.Fatalf("ticker: %d %s", r.status, r.body)
	}
	st := s.Stats(VenueKraken)
	if st.Orders != 2 || st.Cancels != 2 || st.AuthFailures != 4 {
		t.Fatalf("stats: %+v", st)
	}
	ns := s.KrakenNonces()
	for i := 1; i < len(ns); i++ {
		if ns[i] <= ns[i-1] {
			t.Fatalf("accepted nonces not increasing: %v", ns)
		}
	}
}

func TestKrakenRateCounter(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueKraken}, Clock: clk.Now, Credentials: map[string]map[string]string{
		VenueKraken: {"tier": "starter"}}})
	vi := s.Info().Venues[VenueKraken]
	// The tier is the emulator's setting, not a field of the credential
	// keystile stores (its kraken type refuses unknown fields).
	if _, ok := vi.Credentials["tier"]; ok || len(vi.Credentials) != 2 {
		t.Fatalf("credentials %v: want api_key and secret only", slices.Collect(maps.Keys(vi.Credentials)))
	}
	sec, _ := base64.StdEncoding.DecodeString(vi.Credentials["secret"])
	n := uint64(1)
	call := func() string {
		n++
		body := "nonce=" + strconv.FormatUint(n, 10)
		r := do(t, nil, "POST", vi.BaseURL+"/0/private/Balance", []byte(body), map[string]string{
			"API-Key": vi.Credentials["api_key"], "API-Sign": KrakenSignature(sec, "/0/private/Balance", strconv.FormatUint(n, 10), []byte(body)),
		})
		return string(r.body)
	}
	for i := range 15 {
		if b := call(); strings.Contains(b, "EAPI") {
			t.Fatalf("call %d: %s", i, b)
		}
	}
	if b := call(); !strings.Contains(b, "EAPI:Rate limit exceeded") {
		t.Fatalf("16th call: %s", b)
	}
	clk.Advance(4 * time.Second) // decays 1.32
	if b := call(); strings.Contains(b, "EAPI") {
		t.Fatalf("after decay: %s", b)
	}
	if _, err := Start(t.Context(), Options{Venues: []string{VenueKraken}, Credentials: map[string]map[string]string{
		VenueKraken: {"tier": "gold"}}}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad tier: %v", err)
	}
}

func mustJSONString(t *testing.T, v any) string { return string(mustJSON(t, v)) }

func FuzzVerifyKraken(f *testing.F) {
	f.Add(krakenVecPath, krakenVecPostdata, krakenVecSign)
	f.Add("/0/private/Balance", "nonce=%zz&&", "")
	sec, _ := base64.StdEncoding.DecodeString(krakenVecSecret)
	f.Fuzz(func(t *testing.T, path, body, sig string) {
		n, err := VerifyKraken(path, []byte(body), http.Header{"Api-Key": {"k"}, "Api-Sign": {sig}}, "k", sec)
		if err == nil && sig != KrakenSignature(sec, path, strconv.FormatUint(n, 10), []byte(body)) {
			t.Fatal("accepted a wrong signature")
		}
	})
}
