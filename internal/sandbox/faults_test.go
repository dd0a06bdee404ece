package sandbox

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueGeneric}})
	vi := s.Info().Venues[VenueGeneric]
	key, sec := vi.Credentials["api_key"], vi.Credentials["secret"]
	// Fresh connection per request, so the client never retries on a reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	body := []byte(`{"market_id":"MKT-1001","size":"1"}`)
	place := func() (resp, error) {
		return doErr(fresh, "POST", vi.BaseURL+"/api/v1/orders", body, genericHeaders(key, sec, "POST", "/api/v1/orders", body, time.Now()))
	}
	balance := func() resp {
		return do(t, fresh, "GET", vi.BaseURL+"/api/v1/balance", nil, genericHeaders(key, sec, "GET", "/api/v1/balance", nil, time.Now()))
	}
	control := func(method, path, body string) resp {
		return do(t, nil, method, vi.BaseURL+"/-/sandbox/"+path, []byte(body), map[string]string{"Content-Type": "application/json"})
	}
	orders := func() int64 { return s.Stats(VenueGeneric).Orders }

	t.Run("status via http, count 2", func(t *testing.T) {
		if r := control("POST", "faults", `{"kind":"5xx","status":502,"count":2}`); r.status != 204 {
			t.Fatalf("control: %d %s", r.status, r.body)
		}
		for i := range 2 {
			if r := balance(); r.status != 502 {
				t.Fatalf("request %d: %d", i, r.status)
			}
		}
		if r := balance(); r.status != 200 {
			t.Fatalf("after fault: %d", r.status)
		}
	})
	t.Run("delay", func(t *testing.T) {
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultDelay, Delay: Duration(150 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if r := balance(); r.status != 200 || time.Since(start) < 150*time.Millisecond {
			t.Fatalf("status %d after %v", r.status, time.Since(start))
		}
	})
	t.Run("slow process places after the client gave up", func(t *testing.T) {
		n := orders()
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultSlowProcess, Delay: Duration(300 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		// The client gives up long before 300ms.
		quick := &http.Client{Timeout: 50 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		_, err := doErr(quick, "POST", vi.BaseURL+"/api/v1/orders", body, genericHeaders(key, sec, "POST", "/api/v1/orders", body, time.Now()))
		if err == nil {
			t.Fatal("slow fault answered within the client's timeout")
		}
		deadline := time.Now().Add(5 * time.Second)
		for orders() != n+1 {
			if time.Now().After(deadline) {
				t.Fatalf("orders %d, want %d", orders(), n+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		if err := s.InjectFault(VenueGeneric, Fault{Kind: "429", RetryAfter: 3}); err != nil {
			t.Fatal(err)
		}
		if r := balance(); r.status != 429 || r.header.Get("Retry-After") != "3" {
			t.Fatalf("got %d %v", r.status, r.header)
		}
	})
	t.Run("reset does not place", func(t *testing.T) {
		n := orders()
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultReset}); err != nil {
			t.Fatal(err)
		}
		if _, err := place(); err == nil {
			t.Fatal("reset fault answered")
		}
		if orders() != n {
			t.Fatal("reset request placed an order")
		}
	})
	t.Run("reset after read places", func(t *testing.T) {
		n := orders()
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultResetAfterRead}); err != nil {
			t.Fatal(err)
		}
		if _, err := place(); err == nil {
			t.Fatal("reset_after_read fault answered")
		}
		if orders() != n+1 {
			t.Fatal("reset_after_read request did not place its order")
		}
	})
	t.Run("path prefix filter", func(t *testing.T) {
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultStatus, PathPrefix: "/api/v1/orders"}); err != nil {
			t.Fatal(err)
		}
		if r := balance(); r.status != 200 {
			t.Fatalf("unfiltered path faulted: %d", r.status)
		}
		if r, err := place(); err != nil || r.status != 503 {
			t.Fatalf("filtered path: %v %d", err, r.status)
		}
	})
	t.Run("echo credentials", func(t *testing.T) {
		if r := control("POST", "faults", `[{"kind":"echo_credentials"}]`); r.status != 204 {
			t.Fatalf("control: %d %s", r.status, r.body)
		}
		r := balance()
		if r.status != 200 || r.header.Get("X-Sandbox-Echo-X-Api-Key") != key || !strings.Contains(string(r.body), `"sandbox_echo":{`) ||
			!strings.Contains(string(r.body), key) || !strings.Contains(string(r.body), `"balances"`) {
			t.Fatalf("echo: %d %v %s", r.status, r.header, r.body)
		}
		r.json(t) // still valid JSON
		if r := balance(); strings.Contains(string(r.body), key) {
			t.Fatal("echo fault outlived its count")
		}
	})
	t.Run("forever and clear", func(t *testing.T) {
		if err := s.InjectFault(VenueGeneric, Fault{Kind: FaultStatus, Count: -1}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if r := balance(); r.status != 503 {
				t.Fatalf("forever fault: %d", r.status)
			}
		}
		if r := control("GET", "faults", ""); !strings.Contains(string(r.body), `"count":-1`) {
			t.Fatalf("list faults: %s", r.body)
		}
		if r := control("DELETE", "faults", ""); r.status != 204 {
			t.Fatalf("clear: %d", r.status)
		}
		if r := balance(); r.status != 200 {
			t.Fatalf("after clear: %d", r.status)
		}
	})
	t.Run("invalid faults", func(t *testing.T) {
		for _, f := range []string{`{"kind":"explode"}`, `{"kind":"status","status":404}`, `{"kind":"delay"}`, `{`} {
			if r := control("POST", "faults", f); r.status != 400 {
				t.Fatalf("%s: %d", f, r.status)
			}
		}
		if err := s.InjectFault("nasdaq", Fault{Kind: FaultReset}); !errors.Is(err, ErrUnknownVenue) {
			t.Fatalf("unknown venue: %v", err)
		}
	})
	t.Run("stats endpoint", func(t *testing.T) {
		r := control("GET", "stats", "")
		m := r.json(t)
		if m["faults_injected"] != 11.0 || m["orders"] != 2.0 || m["operations"].(map[string]any)["balance"] == nil {
			t.Fatalf("stats: %s", r.body)
		}
		if r := control("GET", "orders", ""); !strings.Contains(string(r.body), `"instrument":"MKT-1001/"`) {
			t.Fatalf("orders: %s", r.body)
		}
	})
}

func TestTLSAndCertLogin(t *testing.T) {
	s := startSandbox(t, Options{TLS: true, Venues: []string{VenueBetfair, VenueStake}})
	info := s.Info()
	vi := info.Venues[VenueBetfair]
	if !strings.HasPrefix(vi.BaseURL, "https://127.0.0.1:") || vi.CAPEM == "" || info.Venues[VenueStake].CAPEM != vi.CAPEM {
		t.Fatalf("info: %+v", vi)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(vi.CAPEM)) {
		t.Fatal("bad CA PEM")
	}
	c := vi.Credentials
	cert, err := tls.X509KeyPair([]byte(c["client_cert"]), []byte(c["client_key"]))
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	}
	certlogin := func(hc *http.Client, pass string) map[string]any {
		form := url.Values{"username": {c["username"]}, "password": {pass}}
		return do(t, hc, "POST", vi.IdentityURL+"/api/certlogin", []byte(form.Encode()), map[string]string{
			"X-Application": c["app_key"], "Content-Type": "application/x-www-form-urlencoded",
		}).json(t)
	}
	tests := []struct {
		name   string
		client *http.Client
		pass   string
		want   string
	}{
		{"with client cert", client(cert), c["password"], "SUCCESS"},
		{"without client cert", client(), c["password"], "CERT_AUTH_REQUIRED"},
		{"cert, wrong password", client(cert), "wrong", "INVALID_USERNAME_OR_PASSWORD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := certlogin(tc.client, tc.pass)
			if m["loginStatus"] != tc.want {
				t.Fatalf("got %v", m)
			}
			if tc.want == "SUCCESS" {
				r := do(t, tc.client, "POST", vi.BaseURL+"/exchange/account/rest/v1.0/getAccountFunds/", []byte(`{}`),
					map[string]string{"X-Application": c["app_key"], "X-Authentication": m["sessionToken"].(string)})
				if r.status != 200 {
					t.Fatalf("session from certlogin refused: %d %s", r.status, r.body)
				}
			}
		})
	}
	t.Run("untrusting client fails", func(t *testing.T) {
		if _, err := doErr(&http.Client{}, "GET", vi.BaseURL+"/", nil, nil); err == nil {
			t.Fatal("TLS handshake succeeded without the CA")
		}
	})
	t.Run("reset over TLS", func(t *testing.T) {
		if err := s.InjectFault(VenueStake, Fault{Kind: FaultReset}); err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
		if _, err := doErr(hc, "POST", info.Venues[VenueStake].BaseURL+"/graphql", []byte(`{"query":"{user{id}}"}`), nil); err == nil {
			t.Fatal("reset fault answered over TLS")
		}
	})
}

func TestCertLoginWithoutTLS(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueBetfair}})
	vi := s.Info().Venues[VenueBetfair]
	c := vi.Credentials
	if _, ok := c["client_cert"]; ok {
		t.Fatal("client cert issued without TLS")
	}
	form := url.Values{"username": {c["username"]}, "password": {c["password"]}}
	m := do(t, nil, "POST", vi.BaseURL+"/api/certlogin", []byte(form.Encode()), map[string]string{
		"X-Application": c["app_key"], "Content-Type": "application/x-www-form-urlencoded",
	}).json(t)
	if m["loginStatus"] != "CERT_AUTH_REQUIRED" {
		t.Fatalf("got %v", m)
	}
}

func TestStartOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr error
	}{
		{"unknown venue", Options{Venues: []string{"nasdaq"}}, ErrUnknownVenue},
		{"credentials for unknown venue", Options{Credentials: map[string]map[string]string{"nasdaq": {}}}, ErrUnknownVenue},
		{"short stake token", Options{Venues: []string{VenueStake}, Credentials: map[string]map[string]string{"stake": {"api_token": "abc"}}}, ErrBadCredentials},
		{"dmarket mismatched public key", Options{Venues: []string{VenueDMarket}, Credentials: map[string]map[string]string{"dmarket": {"public_key": strings.Repeat("0", 64)}}}, ErrBadCredentials},
		{"betfair bad cert", Options{Venues: []string{VenueBetfair}, Credentials: map[string]map[string]string{"betfair": {"client_cert": "nope"}}}, ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(t.Context(), tc.o)
			if err == nil {
				_ = s.Close()
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	t.Run("all venues, info line, close", func(t *testing.T) {
		s := startSandbox(t, Options{})
		var b strings.Builder
		if err := s.WriteInfo(&b); err != nil {
			t.Fatal(err)
		}
		if strings.Count(b.String(), "\n") != 1 || len(s.Info().Venues) != len(AllVenues()) {
			t.Fatalf("info: %s", b.String())
		}
		fields := map[string][]string{
			"stake": {"api_token"}, "dmarket": {"public_key", "secret_key"}, "betfair": {"app_key", "username", "password"},
			"stapi": {"api_key", "client_id", "client_secret"}, "generic": {"api_key", "secret"},
		}
		for v, fs := range fields {
			for _, f := range fs {
				if s.Info().Venues[v].Credentials[f] == "" {
					t.Errorf("%s.%s missing", v, f)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("second close: %v", err)
		}
	})
	t.Run("credentials file", func(t *testing.T) {
		c, err := ReadCredentials(strings.NewReader(`{"generic":{"api_key":"k","secret":"s"}}`))
		if err != nil || c["generic"]["secret"] != "s" {
			t.Fatalf("%v %v", c, err)
		}
		if _, err := ReadCredentials(strings.NewReader(`[1]`)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("bad file: %v", err)
		}
	})
}
