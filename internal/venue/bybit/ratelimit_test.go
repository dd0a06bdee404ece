package bybit

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// TestObserveAnswer: Bybit's rate limiting as its answers state it. A
// retCode 10006 without usage headers blocks its operation until the reset
// time (1 s without one); a 403 "access too frequent" blocks every
// operation for 10 minutes; other answers, and the same digits elsewhere
// in an answer, change nothing.
func TestObserveAnswer(t *testing.T) {
	t0 := time.UnixMilli(1700000000000)
	req := func(method, path string) *http.Request {
		return &http.Request{Method: method, URL: &url.URL{Path: path}}
	}
	create := req("POST", "/v5/order/create")
	reset := strconv.FormatInt(t0.Add(2500*time.Millisecond).UnixMilli(), 10)
	tests := []struct {
		name   string
		status int
		header http.Header
		r      *http.Request
		body   string
		op     string
		wait   time.Duration // 0: allowed
	}{
		{"10006 with a reset time", 200, http.Header{HeaderLimitReset: {reset}}, create, `{"retCode":10006,"retMsg":"Too many visits!","result":{},"time":1700000000000}`, venue.OpOrderPlace, 2500 * time.Millisecond},
		{"10006 blocks only its operation", 200, nil, create, `{"retCode":10006,"retMsg":"Too many visits!"}`, venue.OpAccountRead, 0},
		{"10006 without a reset time", 200, nil, create, `{"retCode":10006,"retMsg":"Too many visits!"}`, venue.OpOrderPlace, time.Second},
		{"10006 of an unknown endpoint blocks all", 200, nil, req("GET", "/v5/nosuch"), `{"retCode":10006}`, venue.OpAccountRead, time.Second},
		{"a reset time past the cap", 200, http.Header{HeaderLimitReset: {strconv.FormatInt(t0.Add(time.Hour).UnixMilli(), 10)}}, create, `{"retCode":10006}`, venue.OpOrderPlace, maxBlock},
		{"10006 as a string", 200, nil, create, `{"retCode":"10006","retMsg":"Too many visits!"}`, venue.OpOrderPlace, time.Second},
		{"10006 in exponent form", 200, nil, create, `{"retCode":1.0006e4}`, venue.OpOrderPlace, time.Second},
		{"10006 after spaces", 200, nil, create, `{"retCode" : 10006}`, venue.OpOrderPlace, time.Second},
		{"success", 200, nil, create, `{"retCode":0,"retMsg":"OK","result":{"orderId":"10006"}}`, venue.OpOrderPlace, 0},
		{"the code as a string elsewhere", 200, nil, create, `{"retCode":10001,"retMsg":"qty 10006 invalid"}`, venue.OpOrderPlace, 0},
		{"not JSON", 200, nil, create, `10006`, venue.OpOrderPlace, 0},
		{"IP ban", 403, nil, req("GET", "/v5/market/tickers"), `access too frequent`, venue.OpAccountRead, ipBan},
		{"IP ban, another case", 403, nil, create, `{"error":"Access Too Frequent"}`, venue.OpOrderPlace, ipBan},
		{"another 403", 403, nil, create, `Forbidden`, venue.OpOrderPlace, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVenue(t, "k", "s", nil, 0)
			resp := &http.Response{StatusCode: tt.status, Header: tt.header, Request: tt.r}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			v.Observe(resp, t0)
			if d := v.ObserveAnswer(resp, []byte(tt.body), t0); d != 0 {
				t.Errorf("ObserveAnswer = %v, want 0 (nothing shared)", d)
			}
			wait, ok := v.Allow(tt.op, t0)
			if ok != (tt.wait == 0) || wait != tt.wait {
				t.Fatalf("Allow = %v, %v; want a wait of %v", wait, ok, tt.wait)
			}
			if tt.wait > 0 {
				if _, ok := v.Allow(tt.op, t0.Add(tt.wait)); !ok {
					t.Fatalf("still refused after %v", tt.wait)
				}
			}
		})
	}
	v := newVenue(t, "k", "s", nil, 0)
	if d := v.ObserveAnswer(nil, []byte(`{"retCode":10006}`), t0); d != 0 {
		t.Fatal("nil response")
	}
}

// FuzzObserveAnswer: any answer is read without panicking, nothing is
// shared, and no back-off is longer than the 10-minute cap.
func FuzzObserveAnswer(f *testing.F) {
	for _, s := range []string{`{"retCode":10006,"retMsg":"Too many visits!"}`, `{"retCode":"10006"}`, `access too frequent`, `{"retCode":0}`, `10006`} {
		f.Add(200, s, "")
		f.Add(403, s, "1700000002500")
	}
	t0 := time.UnixMilli(1700000000000)
	f.Fuzz(func(t *testing.T, status int, body, reset string) {
		v := newVenue(t, "k", "s", nil, 0)
		resp := &http.Response{StatusCode: status, Header: http.Header{HeaderLimitReset: {reset}},
			Request: &http.Request{Method: "POST", URL: &url.URL{Path: "/v5/order/create"}}}
		if d := v.ObserveAnswer(resp, []byte(body), t0); d != 0 {
			t.Fatalf("shared %v", d)
		}
		for _, op := range []string{venue.OpAccountRead, venue.OpOrderPlace} {
			if wait, ok := v.Allow(op, t0); !ok && (wait <= 0 || wait > maxBlock) {
				t.Fatalf("%s: wait %v", op, wait)
			}
		}
	})
}
