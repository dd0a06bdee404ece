package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
)

// TestMain lets the test binary play the bench's roles (upstream, proxy,
// keystile) when it re-executes itself, as the bench binary does.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

// TestBenchTiny runs every default row at one offered rate for a fraction
// of a second each (keystile is this test binary running cli.Main, so
// nothing is built) and checks the report.
func TestBenchTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	var progress bytes.Buffer
	o := options{Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Conns: 4, Loads: []float64{0.5},
		Out: out, Keystile: "self", Command: "go test ./bench", Progress: &progress}
	start := time.Now()
	rep, err := bench(ctx, o)
	t.Logf("bench took %s\n%s", time.Since(start).Round(time.Millisecond), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.write(out); err != nil {
		t.Fatal(err)
	}
	_, nginxErr := exec.LookPath("nginx")
	if len(rep.Rows) != len(defaultRows) {
		t.Fatalf("got %d rows, want %d", len(rep.Rows), len(defaultRows))
	}
	for i, want := range defaultRows {
		x := rep.Rows[i]
		name := x.System + "/" + x.Workload
		if x.System != want.System || x.Workload != want.Workload {
			t.Errorf("row %d is %s, want %s/%s", i, name, want.System, want.Workload)
			continue
		}
		if x.System == sysNginx && nginxErr != nil {
			if x.Status != statusSkipped || !strings.Contains(x.Reason, "nginx not installed") {
				t.Errorf("%s: status %q (%s), want skipped: nginx not installed", name, x.Status, x.Reason)
			}
			continue
		}
		if x.System == sysKSReplicas && x.Status == statusSkipped {
			// Without PostgreSQL and Redis the row is skipped, saying
			// why.
			if r := strings.ToLower(x.Reason); !strings.Contains(r, "postgres") && !strings.Contains(r, "redis") {
				t.Errorf("%s: skipped without naming PostgreSQL or Redis: %s", name, x.Reason)
			}
			t.Logf("%s: %s", name, x.Reason)
			continue
		}
		if x.Status != statusOK {
			t.Errorf("%s: status %q: %s", name, x.Status, x.Reason)
			continue
		}
		if x.System == sysKSReplicas {
			checkReplicaNotes(t, x.Notes)
		}
		for _, n := range x.Notes {
			if strings.HasPrefix(n, "WARNING") {
				t.Logf("%s: %s", name, n)
			}
		}
		steps := append([]*stepResult{x.Sat}, x.Rates...)
		if len(x.Rates) != 1 {
			t.Errorf("%s: %d rate steps, want 1", name, len(x.Rates))
		}
		for j, s := range steps {
			if s.Throughput <= 0 || s.OK <= 0 {
				t.Errorf("%s step %d: throughput %.1f, ok %d (first error %q)", name, j, s.Throughput, s.OK, s.FirstError)
			}
			if s.Errors != 0 {
				t.Errorf("%s step %d: %d errors, first %q", name, j, s.Errors, s.FirstError)
			}
			if !(0 < s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.P999 && s.P999 <= s.Max) {
				t.Errorf("%s step %d: percentiles out of order: p50 %s p90 %s p99 %s p99.9 %s max %s", name, j, s.P50, s.P90, s.P99, s.P999, s.Max)
			}
		}
		if x.System != sysDirect && (x.HWM <= 0 || x.Sat.CPUPerReq <= 0) {
			t.Errorf("%s: RSS peak %d, CPU/req %s: want both > 0", name, x.HWM, x.Sat.CPUPerReq)
		}
	}
	if rep.Upstream.BadSignatures != 0 || rep.Upstream.Signed == 0 {
		t.Errorf("upstream saw %d signed requests, %d with a bad signature", rep.Upstream.Signed, rep.Upstream.BadSignatures)
	}

	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| workload | system | req/s |", titles[sysProxy], titles[sysKSFull], titles[sysKSToken], titles[sysKSFwd],
		titles[sysKSFwdFull] + " (order): throughput", "the reverse proxy's", "added p99", "## Duration per step"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("results.md lacks %q", s)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg)
}

// checkReplicaNotes checks that the replicas row proved its shared state
// live: a budget refused across replicas, an idempotent replay on the
// other replica, both detectors, the shared audit chain verified.
func checkReplicaNotes(t *testing.T, notes []string) {
	t.Helper()
	all := strings.Join(notes, "\n")
	if strings.Contains(all, "WARNING") {
		t.Errorf("%s: %s", sysKSReplicas, all)
	}
	for _, want := range []string{"verified: policy active", "verified: the budget spans both replicas",
		"verified: idempotency shared", "verified: the detectors of both replicas", "verified: `keystile audit verify` of the chain both replicas wrote",
		"Redis: the installation's"} {
		if !strings.Contains(all, want) {
			t.Errorf("%s: notes lack %q:\n%s", sysKSReplicas, want, all)
		}
	}
	// The row's schema is gone after the run.
	m := regexp.MustCompile(`schema (kst_bench_[0-9a-f]{12}) `).FindStringSubmatch(all)
	if m == nil {
		t.Fatalf("%s: notes name no schema:\n%s", sysKSReplicas, all)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, envOr(pgEnvVar, pgDefault))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", m[1]).Scan(&n); err != nil || n != 0 {
		t.Errorf("%s: schema %s still there after the run (%d, %v)", sysKSReplicas, m[1], n, err)
	}
	// And so are its Redis keys.
	p := regexp.MustCompile(`\(prefix (keystile:[0-9a-f]{12}:)\) deleted`).FindStringSubmatch(all)
	if p == nil {
		t.Fatalf("%s: notes name no deleted Redis prefix:\n%s", sysKSReplicas, all)
	}
	o, err := goredis.ParseURL(envOr(redisEnvVar, redisDflt))
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(o)
	defer rc.Close()
	if keys, err := rc.Keys(ctx, p[1]+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("%s: Redis keys left under %s: %v (%v)", sysKSReplicas, p[1], keys, err)
	}
}

// checkSVG parses b as XML and checks it is an SVG with one polyline per
// measured row and a legend entry per system.
func checkSVG(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var root string
	lines, texts := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("latency.svg is not XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			switch se.Name.Local {
			case "polyline":
				lines++
			case "text":
				texts++
			}
		}
	}
	if root != "svg" || lines == 0 || texts < 10 {
		t.Errorf("latency.svg: root %q, %d polylines, %d texts", root, lines, texts)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	const n = 100000
	for i := 1; i <= n; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}, {1, 100 * time.Millisecond}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.008 || diff < -0.008 {
			t.Errorf("quantile(%v) = %s, want %s ± 0.8%%", tc.q, got, tc.want)
		}
	}
	if h.mean() < 49*time.Millisecond || h.mean() > 51*time.Millisecond {
		t.Errorf("mean %s", h.mean())
	}
	var a, b histogram
	a.record(time.Millisecond)
	b.record(3 * time.Millisecond)
	a.merge(&b)
	if a.n != 2 || a.min != int64(time.Millisecond) || a.max != int64(3*time.Millisecond) || a.quantile(1) != 3*time.Millisecond {
		t.Errorf("merge: n %d min %d max %d", a.n, a.min, a.max)
	}
}

// TestHistogramBuckets checks that every value falls in a bucket whose
// range holds it, with under 0.8 % relative width, and that buckets are
// ordered.
func TestHistogramBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		v := r.Int64N(1 << uint(r.IntN(48)+1))
		b := bucketOf(v)
		lo, hi := bucketRange(b)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, b, lo, hi)
		}
		if v >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/float64(halfCount) {
			t.Fatalf("bucket %d [%d, %d] too wide", b, lo, hi)
		}
	}
	prevHi := int64(-1)
	for b := 0; b < histBuckets; b++ {
		lo, hi := bucketRange(b)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d [%d, %d] after %d", b, lo, hi, prevHi)
		}
		prevHi = hi
	}
}

func TestParseProc(t *testing.T) {
	stat := "1234 (keystile (x) y) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 325*clockTick {
		t.Errorf("parseStatCPU = %s, %v; want %s", cpu, err, 325*clockTick)
	}
	if pp, err := parseStatPPID([]byte(stat)); err != nil || pp != 1 {
		t.Errorf("parseStatPPID = %d, %v", pp, err)
	}
	status := "Name:\tkeystile\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	m, err := parseStatus([]byte(status))
	if err != nil || m.HWM != 50<<20 || m.RSS != 40<<20 {
		t.Errorf("parseStatus = %+v, %v", m, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "VmRSS: 1 MB\nVmHWM: 2 kB", "VmRSS: -1 kB\nVmHWM: 2 kB", "VmHWM: 2 kB"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil && !strings.Contains(bad, "Vm") {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
	}
	// The real thing: this process.
	if c, err := procCPU(os.Getpid()); err != nil || c < 0 {
		t.Errorf("procCPU(self) = %s, %v", c, err)
	}
	if m, err := procMem(os.Getpid()); err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("procMem(self) = %+v, %v", m, err)
	}
}

// FuzzParseStat checks the /proc parsers never panic and read back what
// a well-formed line holds.
func FuzzParseStat(f *testing.F) {
	f.Add("1 (a b) R 0 1 1 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 1", int64(7), int64(8))
	f.Add("2 ()) S 1 2 2 0 -1 0 0 0 0 0 0 0", int64(0), int64(0))
	f.Add("", int64(1), int64(2))
	f.Fuzz(func(t *testing.T, s string, u, st int64) {
		_, _ = parseStatCPU([]byte(s))
		_, _ = parseStatPPID([]byte(s))
		_, _ = parseStatus([]byte(s))
		if u < 0 || st < 0 || u > 1<<40 || st > 1<<40 {
			return
		}
		line := fmt.Sprintf("9 (%s) S 1 9 9 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 1 1", strings.ReplaceAll(s, "\n", ""), u, st)
		got, err := parseStatCPU([]byte(line))
		if err != nil || got != time.Duration(u+st)*clockTick {
			t.Fatalf("parseStatCPU(%q) = %s, %v; want %s", line, got, err, time.Duration(u+st)*clockTick)
		}
	})
}

func TestSelectRows(t *testing.T) {
	rows, err := selectRows([]string{"keystile-replicas/order", "keystile-full", "proxy/order", "direct"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.System+"/"+r.Workload)
	}
	want := "direct/read proxy/order direct/order keystile-full/order keystile-replicas/order"
	if strings.Join(got, " ") != want {
		t.Errorf("selectRows = %v, want %s", got, want)
	}
	if _, err := selectRows([]string{"haproxy"}); err == nil {
		t.Error("unknown row accepted")
	}
	if code := run(context.Background(), []string{"-loads", "0"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("-loads 0: exit %d, want 2", code)
	}
}

// TestKeystileConfigCompiles checks the configs the keystile rows write
// against the config schema and the policy compiler, so that a schema
// change fails here rather than as an "unavailable" row.
func TestKeystileConfigCompiles(t *testing.T) {
	env := &runEnv{upstreamURL: "https://127.0.0.1:4443", certs: certFiles{CA: "/tmp/ca.pem"}}
	env.setConsoleToken("ksa_" + strings.Repeat("A", 43))
	for sys, f := range ksVariants {
		st := storeConf{redisAddr: "127.0.0.1:6379", redisDB: 2, redisPw: true}
		cfg, err := config.Parse(sys+".yaml", []byte(keystileConfig(env, 7878, 7879, 7880, f, st)))
		if err != nil {
			t.Errorf("%s: %v", sys, err)
			continue
		}
		if _, err := policy.Compile(cfg); err != nil {
			t.Errorf("%s: policy: %v", sys, err)
		}
		if f.replicas != (cfg.Store.Postgres.DSN == "env:"+childDSNEnv) ||
			f.replicas && (cfg.Store.Redis.Addr != st.redisAddr || cfg.Store.Redis.DB != 2 || cfg.Store.Redis.PasswordRef != "env:"+childRedisPwEnv || len(cfg.Policies) != 2) {
			t.Errorf("%s: store: %+v, %d policies", sys, cfg.Store, len(cfg.Policies))
		}
		if f.console && (cfg.Console.Listen != "127.0.0.1:7880" || len(cfg.Admin.Tokens) != 1) {
			t.Errorf("%s: console not configured", sys)
		}
		if f.policy && len(cfg.Policies) != pick(f.replicas, 2, 1) || f.audit && cfg.Audit.Sink != "sqlite" || cfg.Idempotency.Window != 24*time.Hour ||
			f.fwd != (cfg.Proxy.Listen == "127.0.0.1:7879") {
			t.Errorf("%s: config lacks a configured feature: %+v", sys, f)
		}
	}
}
