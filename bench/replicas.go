package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// The replicas row (issue #17): two `keystile serve` processes sharing one
// PostgreSQL schema and one Redis, the load spread round-robin across
// them as a load balancer would.
const (
	// pgEnvVar and redisEnvVar name the servers the row uses.
	pgEnvVar    = "KEYSTILE_BENCH_POSTGRES"
	redisEnvVar = "KEYSTILE_BENCH_REDIS"
	pgDefault   = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	redisDflt   = "redis://127.0.0.1:6379/0"
	// childDSNEnv and childRedisPwEnv hand the schema's DSN and the Redis
	// password to the keystile processes (store.postgres.dsn: env:...),
	// never in argv or in a file.
	childDSNEnv     = "KEYSTILE_BENCH_PG_DSN"
	childRedisPwEnv = "KEYSTILE_BENCH_REDIS_PASSWORD" // #nosec G101 -- an env var name
)

// storeConf is the store: section of a replica's keystile.yaml.
type storeConf struct {
	redisAddr string
	redisDB   int
	redisPw   bool // the password is in childRedisPwEnv
	redisTLS  bool
}

func (s storeConf) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store:\n  postgres:\n    dsn: env:%s\n  redis:\n    addr: %s\n", childDSNEnv, s.redisAddr)
	if s.redisDB != 0 {
		fmt.Fprintf(&b, "    db: %d\n", s.redisDB)
	}
	if s.redisPw {
		fmt.Fprintf(&b, "    password_ref: env:%s\n", childRedisPwEnv)
	}
	if s.redisTLS {
		b.WriteString("    tls: true\n")
	}
	return b.String()
}

// budgetProbePolicy is attached to a second token only: its daily budget
// (100 USDT) holds one benchmark order (60 USDT) but not two, so the
// second order, sent to the other replica, must be refused if the budget
// is shared.
const budgetProbePolicy = `  bench-budget:
    venues: [binance]
    operations: ["market.read", "order.*"]
    budgets:
      - name: probe
        scope: token
        window: day
        limit: "100 USDT"
`

// envOr returns the environment variable k, or def if it is unset.
func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// redact removes the password of a URL from msg.
func redact(msg string, u *url.URL) string {
	if u != nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// pgWhere names a PostgreSQL URL without its credentials.
func pgWhere(u *url.URL) string { return u.Host + u.Path }

// benchSchema creates a fresh schema on the PostgreSQL of base and returns
// a DSN whose search_path is that schema, and a function that drops it.
func benchSchema(ctx context.Context, base string) (dsn, name string, drop func(), err error) {
	u, perr := url.Parse(base)
	if perr != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", nil, &skipError{"skipped: " + pgEnvVar + " is not a postgres:// URL"}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, base)
	if err != nil {
		return "", "", nil, &skipError{fmt.Sprintf("skipped: PostgreSQL unreachable at %s (set %s): %s", pgWhere(u), pgEnvVar, redact(err.Error(), u))}
	}
	defer func() { _ = conn.Close(context.Background()) }()
	name = "kst_bench_" + randHex(6)
	if _, err := conn.Exec(cctx, "CREATE SCHEMA "+name); err != nil {
		return "", "", nil, &skipError{fmt.Sprintf("skipped: PostgreSQL at %s: CREATE SCHEMA: %s", pgWhere(u), redact(err.Error(), u))}
	}
	drop = func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(dctx, base)
		if err != nil {
			return
		}
		_, _ = c.Exec(dctx, "DROP SCHEMA "+name+" CASCADE")
		_ = c.Close(dctx)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), name, drop, nil
}

// benchRedis checks that Redis answers and returns its store: settings
// and the child environment (the password).
func benchRedis(ctx context.Context, raw string) (storeConf, []string, *goredis.Client, error) {
	o, err := goredis.ParseURL(raw)
	if err != nil {
		return storeConf{}, nil, nil, &skipError{"skipped: " + redisEnvVar + " is not a redis:// URL"}
	}
	u, _ := url.Parse(raw)
	c := goredis.NewClient(o)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Ping(cctx).Err(); err != nil {
		_ = c.Close()
		return storeConf{}, nil, nil, &skipError{fmt.Sprintf("skipped: Redis unreachable at %s (set %s): %s", o.Addr, redisEnvVar, redact(err.Error(), u))}
	}
	st := storeConf{redisAddr: o.Addr, redisDB: o.DB, redisTLS: o.TLSConfig != nil}
	var extra []string
	if o.Password != "" {
		st.redisPw = true
		extra = append(extra, childRedisPwEnv+"="+o.Password)
	}
	return st, extra, c, nil
}

// prefixRE finds an installation's key prefix in a Redis key or channel.
var prefixRE = regexp.MustCompile(`^(keystile:[0-9a-f]{12}:)`)

// redisPrefixes returns the installation prefixes that have keys in Redis.
func redisPrefixes(ctx context.Context, c *goredis.Client) (map[string]bool, error) {
	out := map[string]bool{}
	iter := c.Scan(ctx, 0, "keystile:*", 1000).Iterator()
	for n := 0; iter.Next(ctx) && n < 1_000_000; n++ {
		if m := prefixRE.FindStringSubmatch(iter.Val()); m != nil {
			out[m[1]] = true
		}
	}
	return out, iter.Err()
}

// tokenSubscribers returns how many clients listen on prefix's token
// fan-out channel (each replica subscribes once).
func tokenSubscribers(ctx context.Context, c *goredis.Client, prefix string) int64 {
	ch := prefix + "fanout:tokens"
	m, err := c.PubSubNumSub(ctx, ch).Result()
	if err != nil {
		return -1
	}
	return m[ch]
}

// redisCleaner removes the Redis keys of the row's installation. The
// prefix is derived from the vault inside keystile and not printed, so it
// is recognised from the outside: a prefix with no keys before the row,
// whose token channel has exactly our two replicas subscribed while they
// run and none once they are stopped. If that does not single out one
// prefix (another installation starting and stopping at the same time),
// nothing is deleted.
type redisCleaner struct {
	c          *goredis.Client
	before     map[string]bool
	candidates []string
}

// running is called with both replicas up and subscribed.
func (r *redisCleaner) running(ctx context.Context) {
	if r.before == nil {
		return
	}
	now, err := redisPrefixes(ctx, r.c)
	if err != nil {
		return
	}
	for p := range now {
		if !r.before[p] && tokenSubscribers(ctx, r.c, p) == 2 {
			r.candidates = append(r.candidates, p)
		}
	}
	slices.Sort(r.candidates)
}

// clean is called with both replicas stopped; it returns a note.
func (r *redisCleaner) clean(ctx context.Context) string {
	var ours []string
	for _, p := range r.candidates {
		if tokenSubscribers(ctx, r.c, p) == 0 {
			ours = append(ours, p)
		}
	}
	if len(ours) != 1 {
		return fmt.Sprintf("note: the installation's Redis keys (fan-out version counters) were left: %d candidate prefixes", len(ours))
	}
	n := 0
	iter := r.c.Scan(ctx, 0, ours[0]+"*", 1000).Iterator()
	for iter.Next(ctx) && n < 100_000 {
		if r.c.Del(ctx, iter.Val()).Err() == nil {
			n++
		}
	}
	return fmt.Sprintf("Redis: the installation's %d keys (prefix %s) deleted after the row", n, ours[0])
}

// replica is one running keystile serve of the row.
type replica struct {
	dir   string
	base  string // http://127.0.0.1:port
	serve *child
}

// startReplicas sets up two keystile replicas on one fresh PostgreSQL
// schema and Redis as an operator would (migrate, init on the first,
// master key file and local CA copied to the second, serve on both,
// secret and token created on the first) and returns them as one system
// that the load generator reaches round-robin.
func startReplicas(ctx context.Context, env *runEnv, sys, workload string, f ksFeatures) (*system, error) {
	st, extra, rc, err := benchRedis(ctx, envOr(redisEnvVar, redisDflt))
	if err != nil {
		return nil, err
	}
	cleaner := &redisCleaner{c: rc}
	if cleaner.before, err = redisPrefixes(ctx, rc); err != nil {
		cleaner.before = nil // no cleanup
	}
	dsn, schema, drop, err := benchSchema(ctx, envOr(pgEnvVar, pgDefault))
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	s := &system{stops: []func(){func() { _ = rc.Close() }, drop}}
	fail := func(err error) (*system, error) { s.stop(); return nil, err }
	extra = append(extra, childDSNEnv+"="+dsn)

	reps := make([]*replica, 2)
	for i := range reps {
		dir, err := os.MkdirTemp(env.tmp, fmt.Sprintf("%s-%c-", sys, 'a'+i))
		if err != nil {
			return fail(err)
		}
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		cfg := keystileConfig(env, port, 0, 0, f, st)
		if err := os.WriteFile(filepath.Join(dir, "keystile.yaml"), []byte(cfg), 0o600); err != nil {
			return fail(err)
		}
		reps[i] = &replica{dir: dir, base: "http://127.0.0.1:" + strconv.Itoa(port)}
	}
	a, b := reps[0], reps[1]
	if _, err := ksCmdEnv(ctx, env, extra, a.dir, "", "migrate"); err != nil {
		return fail(unavailable(err))
	}
	if _, err := ksCmdEnv(ctx, env, extra, a.dir, "", "init"); err != nil {
		return fail(unavailable(err))
	}
	// The second replica gets the first's master key file and local CA
	// certificate, as an operator copies them.
	bData := filepath.Join(b.dir, "data")
	if err := os.MkdirAll(bData, 0o700); err != nil {
		return fail(err)
	}
	for _, name := range []string{"master.key", "local-ca.pem"} {
		data, err := os.ReadFile(filepath.Join(a.dir, "data", name)) // #nosec G304 -- our temp dir
		if err != nil {
			return fail(fmt.Errorf("replica a: %w", err))
		}
		if err := os.WriteFile(filepath.Join(bData, name), data, 0o600); err != nil { // #nosec G703 -- our temp dir, fixed names
			return fail(err)
		}
	}
	for i, r := range reps {
		spec := childSpec{name: fmt.Sprintf("%s-%c-serve", sys, 'a'+i), path: env.keystile, args: []string{"serve"}, dir: r.dir,
			env: append(ksEnv(env, r.dir), extra...)}
		if env.profileDir != "" {
			spec.env = append(spec.env, profEnv+"="+filepath.Join(env.profileDir, fmt.Sprintf("%s-%c-%s.pprof", sys, 'a'+i, workload)))
		}
		c, _, err := startChild(ctx, spec)
		if err != nil {
			return fail(err)
		}
		r.serve = c
		s.stops = append(s.stops, c.stop)
		if i == 0 {
			s.group.root = c.pid()
		} else {
			s.group.more = append(s.group.more, c.pid())
		}
	}
	for _, r := range reps {
		if err := waitHTTP(ctx, r.serve, r.base+"/-/readyz", r.serve.tail); err != nil {
			return fail(unavailable(err))
		}
	}
	if _, err := ksCmdEnv(ctx, env, extra, a.dir, "api_key="+env.apiKey+"\nsecret="+env.secret+"\n", "secret", "set", "bench-binance"); err != nil {
		return fail(unavailable(err))
	}
	mint := func(name, policy string) (string, error) {
		out, err := ksCmdEnv(ctx, env, extra, a.dir, "", "token", "create", "--name", name, "--venue", "binance",
			"--scope", "market.read", "--scope", "order.*", "--ttl", "2h", "--policy", policy)
		tok := strings.TrimSpace(out)
		if err == nil && !strings.HasPrefix(tok, "kst_") {
			err = errors.New("token create printed no kst_ token")
		}
		return tok, err
	}
	tok, err := mint("bench", "bench")
	if err != nil {
		return fail(unavailable(err))
	}
	probeTok, err := mint("bench-budget", "bench-budget")
	if err != nil {
		return fail(unavailable(err))
	}
	// Both tokens were created on A: wait (bounded) until B knows them.
	t0 := time.Now()
	for _, tk := range []string{tok, probeTok} {
		if err := waitToken(ctx, b.base, tk); err != nil {
			return fail(fmt.Errorf("replica b: %w", err))
		}
	}
	cleaner.running(ctx)
	s.notes = append(s.notes, fmt.Sprintf("setup: schema %s in PostgreSQL %s (dropped after the row), Redis %s (keys prefixed with the installation's vault-derived id); `keystile migrate` and `init` on replica A, its master.key and local-ca.pem copied to B; tokens created on A were accepted by B after %s",
		schema, pgWhereDSN(envOr(pgEnvVar, pgDefault)), st.redisAddr, time.Since(t0).Round(time.Millisecond)))

	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	t := &target{req: newRequest(env, workload, a.base+"/binance", h), client: plainClient(env.conns), seq: env.seq, rr: new(atomic.Uint64)}
	for _, r := range reps {
		t.urls = append(t.urls, strings.Replace(t.req.url, a.base, r.base, 1))
	}
	s.target = t
	s.notes = append(s.notes, "the load generator sends request i to replica i mod 2 (round-robin, as a load balancer would), one keep-alive pool per replica; CPU and RSS are the sum of both serve processes (PostgreSQL's and Redis's own CPU is not counted)")
	s.notes = append(s.notes, ksOnOff(sys, workload, f))
	if workload == workOrder {
		s.notes = append(s.notes, probeReplicas(ctx, env, t, probeTok)...)
	}
	s.finish = func(ctx context.Context) []string {
		return append(finishReplicas(ctx, env, extra, reps, f), cleaner.clean(ctx))
	}
	return s, nil
}

// pgWhereDSN names a PostgreSQL URL's host and database only.
func pgWhereDSN(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return pgWhere(u)
}

// waitToken polls a market-data read with tok on base until the token is
// recognised (bounded).
func waitToken(ctx context.Context, base, tok string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	last, lastBody := 0, ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/binance/api/v3/ticker/price?symbol=BTCUSDT", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			// 200, or the policy's 403 (the bench policy's CEL rule
			// refuses a read): the token was recognised. 401: not (yet).
			if last, lastBody = resp.StatusCode, string(b); last == http.StatusOK || last == http.StatusForbidden && strings.Contains(lastBody, "policy") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(lastBody) > 200 {
		lastBody = lastBody[:200]
	}
	return fmt.Errorf("a token created on replica A was not accepted after 10s (last status %d: %s)", last, strings.TrimSpace(lastBody))
}

// probeReplicas checks, before measuring, that the replicas share their
// state: the policy refuses an order above max_quantity; a budget that
// holds one order refuses a second sent to the other replica; an
// Idempotency-Key replayed on the other replica reaches the upstream
// once; the upstream accepts keystile's signatures.
func probeReplicas(ctx context.Context, env *runEnv, t *target, probeTok string) []string {
	var notes []string
	var lastOutcome string // Keystile-Outcome of the last answer
	send := func(u, tok, body, key string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		for k, v := range t.req.header {
			req.Header[k] = v
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := t.client.Do(req)
		if err != nil {
			return 0, "", err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		lastOutcome = resp.Header.Get("Keystile-Outcome")
		return resp.StatusCode, string(b), nil
	}
	a, b := t.urls[0], t.urls[1]

	big := strings.Replace(orderBody, "quantity=0.001", "quantity=5", 1)
	if code, _, err := send(b, "", big, "probe-policy-"+env.runID); err != nil {
		notes = append(notes, "probe policy: "+err.Error())
	} else if code == http.StatusForbidden {
		notes = append(notes, "verified: policy active (an order above max_quantity was refused with 403)")
	} else {
		notes = append(notes, fmt.Sprintf("WARNING: policy NOT active: an order above max_quantity got %d", code))
	}

	st0, err := readUpstreamStats(ctx, env)
	if err != nil {
		return append(notes, "probe: upstream stats: "+err.Error())
	}
	c1, _, err1 := send(a, probeTok, orderBody, "probe-budget-1-"+env.runID)
	c2, body2, err2 := send(b, probeTok, orderBody, "probe-budget-2-"+env.runID)
	c3, body3, err3 := send(a, probeTok, orderBody, "probe-budget-3-"+env.runID)
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		notes = append(notes, fmt.Sprintf("probe budget: %v %v %v", err1, err2, err3))
	case c1 == http.StatusOK && c2 == http.StatusForbidden && c3 == http.StatusForbidden &&
		strings.Contains(body2, "budget") && strings.Contains(body3, "budget"):
		notes = append(notes, "verified: the budget spans both replicas (policy bench-budget, 100 USDT a day: a 60 USDT order on A was placed, the next on B and another on A were refused with 403 over the budget)")
	default:
		notes = append(notes, fmt.Sprintf("WARNING: budget NOT shared: 60 USDT orders against a 100 USDT budget on A, B, A got %d, %d (%.120s), %d", c1, c2, body2, c3))
	}

	key := "probe-idem-" + env.runID
	st1, err := readUpstreamStats(ctx, env)
	if err != nil {
		return append(notes, "probe: upstream stats: "+err.Error())
	}
	c1, _, err1 = send(a, "", orderBody, key)
	c2, body2, err2 = send(b, "", orderBody, key)
	how := lastOutcome
	st2, err := readUpstreamStats(ctx, env)
	if err1 != nil || err2 != nil || err != nil {
		return append(notes, fmt.Sprintf("probe: %v %v %v", err1, err2, err))
	}
	// B answers from the record A stored, or, if A's answer is not
	// stored yet (it is written after the answer), B finds the claim
	// pending, looks the order up at the venue by its client order id
	// and answers with it (Keystile-Outcome: recovered). Never a resend.
	if n, l := st2.Orders-st1.Orders, st2.Lookups-st1.Lookups; c1 == http.StatusOK && c2 == http.StatusOK && n == 1 {
		via := "B answered from the record A stored"
		if how == "recovered" {
			via = fmt.Sprintf("A's answer was not stored yet: B looked the order up at the venue (%d lookup) and answered with it", l)
		}
		notes = append(notes, "verified: idempotency shared (an Idempotency-Key sent to A, then replayed on B, reached the upstream once as an order; "+via+")")
	} else {
		if len(body2) > 160 {
			body2 = body2[:160]
		}
		notes = append(notes, fmt.Sprintf("WARNING: idempotency NOT shared: the same key on A then B gave %d, %d (%s) and %d orders upstream", c1, c2, strings.TrimSpace(body2), n))
	}
	if st2.Signed > st0.Signed && st2.BadSignatures == 0 {
		notes = append(notes, "verified: the upstream checked keystile's HMAC signatures (all valid)")
	} else {
		notes = append(notes, fmt.Sprintf("WARNING: signatures: %d signed, %d bad", st2.Signed-st0.Signed, st2.BadSignatures))
	}
	return notes
}

// finishReplicas reads each replica's detector counters, stops both and
// verifies the shared audit chain in PostgreSQL.
func finishReplicas(ctx context.Context, env *runEnv, extra []string, reps []*replica, f ksFeatures) []string {
	var notes []string
	var processed, dropped, findings uint64
	for i, r := range reps {
		out, err := ksCmdEnv(ctx, env, extra, r.dir, "", "detect", "status", "--json")
		if err != nil {
			notes = append(notes, fmt.Sprintf("replica %c: detect status: %v", 'a'+i, err))
			continue
		}
		st, err := parseDetectStatus(out)
		switch {
		case err != nil:
			notes = append(notes, fmt.Sprintf("replica %c: detect status: unreadable answer", 'a'+i))
		case f.detect && (!st.Enabled || st.Processed == 0):
			notes = append(notes, fmt.Sprintf("WARNING: replica %c: detection NOT active: %+v", 'a'+i, st))
		default:
			processed, dropped, findings = processed+st.Processed, dropped+st.Dropped, findings+st.Findings
		}
	}
	if f.detect && processed > 0 {
		notes = append(notes, fmt.Sprintf("verified: the detectors of both replicas analysed %d events (%d dropped on a full queue, %d findings; baselines are per replica)",
			processed, dropped, findings))
	}
	for _, r := range reps {
		r.serve.stop()
	}
	out, err := ksCmdEnv(ctx, env, extra, reps[0].dir, "", "audit", "verify")
	switch {
	case err != nil:
		notes = append(notes, fmt.Sprintf("WARNING: `keystile audit verify` of the shared chain failed: %v", err))
	case strings.Contains(out, "OK: 0 records") || !strings.HasPrefix(strings.TrimSpace(out), "OK"):
		notes = append(notes, "WARNING: durable audit NOT active: `keystile audit verify`: "+strings.Join(strings.Fields(out), " "))
	default:
		notes = append(notes, "verified: `keystile audit verify` of the chain both replicas wrote (in PostgreSQL), after the run: "+strings.Join(strings.Fields(out), " "))
	}
	return notes
}
