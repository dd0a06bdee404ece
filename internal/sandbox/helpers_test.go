package sandbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startSandbox(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

// do sends a request with the given headers and returns the whole response.
func do(t *testing.T, c *http.Client, method, url string, body []byte, h map[string]string) resp {
	t.Helper()
	r, err := doErr(c, method, url, body, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func doErr(c *http.Client, method, url string, body []byte, h map[string]string) (resp, error) {
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return resp{}, err
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}, err
}

// genericHeaders signs a BetPro request the way the package doc describes.
func genericHeaders(key, sec, method, target string, body []byte, now time.Time) map[string]string {
	path, query, _ := strings.Cut(target, "?")
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	return map[string]string{
		"X-API-KEY": key, "X-TIMESTAMP": ts,
		"X-SIGNATURE":  GenericSignature([]byte(sec), ts, method, path, query, body),
		"Content-Type": "application/json",
	}
}

// dmarketHeaders signs a DMarket request with the 128-hex secret key.
func dmarketHeaders(t *testing.T, pubHex, secHex, method, decodedPath, rawQuery string, body []byte, now time.Time) map[string]string {
	t.Helper()
	priv := ed25519.PrivateKey(mustHex(t, secHex))
	date := strconv.FormatInt(now.Unix(), 10)
	sig := ed25519.Sign(priv, DMarketSignedString(method, decodedPath, rawQuery, body, date))
	return map[string]string{
		"X-Api-Key": pubHex, "X-Sign-Date": date, "X-Request-Sign": "dmar ed25519 " + hex.EncodeToString(sig),
		"Content-Type": "application/json",
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
