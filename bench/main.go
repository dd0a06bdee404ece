package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the run's settings (the flags).
type options struct {
	Short    bool
	Duration time.Duration // per measured step
	Warmup   time.Duration // closed-loop warm-up per row, not measured
	Conns    int           // concurrent clients at saturation; size of the open-loop worker pool
	Loads    []float64     // offered loads as fractions of the bare proxy's saturation
	Out      string        // output directory ("" = write nothing)
	Only     []string      // system ids or id/workload; empty = defaultRows
	Keystile string        // "" = build ./cmd/keystile; "self" = this binary as keystile; else a path
	Profile  string        // directory for CPU profiles of keystile serve (implies Keystile "self")
	Command  string        // how the run was invoked, for the report
	Progress io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "quick run (whole run < 2 min on 2 cores): shorter steps, loads 25,50,90 %")
	dur := fs.Duration("duration", 0, "measured time per step (default 5s; 1.5s with -short)")
	warm := fs.Duration("warmup", 0, "unmeasured closed-loop warm-up per row (default 1s; 300ms with -short)")
	conns := fs.Int("conns", 64, "concurrent keep-alive clients at saturation; open-loop worker pool size")
	loads := fs.String("loads", "", "offered loads, % of the bare proxy's saturation (default 10,25,50,75,90; 25,50,90 with -short)")
	out := fs.String("out", "docs/benchmarks", `directory for results.md and latency.svg ("" = none)`)
	only := fs.String("only", "", "comma-separated rows: "+strings.Join(allSystems(), ",")+" (optionally id/read or id/order)")
	ks := fs.String("keystile", "", `keystile binary ("" = go build ./cmd/keystile into the temp dir; "self" = this binary)`)
	prof := fs.String("cpuprofile", "", "directory: write a CPU profile of each keystile serve there (runs keystile as this binary)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o := options{Short: *short, Duration: *dur, Warmup: *warm, Conns: *conns, Out: *out, Keystile: *ks, Profile: *prof,
		Command: "go run ./bench " + strings.Join(args, " "), Progress: stderr}
	if *quiet {
		o.Progress = io.Discard
	}
	if o.Profile != "" {
		o.Keystile = "self"
	}
	if o.Duration == 0 {
		o.Duration = pick(o.Short, 1500*time.Millisecond, 5*time.Second)
	}
	if o.Warmup == 0 {
		o.Warmup = pick(o.Short, 300*time.Millisecond, time.Second)
	}
	ls := *loads
	if ls == "" {
		ls = pick(o.Short, "25,50,90", "10,25,50,75,90")
	}
	for _, f := range strings.Split(ls, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || p <= 0 || p > 200 {
			fmt.Fprintf(stderr, "bench: -loads: %q is not a percentage in (0, 200]\n", f)
			return 2
		}
		o.Loads = append(o.Loads, p/100)
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
		if _, err := selectRows(o.Only); err != nil {
			fmt.Fprintf(stderr, "bench: -only: %v\n", err)
			return 2
		}
	}
	if o.Conns < 1 || o.Conns > 4096 || o.Duration < 100*time.Millisecond || o.Duration > 10*time.Minute {
		fmt.Fprintln(stderr, "bench: -conns must be 1..4096 and -duration 100ms..10m")
		return 2
	}
	rep, err := bench(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if o.Out != "" {
		if err := rep.write(o.Out); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: wrote %s and %s\n", filepath.Join(o.Out, "results.md"), filepath.Join(o.Out, "latency.svg"))
	}
	return 0
}

func pick[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

func allSystems() []string {
	var s []string
	for _, r := range append(slices.Clone(defaultRows), ablationRows...) {
		if !slices.Contains(s, r.System) {
			s = append(s, r.System)
		}
	}
	return s
}

// selectRows returns the rows -only names, in the canonical order (bare
// proxy first per workload).
func selectRows(only []string) ([]rowSpec, error) {
	if len(only) == 0 {
		return slices.Clone(defaultRows), nil
	}
	all := append(slices.Clone(defaultRows), ablationRows...)
	var out []rowSpec
	for _, w := range []string{workRead, workOrder} {
		for _, r := range all {
			if r.Workload != w {
				continue
			}
			for _, o := range only {
				if o == r.System || o == r.System+"/"+r.Workload {
					out = append(out, r)
					break
				}
			}
		}
	}
	for _, o := range only {
		found := false
		for _, r := range all {
			if o == r.System || o == r.System+"/"+r.Workload {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown row %q (rows: %s)", o, strings.Join(allSystems(), ","))
		}
	}
	return out, nil
}

// bench runs the whole benchmark. Every process it starts is ended and its
// temp dir removed before it returns.
func bench(ctx context.Context, o options) (*report, error) {
	rows, err := selectRows(o.Only)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rep := newReport(o)
	logf := func(format string, args ...any) { fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...) }

	tmp, err := os.MkdirTemp("", "keystile-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	env := &runEnv{tmp: tmp, self: self, conns: o.Conns, profileDir: o.Profile, seq: new(atomic.Int64), runID: randHex(4), logf: logf,
		apiKey: "bench-api-key-" + randHex(8), secret: randHex(32)}
	env.setConsoleToken("ksa_" + base64.RawURLEncoding.EncodeToString([]byte(randHex(16))[:32]))
	if env.certs, err = writeCerts(tmp); err != nil {
		return nil, err
	}

	needKS := slices.ContainsFunc(rows, func(r rowSpec) bool { _, ok := ksVariants[r.System]; return ok })
	if o.Profile != "" {
		if env.profileDir, err = filepath.Abs(o.Profile); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(env.profileDir, 0o750); err != nil {
			return nil, err
		}
	}
	if needKS {
		t0 := time.Now()
		if err := locateKeystile(ctx, env, o.Keystile); err != nil {
			return nil, err
		}
		rep.step("keystile binary ("+pick(env.keystileSelf, "this binary", env.keystile)+")", time.Since(t0))
	}

	t0 := time.Now()
	up, err := startUpstream(ctx, env)
	if err != nil {
		return nil, err
	}
	defer up.stop()
	rep.step("upstream start", time.Since(t0))
	logf("upstream %s (TLS 1.3, HTTP/1.1); %d rows; %s per step", env.upstreamURL, len(rows), o.Duration)

	base := map[string]float64{} // workload -> saturation throughput that the rates derive from
	for _, r := range rows {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res := measureRow(ctx, env, o, r, base, rep)
		if res.Status == statusOK && base[r.Workload] == 0 && res.Sat != nil {
			base[r.Workload] = res.Sat.Throughput
			rep.BaseSystem[r.Workload] = r.System
		}
		rep.Rows = append(rep.Rows, res)
	}
	if st, err := readUpstreamStats(ctx, env); err == nil {
		rep.Upstream = st
	}
	rep.Wall = time.Since(began)
	return rep, nil
}

// locateKeystile builds or finds the keystile binary.
func locateKeystile(ctx context.Context, env *runEnv, flagVal string) error {
	switch flagVal {
	case "self":
		env.keystile, env.keystileSelf = env.self, true
		return nil
	case "":
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		env.keystile = filepath.Join(env.tmp, "keystile")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", env.keystile, "./cmd/keystile") // #nosec G204 -- fixed arguments
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/keystile: %w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	default:
		p, err := filepath.Abs(flagVal)
		if err != nil {
			return err
		}
		env.keystile = p
		return nil
	}
}

// moduleRoot finds the keystile module's root from the working directory.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod")) // #nosec G304 -- go.mod above the working directory
		if err == nil && strings.Contains(string(b), "module github.com/keystile/keystile\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("not inside the keystile module (run from the repository)")
		}
		d = parent
	}
}

// measureRow starts one system, warms it up, measures saturation and the
// offered loads, and stops it.
func measureRow(ctx context.Context, env *runEnv, o options, r rowSpec, base map[string]float64, rep *report) *rowResult {
	res := &rowResult{System: r.System, Workload: r.Workload, Title: titles[r.System]}
	name := r.System + "/" + r.Workload
	t0 := time.Now()
	sys, err := startSystem(ctx, env, r.System, r.Workload)
	rep.step(name+": setup", time.Since(t0))
	if err != nil {
		var sk *skipError
		if errors.As(err, &sk) {
			res.Status, res.Reason = statusSkipped, sk.reason
		} else {
			res.Status, res.Reason = statusFailed, err.Error()
		}
		env.logf("%s: %s", name, res.Reason)
		return res
	}
	defer sys.stop()
	res.Notes = append(res.Notes, sys.notes...)

	t0 = time.Now()
	closedLoop(ctx, sys.target, o.Conns, o.Warmup)
	rep.step(name+": warm-up", time.Since(t0))

	t0 = time.Now()
	res.Sat = measureStep(sys, func() *loadResult { return closedLoop(ctx, sys.target, o.Conns, o.Duration) })
	res.Sat.Offered = 0
	rep.step(name+": saturation", time.Since(t0))
	env.logf("%s: saturation %.0f req/s, p50 %s p99 %s, errors %d %s", name, res.Sat.Throughput,
		fmtDur(res.Sat.P50), fmtDur(res.Sat.P99), res.Sat.Errors, res.Sat.FirstError)

	b := base[r.Workload]
	if b == 0 {
		b = res.Sat.Throughput // no bare proxy measured before: the row's own saturation
	}
	for _, f := range o.Loads {
		rate := f * b
		if rate < 1 || ctx.Err() != nil {
			continue
		}
		t0 = time.Now()
		st := measureStep(sys, func() *loadResult { return openLoop(ctx, sys.target, rate, o.Conns, o.Duration) })
		st.Offered, st.Load = rate, f
		rep.step(fmt.Sprintf("%s: %.0f%% (%.0f req/s)", name, f*100, rate), time.Since(t0))
		env.logf("%s: offered %.0f req/s: achieved %.0f, p50 %s p99 %s p99.9 %s, late %d dropped %d errors %d", name, rate,
			st.Throughput, fmtDur(st.P50), fmtDur(st.P99), fmtDur(st.P999), st.Late, st.Dropped, st.Errors)
		res.Rates = append(res.Rates, st)
	}
	m := sys.group.mem()
	res.RSS, res.HWM = m.RSS, m.HWM
	if sys.finish != nil {
		res.Notes = append(res.Notes, sys.finish(ctx)...)
	}
	res.Status = statusOK
	return res
}

// measureStep runs one load step and adds the system's CPU use.
func measureStep(sys *system, f func() *loadResult) *stepResult {
	runtime.GC()
	c0 := sys.group.cpu()
	lr := f()
	c1 := sys.group.cpu()
	st := newStepResult(lr)
	if sys.group.root > 0 && lr.ok > 0 {
		st.CPUPerReq = (c1 - c0) / time.Duration(lr.ok)
		st.Cores = float64(c1-c0) / float64(lr.elapsed)
	}
	return st
}
