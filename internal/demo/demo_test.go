package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs the whole demo: every venue's orders arrive once, the
// revoked token is refused, and the leak sweep finds nothing in the data
// dir (database, WAL, key file, debug log). The demo's own output never
// contains a credential or the token.
func TestDemo(t *testing.T) {
	var out, logs bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &out, Log: &logs})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, v := range venueIDs {
		// Counted after the first bot's run: one order each.
		if res.OrdersByVenu[v.id] != 1 {
			t.Errorf("%s received %d orders, want 1", v.id, res.OrdersByVenu[v.id])
		}
	}
	if res.Denied.Status != http.StatusForbidden || res.PolicyRule != "policy.scalper.max_notional" || !res.Replayed || res.ScalperOrders != 1 {
		t.Errorf("policy step: denied %d %q, replayed %v, %d orders", res.Denied.Status, res.PolicyRule, res.Replayed, res.ScalperOrders)
	}
	if res.Audit.Records < uint64(len(res.Steps)) || res.Audit.Checkpoints == 0 {
		t.Errorf("audit: %+v for %d steps", res.Audit, len(res.Steps))
	}
	if res.Refused.Status != http.StatusUnauthorized {
		t.Errorf("revoked token answered %d", res.Refused.Status)
	}
	if res.FilesChecked < 3 || len(res.Leaks) != 0 {
		t.Errorf("leak sweep: %d files, leaks %v", res.FilesChecked, res.Leaks)
	}
	if !strings.Contains(out.String(), "Done.") {
		t.Errorf("summary incomplete:\n%s", out.String())
	}
	if regexp.MustCompile(`kst_(test|live)_[0-9A-Za-z]{40,}`).MatchString(out.String() + logs.String()) {
		t.Error("the token appears in the demo output or logs")
	}
}

// TestSweepFindsEncodedLeaks: the sweep is not vacuous: a value planted
// in a file in any of its encodings, or in an answer, is found.
func TestSweepFindsEncodedLeaks(t *testing.T) {
	const canary = "CANARY-demo-sweep-7d1e"
	for _, form := range encodings(canary) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f.log"), []byte("x "+form+" y"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, leaks, err := sweep(dir, encodings(canary))
		if err != nil || len(leaks) != 1 {
			t.Errorf("form %q: leaks %v, err %v", form, leaks, err)
		}
	}
	if len(encodings(canary)) < 5 { // URL-safe and escaped forms coincide for this value
		t.Fatalf("encodings: %v", encodings(canary))
	}
	rec := &recorder{next: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{Status: "200 OK", StatusCode: 200, Header: http.Header{"X-Echo": {canary}}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	})}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if _, err := rec.RoundTrip(req); err != nil || !rec.contains(canary) || rec.count() != 1 {
		t.Fatalf("recorder: %v %v %d", err, rec.contains(canary), rec.count())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
