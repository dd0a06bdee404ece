package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Workloads: what a bot sends.
const (
	workRead  = "read"  // GET /api/v3/ticker/price?symbol=BTCUSDT (market data; not signed by keystile)
	workOrder = "order" // POST /api/v3/order, a form-encoded limit order with a unique Idempotency-Key
)

// orderBody is the limit order every order request places (notional
// 0.001 × 60000 = 60 USDT, inside the benchmark policy's limits).
const orderBody = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000"

// System ids (the -only flag takes these, optionally as id/workload).
const (
	sysDirect   = "direct"
	sysProxy    = "proxy"
	sysNginx    = "nginx"
	sysKSToken  = "keystile-token"
	sysKSFull   = "keystile-full"
	sysKSSign   = "keystile-sign"     // ablation: order workload, signing (+ idempotency, always on)
	sysKSPolicy = "keystile-policy"   // ablation: signing + policy
	sysKSAudit  = "keystile-audit"    // ablation: signing + durable audit
	sysKSNoDet  = "keystile-nodetect" // ablation: everything on but anomaly detection
	// The same two keystile rows reached through the forward proxy
	// (HTTPS_PROXY mode: CONNECT, TLS terminated by keystile with a
	// local-CA leaf, the venue's real URL) instead of the reverse proxy.
	sysKSFwd     = "keystile-fwd"
	sysKSFwdFull = "keystile-fwd-full"
	// sysKSConsole is keystile-full with the web console on and a logged-in
	// operator's overview polling its live figures: the console must add
	// nothing to the request path beyond its non-blocking stats sink.
	sysKSConsole = "keystile-console"
	// sysKSReplicas is keystile-full as two replicas sharing PostgreSQL
	// and Redis (store.postgres, store.redis), the load spread
	// round-robin across them (replicas.go).
	sysKSReplicas = "keystile-replicas"
)

// rowSpec is one (system, workload) pair of the benchmark.
type rowSpec struct {
	System, Workload string
}

// defaultRows are measured without -only, in this order per workload; the
// bare proxy goes first because the offered rates derive from it.
var defaultRows = []rowSpec{
	{sysProxy, workRead}, {sysDirect, workRead}, {sysNginx, workRead}, {sysKSToken, workRead}, {sysKSFwd, workRead},
	{sysProxy, workOrder}, {sysDirect, workOrder}, {sysNginx, workOrder}, {sysKSFull, workOrder}, {sysKSReplicas, workOrder},
	{sysKSFwdFull, workOrder},
}

// ablationRows are measured only when -only names them.
var ablationRows = []rowSpec{
	{sysKSSign, workOrder}, {sysKSPolicy, workOrder}, {sysKSAudit, workOrder},
	{sysKSConsole, workOrder}, {sysKSConsole, workRead}, {sysKSNoDet, workOrder},
}

// titles name each system in the report.
var titles = map[string]string{ // #nosec G101 -- row titles, not credentials
	sysDirect:   "direct to upstream (TLS)",
	sysProxy:    "bare httputil.ReverseProxy",
	sysNginx:    "nginx reverse proxy",
	sysKSToken:  "keystile, token only",
	sysKSFull:   "keystile, everything on",
	sysKSSign:   "keystile, token + signing + idempotency",
	sysKSPolicy: "keystile, + policy",
	sysKSAudit:  "keystile, + durable audit",
	// #nosec G101 -- row titles, not credentials
	sysKSFwd:     "keystile forward proxy, token only",
	sysKSFwdFull: "keystile forward proxy, everything on",
	sysKSConsole: "keystile, everything on + console polling",
	sysKSNoDet:   "keystile, everything on but detection",
	// #nosec G101 -- a row title, not a credential
	sysKSReplicas: "keystile ×2 replicas on PostgreSQL+Redis",
}

// ksFeatures says which optional keystile features a variant configures.
// Idempotency is not optional: keystile gives every order a client order
// id and claims it durably (with or without an Idempotency-Key), so every
// order row has it.
type ksFeatures struct {
	policy, audit bool
	detect        bool // anomaly detection on (the default of keystile.yaml); off in the ablations
	// volatile: audit.sink stdout, records written out but nothing
	// fsynced (ablations: what durability costs). Otherwise the log is
	// at its default, in the main database.
	volatile bool
	fwd      bool // the client uses the forward proxy (HTTPS_PROXY) instead of the gateway's URL
	console  bool // console.listen, with a poller logged in
	// replicas: two serve processes on a shared PostgreSQL schema and
	// Redis (store:), reached round-robin.
	replicas bool
}

var ksVariants = map[string]ksFeatures{
	sysKSToken:    {},
	sysKSSign:     {volatile: true},
	sysKSFull:     {policy: true, audit: true, detect: true},
	sysKSPolicy:   {policy: true, volatile: true},
	sysKSAudit:    {audit: true},
	sysKSNoDet:    {policy: true, audit: true},
	sysKSFwd:      {fwd: true},
	sysKSFwdFull:  {policy: true, audit: true, detect: true, fwd: true},
	sysKSConsole:  {policy: true, audit: true, detect: true, console: true},
	sysKSReplicas: {policy: true, audit: true, detect: true, replicas: true},
}

// runEnv is what every system of a run shares.
type runEnv struct {
	tmp          string // the run's temp dir (removed at the end)
	self         string // this executable (for roles)
	keystile     string // the keystile binary, or self with roleKS
	keystileSelf bool
	profileDir   string // if set, keystile serve (this binary) writes a CPU profile per row here
	certs        certFiles
	upstreamURL  string // https://127.0.0.1:port
	upstreamAddr string
	apiKey       string
	secret       string
	conns        int
	seq          *atomic.Int64
	runID        string
	logf         func(format string, args ...any)
	// consoleToken logs the console poller in (keystile-console); its
	// SHA-256 goes into admin.tokens.
	consoleToken, consoleDigest string
}

// system is one running system under test.
type system struct {
	target *target
	group  procGroup // the processes whose CPU and memory are the system's
	notes  []string
	// finish runs after the measurements, before stop: checks such as
	// `keystile audit verify`; it returns notes for the report.
	finish func(ctx context.Context) []string
	stops  []func()
}

func (s *system) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	if s.target != nil {
		s.target.client.CloseIdleConnections()
	}
}

// skipError marks a system that cannot run here (not a failure).
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newRequest builds the workload's request against base (no trailing /).
func newRequest(env *runEnv, workload, base string, header http.Header) request {
	if header == nil {
		header = http.Header{}
	}
	if workload == workRead {
		return request{method: http.MethodGet, url: base + "/api/v3/ticker/price?symbol=BTCUSDT", header: header}
	}
	header.Set("Content-Type", "application/x-www-form-urlencoded")
	return request{method: http.MethodPost, url: base + "/api/v3/order", body: []byte(orderBody), header: header,
		idemPrefix: "bench-" + env.runID + "-"}
}

// proxyClient is a bot's client in HTTPS_PROXY mode: the forward proxy at
// proxyAddr with tok as its user, caPEM (keystile's exported CA) as the
// only root.
func proxyClient(conns int, proxyAddr, tok string, caPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("bench: `keystile ca export` printed no certificate")
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr, User: url.User(tok)}),
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
	}, Timeout: 60 * time.Second}, nil
}

func plainClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
	}, Timeout: 60 * time.Second}
}

// startUpstream starts the shared TLS upstream.
func startUpstream(ctx context.Context, env *runEnv) (*child, error) {
	c, addr, err := startChild(ctx, childSpec{name: "upstream", path: env.self, dir: env.tmp, ready: true,
		env: []string{roleEnv + "=" + roleUp, certEnv + "=" + env.certs.Cert, keyEnv + "=" + env.certs.Key,
			apiKeyEnv + "=" + env.apiKey, secretEnv + "=" + env.secret}})
	if err != nil {
		return nil, err
	}
	env.upstreamAddr = addr
	env.upstreamURL = "https://" + addr
	return c, nil
}

// upstreamStats reads the upstream's counters.
func readUpstreamStats(ctx context.Context, env *runEnv) (upstreamStats, error) {
	var st upstreamStats
	tr, err := newUpstreamTransport(env.certs.CA, 1)
	if err != nil {
		return st, err
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.upstreamURL+"/-/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&st)
}

// startSystem starts sys for workload.
func startSystem(ctx context.Context, env *runEnv, sys, workload string) (*system, error) {
	switch sys {
	case sysDirect:
		tr, err := newUpstreamTransport(env.certs.CA, env.conns)
		if err != nil {
			return nil, err
		}
		return &system{target: &target{req: newRequest(env, workload, env.upstreamURL, nil),
			client: &http.Client{Transport: tr, Timeout: 60 * time.Second}, seq: env.seq},
			notes: []string{"the load generator talks TLS 1.3 to the upstream itself; no proxy process (CPU and RSS columns empty)"}}, nil
	case sysProxy:
		c, addr, err := startChild(ctx, childSpec{name: "proxy-" + workload, path: env.self, dir: env.tmp, ready: true,
			env: []string{roleEnv + "=" + roleProxy, targetEnv + "=" + env.upstreamURL, caEnv + "=" + env.certs.CA,
				poolEnv + "=" + strconv.Itoa(2*env.conns)}})
		if err != nil {
			return nil, err
		}
		return &system{target: &target{req: newRequest(env, workload, "http://"+addr, nil), client: plainClient(env.conns), seq: env.seq},
			group: procGroup{root: c.pid()}, stops: []func(){c.stop}}, nil
	case sysNginx:
		return startNginx(ctx, env, workload)
	}
	if f, ok := ksVariants[sys]; ok && f.replicas {
		return startReplicas(ctx, env, sys, workload, f)
	} else if ok {
		return startKeystile(ctx, env, sys, workload, f)
	}
	return nil, fmt.Errorf("unknown system %q", sys)
}

// nginxBinary finds nginx on PATH or where Debian's package puts it
// (/usr/sbin is not on every user's PATH).
func nginxBinary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", errors.New("nginx not found")
}

// nginxConf is nginx as a tuned TLS reverse proxy: upstream keep-alive,
// HTTP/1.1, session reuse, two workers, no access log.
func nginxConf(dir string, port int, env *runEnv) string {
	return fmt.Sprintf(`# generated by keystile's bench
daemon off;
master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  upstream venue {
    server %[3]s;
    keepalive %[4]d;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass https://venue;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host %[3]s;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate %[5]s;
      proxy_ssl_name %[6]s;
      proxy_ssl_server_name on;
    }
  }
}
`, dir, port, env.upstreamAddr, 2*env.conns, env.certs.CA, upstreamName)
}

func startNginx(ctx context.Context, env *runEnv, workload string) (*system, error) {
	bin, err := nginxBinary()
	if err != nil {
		return nil, &skipError{"skipped: nginx not installed (run `make bench-setup` or `bash bench/setup.sh`: apt-get install -y nginx)"}
	}
	dir, err := os.MkdirTemp(env.tmp, "nginx-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, port, env)), 0o600); err != nil {
		return nil, err
	}
	c, _, err := startChild(ctx, childSpec{name: "nginx-" + workload, path: bin, dir: dir,
		args: []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf}})
	if err != nil {
		return nil, err
	}
	s := &system{group: procGroup{root: c.pid(), withChildren: true}, stops: []func(){c.stop}}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitHTTP(ctx, c, base+"/api/v3/ticker/price?symbol=BTCUSDT", func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log")) // #nosec G304 -- our temp dir
		return c.tail() + " " + string(b)
	}); err != nil {
		s.stop()
		return nil, err
	}
	s.target = &target{req: newRequest(env, workload, base, nil), client: plainClient(env.conns), seq: env.seq}
	return s, nil
}

// waitHTTP polls url until it answers 200 (bounded), failing early if
// the child exits.
func waitHTTP(ctx context.Context, c *child, url string, tail func() string) error {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c.exited() {
			return fmt.Errorf("%s exited: %s", c.name, tail())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after 30s: %s", c.name, tail())
}

// benchPolicy is the policy the "everything on" token is attached to:
// every rule kind that applies to the benchmark's order (the order is
// within all limits, so every request is allowed after all checks).
const benchPolicy = `policies:
  bench:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments:
      allow: ["BTCUSDT", "ETH*"]
      deny: ["*DOWN*"]
    sides: [buy, sell]
    order_types: [limit, market]
    max_quantity: "1"
    max_notional: "100000 USDT"
    price_band: "5%"
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000000000 USDT"
    rate:
      - scope: token
        limit: "1000000/s"
        burst: 1000000
    expr: 'dec_le(order.quantity, "1")'
`

// keystileConfig is the keystile.yaml of a variant.
// With f.replicas, st is its store: section and the budget probe's
// policy is added.
func keystileConfig(env *runEnv, port, proxyPort, consolePort int, f ksFeatures, st storeConf) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by keystile's bench
log:
  level: warn
  format: json
gateway:
  listen: 127.0.0.1:%d
tokens:
  default_ttl: 2h
  max_ttl: 24h
venues:
  binance:
    type: binance
    credential: bench-binance
    base_url: %s
    tls:
      min_version: "1.3"
      ca_file: %q
`, port, env.upstreamURL, env.certs.CA)
	if f.policy {
		b.WriteString(benchPolicy)
		if f.replicas {
			b.WriteString(budgetProbePolicy)
		}
	}
	if f.audit {
		// The default: the hash-chained log in the main database, an
		// order's intent record in the same write as its budget and
		// idempotency claim.
		b.WriteString("audit:\n  sink: sqlite\n")
	} else if f.volatile {
		// Not durable: records go to serve's stdout (the row's log
		// file), so the row shows what durability costs.
		b.WriteString("audit:\n  sink: stdout\n")
	}
	b.WriteString("idempotency:\n  window: 24h\n") // the default, always on
	if f.fwd {
		fmt.Fprintf(&b, "proxy:\n  listen: 127.0.0.1:%d\n", proxyPort)
	}
	if f.console {
		fmt.Fprintf(&b, "admin:\n  tokens:\n    - {name: bench, sha256: %s}\nconsole:\n  listen: 127.0.0.1:%d\n", env.consoleDigest, consolePort)
	}
	// Detection is on by default (every detector, default settings);
	// the variants without it turn it off.
	if !f.detect {
		b.WriteString("detect:\n  enabled: false\n")
	}
	if f.replicas {
		b.WriteString(st.yaml())
	}
	return b.String()
}

// ksCmd runs one keystile CLI command to completion.
func ksCmd(ctx context.Context, env *runEnv, dir, stdin string, args ...string) (string, error) {
	return ksCmdEnv(ctx, env, nil, dir, stdin, args...)
}

// ksCmdEnv is ksCmd with extra environment variables.
func ksCmdEnv(ctx context.Context, env *runEnv, extra []string, dir, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.keystile, args...) // #nosec G204 -- the keystile binary this run built (or this binary); arguments are ours
	cmd.Env = append(append(os.Environ(), ksEnv(env, dir)...), extra...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return out.String(), fmt.Errorf("keystile %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

func ksEnv(env *runEnv, dir string) []string {
	e := []string{"KEYSTILE_DATA_DIR=" + filepath.Join(dir, "data"), "KEYSTILE_CONFIG=" + filepath.Join(dir, "keystile.yaml")}
	if env.keystileSelf {
		e = append(e, roleEnv+"="+roleKS)
	}
	return e
}

// startKeystile sets keystile up as a user would (init, serve, secret set
// from stdin, token create) and returns the running server as a system.
func startKeystile(ctx context.Context, env *runEnv, sys, workload string, f ksFeatures) (*system, error) {
	dir, err := os.MkdirTemp(env.tmp, sys+"-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	proxyPort := 0
	if f.fwd {
		if proxyPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	consolePort := 0
	if f.console {
		if consolePort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "keystile.yaml"), []byte(keystileConfig(env, port, proxyPort, consolePort, f, storeConf{})), 0o600); err != nil {
		return nil, err
	}
	if _, err := ksCmd(ctx, env, dir, "", "init"); err != nil {
		return nil, unavailable(err)
	}
	spec := childSpec{name: sys + "-serve", path: env.keystile, args: []string{"serve"}, dir: dir, env: ksEnv(env, dir)}
	if env.profileDir != "" {
		spec.env = append(spec.env, profEnv+"="+filepath.Join(env.profileDir, sys+"-"+workload+".pprof"))
	}
	c, _, err := startChild(ctx, spec)
	if err != nil {
		return nil, err
	}
	s := &system{group: procGroup{root: c.pid()}, stops: []func(){c.stop}}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitHTTP(ctx, c, base+"/-/readyz", c.tail); err != nil {
		s.stop()
		return nil, unavailable(err)
	}
	if _, err := ksCmd(ctx, env, dir, "api_key="+env.apiKey+"\nsecret="+env.secret+"\n", "secret", "set", "bench-binance"); err != nil {
		s.stop()
		return nil, unavailable(err)
	}
	args := []string{"token", "create", "--name", "bench", "--venue", "binance", "--scope", "market.read", "--scope", "order.*", "--ttl", "2h"}
	if f.policy {
		args = append(args, "--policy", "bench")
	}
	out, err := ksCmd(ctx, env, dir, "", args...)
	tok := strings.TrimSpace(out)
	if err == nil && !strings.HasPrefix(tok, "kst_") {
		err = errors.New("token create printed no kst_ token")
	}
	if err != nil {
		s.stop()
		return nil, unavailable(err)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	s.target = &target{req: newRequest(env, workload, base+"/binance", h), client: plainClient(env.conns), seq: env.seq}
	if f.fwd {
		// As a bot with HTTPS_PROXY and the exported CA: the venue's own
		// URL, the token as proxy user, no keystile header.
		caPEM, err := ksCmd(ctx, env, dir, "", "ca", "export")
		if err != nil {
			s.stop()
			return nil, unavailable(err)
		}
		client, err := proxyClient(env.conns, "127.0.0.1:"+strconv.Itoa(proxyPort), tok, []byte(caPEM))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.target = &target{req: newRequest(env, workload, env.upstreamURL, nil), client: client, seq: env.seq}
	}
	s.notes = append(s.notes, ksOnOff(sys, workload, f))
	if workload == workOrder {
		s.notes = append(s.notes, probeKeystile(ctx, env, s.target, f)...)
	}
	if f.console {
		stop, note, err := pollConsole(ctx, env, "http://127.0.0.1:"+strconv.Itoa(consolePort))
		if err != nil {
			s.stop()
			return nil, unavailable(err)
		}
		s.stops = append(s.stops, stop)
		s.notes = append(s.notes, note)
	}
	s.finish = func(ctx context.Context) []string { return finishKeystile(ctx, env, dir, c, f) }
	return s, nil
}

// unavailable marks a keystile variant that could not be set up (e.g. a
// config key serve does not accept yet).
func unavailable(err error) error {
	return &skipError{"unavailable: " + err.Error()}
}

func ksOnOff(sys, workload string, f ksFeatures) string {
	on := []string{"token verify (in-memory, constant-time)", "route + operation table + scope check", "venue rate-limit model",
		"response scrubbing", "per-request audit event (log sink at warn: not written)"}
	if f.fwd {
		on = append(on, "forward proxy: CONNECT with the token in Proxy-Authorization, TLS 1.3 terminated by keystile with a local-CA leaf (tunnels kept alive), request rewritten into the gateway's pipeline")
	}
	if workload == workRead {
		on = append(on, "market data forwarded unsigned (no API key, no signature)")
	} else {
		on = append(on, "order normalisation", "HMAC-SHA256 signing (timestamp, recvWindow, signature) inside vault.WithCredential")
	}
	var off []string
	add := func(b bool, name string) {
		if b {
			on = append(on, name)
		} else {
			off = append(off, name)
		}
	}
	add(f.policy, "policy `bench` (venue, operations, instruments, side, type, max_quantity, max_notional, price_band, daily budget, rate, CEL)")
	switch {
	case f.volatile:
		off = append(off, "durable audit (audit.sink stdout: records written out, nothing fsynced)")
	case f.replicas:
		on = append(on, "durable audit (one hash chain for both replicas in PostgreSQL; an order's intent record, budget reservation and idempotency claim are one transaction, committed before forwarding)")
	case f.audit || workload == workOrder:
		on = append(on, "durable audit (in keystile.db; an order's intent record, budget reservation and idempotency claim are one fsynced write before forwarding)")
	default:
		on = append(on, "audit log at its default (in keystile.db; outcome records group-committed, nobody waits)")
	}
	if workload == workOrder {
		on = append(on, "idempotency (always on: a client order id per order, its claim durable; a unique Idempotency-Key per request, 24h window)")
	}
	if f.replicas {
		on = append(on, "shared state: tokens, budgets, idempotency claims, ledger and audit in one PostgreSQL schema; rate limits shared in Redis (one round trip per request); revocations and kill switches fanned out on Redis")
	}
	if f.detect {
		on = append(on, "anomaly detection (every detector, defaults: each event queued to the detector; holds checked before signing)")
	} else {
		off = append(off, "anomaly detection")
	}
	s := "on: " + strings.Join(on, "; ")
	if len(off) > 0 {
		s += ". off: " + strings.Join(off, "; ")
	}
	return s
}

// probeKeystile checks, before measuring, that the features a variant
// configures are really active: a policy denial, an idempotent replay,
// and correct signatures at the upstream.
func probeKeystile(ctx context.Context, env *runEnv, t *target, f ksFeatures) []string {
	var notes []string
	send := func(body, key string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.req.url, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		for k, v := range t.req.header {
			req.Header[k] = v
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := t.client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if f.policy {
		big := strings.Replace(orderBody, "quantity=0.001", "quantity=5", 1)
		code, err := send(big, "probe-policy-"+env.runID)
		switch {
		case err != nil:
			notes = append(notes, "probe policy: "+err.Error())
		case code == http.StatusForbidden:
			notes = append(notes, "verified: policy active (an order above max_quantity was refused with 403)")
		default:
			notes = append(notes, fmt.Sprintf("WARNING: policy NOT active: an order above max_quantity got %d", code))
		}
	}
	st0, err := readUpstreamStats(ctx, env)
	if err != nil {
		return append(notes, "probe: upstream stats: "+err.Error())
	}
	key := "probe-idem-" + env.runID
	c1, err1 := send(orderBody, key)
	c2, err2 := send(orderBody, key)
	st1, err := readUpstreamStats(ctx, env)
	if err1 != nil || err2 != nil || err != nil {
		return append(notes, fmt.Sprintf("probe: %v %v %v", err1, err2, err))
	}
	n := st1.Orders - st0.Orders
	if c1 == http.StatusOK && c2 == http.StatusOK && n == 1 {
		notes = append(notes, "verified: idempotency active (the same Idempotency-Key twice reached the upstream once)")
	} else {
		notes = append(notes, fmt.Sprintf("WARNING: idempotency NOT active: the same key twice gave %d, %d and %d orders upstream", c1, c2, n))
	}
	if st1.Signed > st0.Signed && st1.BadSignatures == 0 {
		notes = append(notes, "verified: the upstream checked keystile's HMAC signatures (all valid)")
	} else {
		notes = append(notes, fmt.Sprintf("WARNING: signatures: %d signed, %d bad", st1.Signed-st0.Signed, st1.BadSignatures))
	}
	return notes
}

// finishKeystile reads the detector's counters of a running serve, then
// stops it and checks the audit log (finishAudit).
func finishKeystile(ctx context.Context, env *runEnv, dir string, serve *child, f ksFeatures) []string {
	var notes []string
	if out, err := ksCmd(ctx, env, dir, "", "detect", "status", "--json"); err != nil {
		notes = append(notes, "detect status: "+err.Error())
	} else {
		st, err := parseDetectStatus(out)
		switch {
		case err != nil:
			notes = append(notes, "detect status: unreadable answer")
		case f.detect && (!st.Enabled || st.Processed == 0):
			notes = append(notes, fmt.Sprintf("WARNING: detection NOT active: %+v", st))
		case f.detect:
			notes = append(notes, fmt.Sprintf("verified: the detector analysed %d events (%d dropped on a full queue, %d findings)",
				st.Processed, st.Dropped, st.Findings))
		case st.Enabled || st.Received != 0:
			notes = append(notes, fmt.Sprintf("WARNING: detection should be off: %+v", st))
		}
	}
	return append(notes, finishAudit(ctx, env, dir, serve, f)...)
}

// detectStats are the counters of `keystile detect status --json`.
type detectStats struct {
	Enabled                                bool
	Received, Processed, Dropped, Findings uint64
}

func parseDetectStatus(out string) (detectStats, error) {
	var st struct {
		Stats detectStats `json:"stats"`
	}
	err := json.Unmarshal([]byte(out), &st)
	return st.Stats, err
}

// finishAudit stops serve and checks the durable audit log offline.
func finishAudit(ctx context.Context, env *runEnv, dir string, serve *child, f ksFeatures) []string {
	serve.stop()
	if f.volatile {
		return []string{"note: audit.sink stdout (records written out, not durable): no intent record is fsynced"}
	}
	db := filepath.Join(dir, "data", "keystile.db")
	fi, statErr := os.Stat(db)
	if statErr != nil {
		return []string{"WARNING: no keystile.db in the data dir: " + statErr.Error()}
	}
	out, err := ksCmd(ctx, env, dir, "", "audit", "verify")
	if err != nil {
		return []string{fmt.Sprintf("WARNING: `keystile audit verify` failed: %v", err)}
	}
	if strings.Contains(out, "OK: 0 records") {
		return []string{"WARNING: durable audit NOT active: the log in keystile.db holds no records"}
	}
	return []string{fmt.Sprintf("verified: `keystile audit verify` after the run: %s (keystile.db %d MB, the audit log inside it)",
		strings.Join(strings.Fields(out), " "), fi.Size()>>20)}
}
