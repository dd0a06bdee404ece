package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keystile/keystile/internal/cli"
)

// The bench binary re-executes itself in a role named by roleEnv, so that
// each system under test is a process of its own.
const (
	roleEnv     = "KEYSTILE_BENCH_ROLE"
	certEnv     = "KEYSTILE_BENCH_CERT"       // upstream: certificate PEM file
	keyEnv      = "KEYSTILE_BENCH_KEY"        // upstream: private key PEM file
	apiKeyEnv   = "KEYSTILE_BENCH_API_KEY"    // #nosec G101 -- an env var name; upstream: the Binance API key keystile must send
	secretEnv   = "KEYSTILE_BENCH_SECRET"     // #nosec G101 -- an env var name; upstream: the HMAC secret keystile signs with
	targetEnv   = "KEYSTILE_BENCH_UPSTREAM"   // proxy: upstream base URL
	caEnv       = "KEYSTILE_BENCH_CA"         // proxy: CA file trusted for the upstream
	poolEnv     = "KEYSTILE_BENCH_POOL"       // proxy: idle connections kept per host
	profEnv     = "KEYSTILE_BENCH_CPUPROFILE" // keystile role: write a CPU profile of the process here
	roleUp      = "upstream"
	roleProxy   = "proxy"
	roleKS      = "keystile" // this binary as the keystile CLI (cli.Main), for tests
	readyPrefix = "ready "
)

// runRole runs this process as a role and returns its exit code.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch role {
	case roleUp:
		err = runUpstream(ctx)
	case roleProxy:
		err = runProxy(ctx)
	case roleKS:
		if p := os.Getenv(profEnv); p != "" {
			stopProf, err := startCPUProfile(p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
				return 1
			}
			defer stopProf()
		}
		return cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// startCPUProfile profiles this process into path until the returned
// function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path) // #nosec G304 G703 -- a path the parent bench chose
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// serveUntilDone serves srv on a loopback port, prints the ready line
// with its address, and returns when ctx ends or stdin closes (the parent
// went away).
func serveUntilDone(ctx context.Context, srv *http.Server, tlsOn bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	fmt.Printf("%s%s\n", readyPrefix, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// upstream answers the two Binance routes the benchmark uses with small
// fixed JSON, checks keystile's signatures when present, and counts.
type upstream struct {
	apiKey, secret []byte
	orders         atomic.Int64
	signed         atomic.Int64
	badSig         atomic.Int64
	requests       atomic.Int64
	lookups        atomic.Int64
	recent         recentOrders
}

// recentOrders remembers the answers to the last recentMax orders by
// client order id, for lookups.
type recentOrders struct {
	mu   sync.Mutex
	m    map[string]string
	ring []string
	next int
}

const recentMax = 1 << 14

func (o *recentOrders) put(coid, answer string) {
	if coid == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m, o.ring = make(map[string]string, recentMax), make([]string, recentMax)
	}
	if old := o.ring[o.next]; old != "" {
		delete(o.m, old)
	}
	o.ring[o.next], o.next = coid, (o.next+1)%recentMax
	o.m[coid] = answer
}

func (o *recentOrders) get(coid string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, ok := o.m[coid]
	return a, ok
}

// upstreamStats is the answer of GET /-/stats.
type upstreamStats struct {
	Requests      int64 `json:"requests"`
	Orders        int64 `json:"orders"`
	Signed        int64 `json:"signed"`
	BadSignatures int64 `json:"bad_signatures"`
	Lookups       int64 `json:"lookups"`
}

const tickerBody = `{"symbol":"BTCUSDT","price":"60000.00000000"}`

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v3/ticker/price":
		_, _ = io.WriteString(w, tickerBody)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v3/time":
		_, _ = fmt.Fprintf(w, `{"serverTime":%d}`, time.Now().UnixMilli())
	case r.Method == http.MethodGet && r.URL.Path == "/api/v3/order":
		// An order lookup by client order id (keystile's recovery of an
		// order whose outcome it does not know, e.g. a replay on another
		// replica before the first one's answer was stored).
		u.lookups.Add(1)
		if body, ok := u.recent.get(r.URL.Query().Get("origClientOrderId")); ok {
			_, _ = io.WriteString(w, body)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"code":-2013,"msg":"Order does not exist."}`)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v3/order":
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		u.checkSignature(r, body)
		id := u.orders.Add(1)
		form, _ := url.ParseQuery(string(body))
		q := r.URL.Query()
		coid := q.Get("newClientOrderId")
		if coid == "" {
			coid = form.Get("newClientOrderId")
		}
		if len(coid) > 36 {
			coid = coid[:36]
		}
		ans := fmt.Sprintf(`{"symbol":"BTCUSDT","orderId":%d,"orderListId":-1,"clientOrderId":%q,"transactTime":%d,"status":"NEW"}`,
			id, coid, time.Now().UnixMilli())
		u.recent.put(coid, ans)
		// #nosec G705 -- a JSON answer (application/json, %q-quoted) of a loopback test server
		_, _ = io.WriteString(w, ans)
	case r.Method == http.MethodGet && r.URL.Path == "/-/stats":
		_ = json.NewEncoder(w).Encode(upstreamStats{Requests: u.requests.Load(), Orders: u.orders.Load(),
			Signed: u.signed.Load(), BadSignatures: u.badSig.Load(), Lookups: u.lookups.Load()})
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"code":-1,"msg":"not found"}`)
	}
}

// checkSignature verifies a Binance HMAC-SHA256 signature when the request
// carries one: hex(HMAC(secret, query-before-signature + body)) and the
// expected X-MBX-APIKEY.
func (u *upstream) checkSignature(r *http.Request, body []byte) {
	raw := r.URL.RawQuery
	i := strings.Index(raw, "signature=")
	if i < 0 {
		return
	}
	u.signed.Add(1)
	payload := strings.TrimSuffix(raw[:i], "&")
	m := hmac.New(sha256.New, u.secret)
	m.Write([]byte(payload))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	got := raw[i+len("signature="):]
	if j := strings.IndexByte(got, '&'); j >= 0 {
		got = got[:j]
	}
	if !hmac.Equal([]byte(want), []byte(got)) || !hmac.Equal([]byte(r.Header.Get("X-MBX-APIKEY")), u.apiKey) {
		u.badSig.Add(1)
	}
}

func runUpstream(ctx context.Context) error {
	cert, err := tls.LoadX509KeyPair(os.Getenv(certEnv), os.Getenv(keyEnv))
	if err != nil {
		return err
	}
	u := &upstream{apiKey: []byte(os.Getenv(apiKeyEnv)), secret: []byte(os.Getenv(secretEnv))}
	srv := &http.Server{
		Handler:           u,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only, as nginx speaks upstream
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       10 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	return serveUntilDone(ctx, srv, true)
}

// newUpstreamTransport is the tuned client transport the bare proxy and the
// load generator's direct mode use: a keep-alive pool at least as large as
// the concurrency, TLS session resumption, HTTP/1.1.
func newUpstreamTransport(caFile string, pool int) (*http.Transport, error) {
	pem, err := os.ReadFile(caFile) // #nosec G304 G703 -- the bench's own CA file in its temp dir
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in CA file")
	}
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(pool)},
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   pool,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}, nil
}

func runProxy(ctx context.Context) error {
	target, err := url.Parse(os.Getenv(targetEnv))
	if err != nil || target.Scheme != "https" {
		return fmt.Errorf("bad %s", targetEnv)
	}
	pool, err := strconv.Atoi(os.Getenv(poolEnv))
	if err != nil || pool < 1 {
		return fmt.Errorf("bad %s", poolEnv)
	}
	tr, err := newUpstreamTransport(os.Getenv(caEnv), pool)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute, ErrorLog: log.New(io.Discard, "", 0)}
	return serveUntilDone(ctx, srv, false)
}

// child is a process the bench started. Its stdout and stderr go to a log
// file in the run's temp dir; stop ends it and its process group.
type child struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// childSpec describes a process to start.
type childSpec struct {
	name  string
	path  string
	args  []string
	env   []string // added to the bench's own environment
	dir   string   // where the log file goes
	ready bool     // wait for a "ready ADDR" line on stdout and return ADDR
}

// startChild starts s. With s.ready it waits (bounded) for the ready line
// and returns the address it names.
func startChild(ctx context.Context, s childSpec) (*child, string, error) {
	logPath := filepath.Join(s.dir, s.name+".log")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- our temp dir
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(s.path, s.args...) // #nosec G204 -- the bench's own binary, nginx from PATH, or the keystile it built; arguments are ours
	cmd.Env = append(os.Environ(), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = lf
	c := &child{name: s.name, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{})}
	var out io.ReadCloser
	if s.ready {
		if out, err = cmd.StdoutPipe(); err != nil {
			_ = lf.Close()
			return nil, "", err
		}
	} else {
		cmd.Stdout = lf
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		_ = lf.Close()
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, "", fmt.Errorf("start %s: %w", s.name, err)
	}
	if !s.ready {
		go c.wait()
		return c, "", nil
	}
	addrc := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		if err == nil && strings.HasPrefix(line, readyPrefix) {
			addrc <- strings.TrimSpace(strings.TrimPrefix(line, readyPrefix))
		} else {
			close(addrc)
		}
		_, _ = io.Copy(lf, br)
		c.wait()
	}()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case addr, ok := <-addrc:
		if ok {
			return c, addr, nil
		}
	case <-t.C:
	case <-ctx.Done():
	}
	c.stop()
	return nil, "", fmt.Errorf("%s did not become ready: %s", s.name, c.tail())
}

func (c *child) wait() {
	c.waitErr = c.cmd.Wait()
	close(c.done)
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the child's process group to end (SIGTERM, closing stdin),
// then kills it after a grace period. Safe to call twice.
func (c *child) stop() {
	if c == nil {
		return
	}
	select {
	case <-c.done:
	default:
		_ = c.stdin.Close()
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	_ = c.logFile.Close()
}

// exited reports whether the child has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the child's log, for error messages.
func (c *child) tail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	if s == "" {
		return "(empty log)"
	}
	return s
}
