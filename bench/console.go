package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Console polling (keystile-console): one operator logged in to the web
// console, with the overview open. Like the browser tab, it fetches the
// live fragment every 2 s and loads the whole overview every 10 s.
const (
	consoleLiveEvery = 2 * time.Second
	consolePageEvery = 10 * time.Second
)

func (e *runEnv) setConsoleToken(tok string) {
	d := sha256.Sum256([]byte(tok))
	e.consoleToken, e.consoleDigest = tok, hex.EncodeToString(d[:])
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// pollConsole logs in to the console at base and polls it until the
// returned stop is called; stop reports failures in the log.
func pollConsole(ctx context.Context, env *runEnv, base string) (stop func(), note string, err error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, live bool) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, "", err
		}
		if live {
			req.Header.Set("Keystile-Live", "1")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b), err
	}
	var page string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var st int
		st, page, err = get("/login", false)
		if err == nil && st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("console: log-in page: %d %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := consoleCSRF.FindStringSubmatch(page)
	if m == nil {
		return nil, "", errors.New("console: no CSRF token on the log-in page")
	}
	form := url.Values{"csrf": {m[1]}, "token": {env.consoleToken}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("console: log-in: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, "", fmt.Errorf("console: log-in answered %d", resp.StatusCode)
	}
	pctx, cancel := context.WithCancel(ctx)
	var polls, fails atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		live, full := time.NewTicker(consoleLiveEvery), time.NewTicker(consolePageEvery)
		defer live.Stop()
		defer full.Stop()
		for {
			path, isLive := "/live/overview", true
			select {
			case <-pctx.Done():
				return
			case <-live.C:
			case <-full.C:
				path, isLive = "/", false
			}
			if st, _, err := get(path, isLive); err != nil || st != http.StatusOK {
				fails.Add(1)
			}
			polls.Add(1)
		}
	}()
	stop = func() {
		cancel()
		wg.Wait()
		env.logf("console poller: %d requests, %d failed", polls.Load(), fails.Load())
	}
	return stop, fmt.Sprintf("console on: one logged-in operator polling /live/overview every %s and loading the overview every %s (as an open browser tab)", consoleLiveEvery, consolePageEvery), nil
}
