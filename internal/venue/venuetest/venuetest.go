// Package venuetest holds checks shared by the venue packages' tests: each
// runs a venue implementation against its sandbox emulator over real HTTP
// on loopback. It is imported by tests only.
package venuetest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
)

// NoCredentials fails every use: for venue code that must not open a
// credential (public market data).
func NoCredentials(context.Context, func(venue.Credential) error) error {
	return errors.New("venuetest: this request must not open a credential")
}

// Ticker reads instrument's reference price from the sandbox emulator of
// sandboxVenue through ref's unsigned ticker request, and checks it is
// want and that the emulator saw no authentication failure.
func Ticker(t *testing.T, sandboxVenue string, ref venue.PriceReference, instrument, want string) {
	t.Helper()
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandboxVenue}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	method, path, query := ref.TickerRequest(instrument)
	target := s.Info().Venues[sandboxVenue].BaseURL + path
	if query != "" {
		target += "?" + query
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ticker %s: status %d: %s", target, resp.StatusCode, body)
	}
	price, err := ref.ParseTicker(instrument, body)
	if err != nil || price != want {
		t.Fatalf("ParseTicker = %q, %v; want %s", price, err, want)
	}
	if st := s.Stats(sandboxVenue); st.AuthFailures != 0 {
		t.Errorf("auth failures: %d", st.AuthFailures)
	}
}

// ParseTickerRefuses checks that ref parses good and refuses every body
// in bad for instrument.
func ParseTickerRefuses(t *testing.T, ref venue.PriceReference, instrument, good string, bad []string) {
	t.Helper()
	if p, err := ref.ParseTicker(instrument, []byte(good)); err != nil || p == "" {
		t.Fatalf("good body: %q, %v", p, err)
	}
	for _, body := range bad {
		if p, err := ref.ParseTicker(instrument, []byte(body)); err == nil {
			t.Errorf("ParseTicker(%s) = %q, want an error", body, p)
		}
	}
}

// FuzzTicker is the body of a FuzzParseTicker target: a price comes with
// no error or an error with no price, and the ticker request is a GET with
// a path and a query.
func FuzzTicker(t *testing.T, ref venue.PriceReference, instrument string, body []byte) {
	p, err := ref.ParseTicker(instrument, body)
	if err == nil && p == "" {
		t.Fatal("empty price without an error")
	}
	m, path, q := ref.TickerRequest(instrument)
	if m != http.MethodGet || path == "" || q == "" {
		t.Fatalf("TickerRequest(%q) = %q %q %q", instrument, m, path, q)
	}
}

// OrderVenue is a venue that reads orders, gives them client order ids and
// looks them up.
type OrderVenue interface {
	venue.Venue
	venue.Normalizer
	venue.ClientOrderIDs
	venue.OrderLookup
}

// Send signs r with v (as the gateway would) and sends it below base,
// returning the venue's status and body.
func Send(t *testing.T, v venue.Venue, base string, r *venue.Request) (int, []byte) {
	t.Helper()
	req, err := venue.NewHTTPRequest(t.Context(), base, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Authenticate(t.Context(), req, r.Body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Lookup runs v's lookup of the order orig placed (normalized as o) under
// cid, checking every lookup request is an order.read, and combines the
// answers as the gateway does.
func Lookup(t *testing.T, v OrderVenue, base string, orig *venue.Request, o *venue.Order, cid string) (string, bool, error) {
	t.Helper()
	reqs, err := v.LookupRequests(orig, o, cid)
	if err != nil {
		t.Fatal(err)
	}
	var res []venue.LookupResult
	for _, lr := range reqs {
		if op, _ := v.Classify(lr); op != venue.OpOrderRead {
			t.Fatalf("lookup %s %s is %q", lr.Method, lr.Path, op)
		}
		status, body := Send(t, v, base, lr)
		id, found, err := v.Found(cid, status, body)
		res = append(res, venue.LookupResult{VenueOrderID: id, Found: found, Err: err})
	}
	return venue.LookupOutcome(res)
}

// SetClientOrderIDRoundTrip is the body of a FuzzSetClientOrderID target:
// for any request Normalize reads as an order, SetClientOrderID gives one
// Normalize reads with the new id and the same other fields.
func SetClientOrderIDRoundTrip(t *testing.T, v interface {
	venue.Normalizer
	venue.ClientOrderIDs
}, r *venue.Request, seed []byte) {
	t.Helper()
	before, err := v.Normalize(r)
	var s [16]byte
	copy(s[:], seed)
	id := v.NewClientOrderID(s)
	if v.SetClientOrderID(r, id) != nil || err != nil || before == nil {
		return
	}
	after, err := v.Normalize(r)
	if err != nil || after == nil || after.ClientOrderID != id {
		t.Fatalf("after %q %q: %+v %v", r.RawQuery, r.Body, after, err)
	}
	before.ClientOrderID = id
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("fields changed: %+v -> %+v", before, after)
	}
}

// IDSetter is a venue that reads orders and sets client order ids.
type IDSetter interface {
	venue.Normalizer
	venue.ClientOrderIDs
}

// SetClientOrderIDCase is one row of a venue's SetClientOrderID table: a
// POST to Path with Query and Body must be refused (Err), or come out with
// WantQuery and WantBody. An alias of an unnamed struct type, so tables
// can use short unkeyed rows (vet flags those for imported named types).
type SetClientOrderIDCase = struct {
	Name, Path, Query, Body string
	WantQuery, WantBody     string
	Err                     bool
}

// JSONCase is a row of a JSON-body venue's table (no query string).
type JSONCase = struct {
	Name, Path, Body, Want string
	Err                    bool
}

// RunSetClientOrderID sets id in each case's request; an accepted request
// must come out as wanted and Normalize must read id back from it.
func RunSetClientOrderID(t *testing.T, v IDSetter, id string, cases []SetClientOrderIDCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			r := &venue.Request{Method: "POST", Path: tt.Path, RawQuery: tt.Query, Body: []byte(tt.Body)}
			err := v.SetClientOrderID(r, id)
			if tt.Err {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.RawQuery != tt.WantQuery || string(r.Body) != tt.WantBody {
				t.Fatalf("query %q body %q", r.RawQuery, r.Body)
			}
			if o, err := v.Normalize(r); err != nil || o.ClientOrderID != id {
				t.Fatalf("Normalize = %+v, %v", o, err)
			}
		})
	}
}

// RunSetClientOrderIDJSON is RunSetClientOrderID for JSON-body rows.
func RunSetClientOrderIDJSON(t *testing.T, v IDSetter, id string, cases []JSONCase) {
	t.Helper()
	all := make([]SetClientOrderIDCase, 0, len(cases))
	for _, c := range cases {
		all = append(all, SetClientOrderIDCase{Name: c.Name, Path: c.Path, Body: c.Body, WantBody: c.Want, Err: c.Err})
	}
	RunSetClientOrderID(t, v, id, all)
}

// PublicUnsigned checks that v forwards a public market-data request as
// anyone may send it: Authenticate opens no credential (v must be built
// with NoCredentials) and leaves none of v's credential headers, nor the
// SDK's headers and query parameters named in sdkHeader and sdkParams
// (which the request carries on entry). It also checks that private, a
// request needing authentication, does open the credential.
func PublicUnsigned(t *testing.T, v venue.Venue, public, private string, sdkHeader map[string]string, sdkParams ...string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, public, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, val := range sdkHeader {
		req.Header.Set(k, val)
	}
	if err := v.Authenticate(context.Background(), req, nil); err != nil {
		t.Fatalf("public %s: %v (a public read must not open the credential)", public, err)
	}
	for _, h := range v.CredentialHeaders() {
		if req.Header.Get(h) != "" && h != "X-Simulated-Trading" {
			t.Errorf("public %s went out with %s", public, h)
		}
	}
	for k := range sdkHeader {
		if req.Header.Get(k) != "" {
			t.Errorf("public %s kept the SDK's %s", public, k)
		}
	}
	q := req.URL.Query()
	for _, p := range sdkParams {
		if q.Has(p) {
			t.Errorf("public %s kept the SDK's %s parameter", public, p)
		}
	}
	priv, err := http.NewRequest(http.MethodGet, private, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Authenticate(context.Background(), priv, nil); err == nil {
		t.Errorf("private %s was forwarded without opening the credential", private)
	}
}
