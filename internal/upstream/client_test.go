package upstream

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestClientRedirects(t *testing.T) {
	var otherHits atomic.Int64
	other, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
	}))
	var seen atomic.Value // headers of the last /final request
	var finalHits atomic.Int64
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cross":
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/post307":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			finalHits.Add(1)
			seen.Store(r.Header.Clone())
			_, _ = io.WriteString(w, "final")
		}
	}))
	// Both hosts are allowed: the origin check alone must stop the redirect.
	tr := newTransport(t, srv, Options{Hosts: []string{hostOf(srv), hostOf(other)}})
	c := tr.Client()

	withCreds := func(req *http.Request) *http.Request {
		req.Header.Set("Authorization", "Bearer "+canary)
		req.Header.Set("X-Application", canary)
		req.Header.Set("Cookie", "ssoid="+canary)
		req.Header.Set("Accept", "application/json")
		return req
	}

	t.Run("cross host refused", func(t *testing.T) {
		resp, err := c.Do(withCreds(mustReq(t, testCtx(t), "GET", srv.URL+"/cross", nil)))
		if err == nil {
			_ = resp.Body.Close()
		}
		if !errors.Is(err, ErrRedirectNotAllowed) {
			t.Fatalf("err = %v, want ErrRedirectNotAllowed", err)
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("error leaks canary: %v", err)
		}
		if otherHits.Load() != 0 {
			t.Fatal("redirect to another host was followed")
		}
	})
	t.Run("same origin drops credentials", func(t *testing.T) {
		resp, err := c.Do(withCreds(mustReq(t, testCtx(t), "GET", srv.URL+"/same", nil)))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		h, _ := seen.Load().(http.Header)
		for k, v := range h {
			if strings.Contains(strings.Join(v, ","), canary) {
				t.Fatalf("header %s carried the credential over the redirect", k)
			}
		}
		if h.Get("Accept") != "application/json" {
			t.Fatalf("Accept not kept: %v", h)
		}
	})
	t.Run("body re-send refused", func(t *testing.T) {
		before := finalHits.Load()
		resp, err := c.Do(mustReq(t, testCtx(t), "POST", srv.URL+"/post307", []byte("password="+canary)))
		if err == nil {
			_ = resp.Body.Close()
		}
		if !errors.Is(err, ErrRedirectNotAllowed) || finalHits.Load() != before {
			t.Fatalf("err = %v, final hits +%d; want refusal and no re-send", err, finalHits.Load()-before)
		}
	})
	t.Run("redirect loop bounded", func(t *testing.T) {
		resp, err := c.Do(mustReq(t, testCtx(t), "GET", srv.URL+"/loop", nil))
		if err == nil {
			_ = resp.Body.Close()
		}
		if !errors.Is(err, ErrRedirectNotAllowed) {
			t.Fatalf("err = %v, want ErrRedirectNotAllowed", err)
		}
	})
	t.Run("round tripper never follows", func(t *testing.T) {
		resp, err := tr.RoundTrip(mustReq(t, testCtx(t), "GET", srv.URL+"/cross", nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusFound || otherHits.Load() != 0 {
			t.Fatalf("status %d, other hits %d", resp.StatusCode, otherHits.Load())
		}
	})
}
