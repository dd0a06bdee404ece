package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/sandbox"
)

// EnvPython names the Python interpreter with requests and httpx for
// TestE2EForwardProxyPython (.ci/run installs Debian's python3-requests
// and python3-httpx and sets it). Unset: python3 on PATH, then
// /usr/bin/python3, whichever imports both.
const EnvPython = "KEYSTILE_SDKTEST_PYTHON"

// pythonWithClients returns an interpreter that imports requests and
// httpx, or "" and why not.
func pythonWithClients() (string, string) {
	cands := []string{"python3", "/usr/bin/python3"}
	if p := os.Getenv(EnvPython); p != "" {
		cands = []string{p}
	}
	why := "no python3"
	for _, c := range cands {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, p, "-c", "import requests, httpx").CombinedOutput() // #nosec G204 -- a fixed interpreter check
		cancel()
		if err == nil {
			return p, ""
		}
		why = p + ": " + strings.TrimSpace(string(out))
	}
	return "", why
}

// pyResult is one line of sdktest/python/proxy_suite.py's output.
type pyResult struct {
	Lib    string `json:"lib"`
	URL    string `json:"url"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Error  string `json:"error"`
}

// TestE2EForwardProxyPython: Python's requests (under python-binance,
// pybit, krakenex, coinbase-advanced-py) and httpx (under python-okx),
// unmodified and configured only by the README's environment variables
// (HTTPS_PROXY with the token; REQUESTS_CA_BUNDLE / SSL_CERT_FILE with
// the exported CA), send each exchange's public read, signed read, order
// and a policy-denied order through the forward proxy, shaped as those
// SDKs shape them (placeholder key, their own timestamp and signature).
// The venues answer keystile's signatures; the denied orders get 403 in
// the venue's format and never reach it; no placeholder or token reaches
// a venue.
func TestE2EForwardProxyPython(t *testing.T) {
	py, why := pythonWithClients()
	if py == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no Python with requests and httpx (%s): apt-get install -y python3-requests python3-httpx", why)
		}
		t.Skipf("no Python with requests and httpx (%s): apt-get install python3-requests python3-httpx", why)
	}
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: fwdPolicy, Received: rec.add})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd", CIDRs: []string{"127.0.0.1/32", "::1/128"}}).Token
	_, caPEM := h.caPool(t)
	caFile := filepath.Join(t.TempDir(), "keystile-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	type step struct {
		fc   fwdCase
		kind string // public, read, order, denied
	}
	type pyRequest struct {
		Lib     string            `json:"lib"`
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	var steps []step
	var plan []pyRequest
	for _, fc := range fwdCases("py") {
		lib := "requests"
		if fc.id == sandbox.VenueOKX {
			lib = "httpx"
		}
		for kind, r := range map[string]botRequest{"public": fc.public, "read": fc.read, "order": fc.order, "denied": fc.denied} {
			path, body, hdr := sdkShape("placeholder-key", fc.id, r)
			if kind == "public" {
				hdr = http.Header{}
			}
			hm := map[string]string{}
			for k := range hdr {
				hm[k] = hdr.Get(k)
			}
			steps = append(steps, step{fc, kind})
			plan = append(plan, pyRequest{Lib: lib, Method: r.method, URL: h.info.Venues[fc.id].BaseURL + path, Headers: hm, Body: body})
		}
	}
	in, err := json.Marshal(map[string]any{"requests": plan})
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../sdktest/python/proxy_suite.py")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script) // #nosec G204 -- the test's own script
	// As the README writes it: the token as the proxy password (requests
	// sends no Proxy-Authorization for a URL with a user alone).
	proxyURL := "http://keystile:" + tok + "@" + h.srv.ProxyAddr()
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxyURL, "https_proxy="+proxyURL, "NO_PROXY=", "no_proxy=",
		"REQUESTS_CA_BUNDLE="+caFile, "SSL_CERT_FILE="+caFile, "CURL_CA_BUNDLE=")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	ordersBefore := map[string]int{}
	for _, fc := range fwdCases("py") {
		ordersBefore[fc.id] = len(h.sb.Orders(fc.id))
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	var res []pyResult
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		var r pyResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("the suite printed %q: %v", line, err)
		}
		res = append(res, r)
	}
	if len(res) != len(plan)+1 || res[len(res)-1].Lib != "versions" {
		t.Fatalf("the suite answered %d lines for %d requests:\n%s\n%s", len(res), len(plan), out, stderr.String())
	}
	t.Logf("clients: %s", res[len(res)-1].Body)
	for i, s := range steps {
		r := res[i]
		if r.Error != "" {
			t.Errorf("%s %s (%s): %s", s.fc.id, s.kind, r.Lib, r.Error)
			continue
		}
		switch s.kind {
		case "denied":
			if r.Status != http.StatusForbidden || !s.fc.deniedShape([]byte(r.Body)) || !strings.Contains(r.Body, "policy.fwd.max_quantity") {
				t.Errorf("%s denied order (%s): %d %.300s", s.fc.id, r.Lib, r.Status, r.Body)
			}
		default:
			if r.Status != http.StatusOK || (s.fc.id == sandbox.VenueKraken && strings.Contains(r.Body, `"error":["E`)) {
				t.Errorf("%s %s (%s): %d %.300s", s.fc.id, s.kind, r.Lib, r.Status, r.Body)
			}
		}
	}
	// One order per exchange reached it (the denied one did not), and
	// none of the SDK's placeholders or the token did.
	for _, fc := range fwdCases("py") {
		if n := len(h.sb.Orders(fc.id)) - ordersBefore[fc.id]; n != 1 {
			t.Errorf("%s received %d orders, want 1", fc.id, n)
		}
		got := rec.since(fc.id, 0)
		if len(got) < 3 {
			t.Errorf("%s received %d requests, want the public read, the signed read and the order", fc.id, len(got))
		}
		for _, x := range got {
			raw := rawReceived(x)
			if strings.Contains(raw, tok) || strings.Contains(raw, "placeholder") || strings.Contains(raw, "cGxhY2Vob2xkZXI=") {
				t.Errorf("%s: a placeholder or the token reached the venue:\n%s", fc.id, raw)
			}
		}
	}
	if got := rec.since(sandbox.VenueBinance, 0); len(got) > 0 && got[len(got)-1].Header.Get("X-Mbx-Apikey") != h.info.Venues[sandbox.VenueBinance].Credentials["api_key"] {
		t.Error("Binance did not receive the vault's API key")
	}
	if !strings.Contains(h.log.String(), `"rule":"proxy.tunnel"`) {
		t.Error("no proxy.tunnel event was logged: the clients did not use the proxy")
	}

	// What the README warns of: with the token as the proxy user alone,
	// requests sends no Proxy-Authorization (keystile answers 407); httpx
	// does send it.
	one := func(lib string) pyResult {
		t.Helper()
		in, err := json.Marshal(map[string]any{"requests": []pyRequest{{Lib: lib, Method: "GET", Headers: map[string]string{},
			URL: h.info.Venues[sandbox.VenueBinance].BaseURL + "/api/v3/ticker/price?symbol=BTCUSDT"}}})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, py, script) // #nosec G204 -- the test's own script
		userOnly := "http://" + tok + "@" + h.srv.ProxyAddr()
		cmd.Env = append(os.Environ(), "HTTPS_PROXY="+userOnly, "https_proxy="+userOnly, "NO_PROXY=", "no_proxy=",
			"REQUESTS_CA_BUNDLE="+caFile, "SSL_CERT_FILE="+caFile, "CURL_CA_BUNDLE=")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		var r pyResult
		if err := json.Unmarshal([]byte(strings.SplitN(string(out), "\n", 2)[0]), &r); err != nil {
			t.Fatalf("%s printed %q: %v", script, out, err)
		}
		return r
	}
	if r := one("requests"); r.Error == "" || !strings.Contains(r.Error, "407") {
		t.Errorf("requests with the token as proxy user alone: %+v, want a 407 proxy error (README)", r)
	}
	if r := one("httpx"); r.Error != "" || r.Status != http.StatusOK {
		t.Errorf("httpx with the token as proxy user alone: %+v, want 200", r)
	}
}
