package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Row statuses.
const (
	statusOK      = "ok"
	statusSkipped = "skipped"
	statusFailed  = "failed"
)

// stepResult is one measured step: saturation (Offered 0) or one offered
// rate.
type stepResult struct {
	Offered    float64 // req/s scheduled (open loop); 0 at saturation
	Load       float64 // Offered as a fraction of the base saturation
	Throughput float64 // successful answers per second
	OK, Errors int64
	Dropped    int64
	Late       int64
	P50, P90   time.Duration
	P99, P999  time.Duration
	Max, Mean  time.Duration
	LagP99     time.Duration // open loop: the generator's own lateness (p99)
	CPUPerReq  time.Duration // the system's CPU time per successful request
	Cores      float64       // the system's CPU use, in cores
	FirstError string
}

func newStepResult(lr *loadResult) *stepResult {
	s := &stepResult{OK: lr.ok, Errors: lr.errors, Dropped: lr.dropped, Late: lr.late, FirstError: lr.firstErr,
		P50: lr.hist.quantile(0.50), P90: lr.hist.quantile(0.90), P99: lr.hist.quantile(0.99), P999: lr.hist.quantile(0.999),
		Max: time.Duration(lr.hist.max), Mean: lr.hist.mean(), LagP99: lr.lag.quantile(0.99)}
	if lr.elapsed > 0 {
		s.Throughput = float64(lr.ok) / lr.elapsed.Seconds()
	}
	return s
}

// rowResult is everything measured for one (system, workload).
type rowResult struct {
	System, Workload, Title string
	Status                  string
	Reason                  string // why skipped or failed
	Sat                     *stepResult
	Rates                   []*stepResult
	RSS, HWM                int64 // bytes, after the row (HWM: peak)
	Notes                   []string
}

type stepTime struct {
	Name string
	D    time.Duration
}

// report is a whole run.
type report struct {
	Opts       options
	Date       time.Time
	CPUs       int
	CPUModel   string
	GoVersion  string
	Rows       []*rowResult
	Steps      []stepTime
	Wall       time.Duration
	BaseSystem map[string]string // workload -> system whose saturation set the offered rates
	Upstream   upstreamStats
}

func newReport(o options) *report {
	return &report{Opts: o, Date: time.Now().UTC(), CPUs: runtime.NumCPU(), CPUModel: cpuModel(),
		GoVersion: runtime.Version(), BaseSystem: map[string]string{}}
}

func (r *report) step(name string, d time.Duration) { r.Steps = append(r.Steps, stepTime{name, d}) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func (r *report) row(sys, workload string) *rowResult {
	for _, x := range r.Rows {
		if x.System == sys && x.Workload == workload && x.Status == statusOK {
			return x
		}
	}
	return nil
}

// warnings counts the notes that say a configured feature was not active.
func (x *rowResult) warnings() int {
	n := 0
	for _, s := range x.Notes {
		if strings.HasPrefix(s, "WARNING") {
			n++
		}
	}
	return n
}

// rateAt returns the row's step at load fraction f (nil if none).
func (x *rowResult) rateAt(f float64) *stepResult {
	if x == nil {
		return nil
	}
	for _, s := range x.Rates {
		if math.Abs(s.Load-f) < 1e-9 {
			return s
		}
	}
	return nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

func fmtAdded(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

func mb(b int64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

var workloadTitle = map[string]string{
	workRead:  "read: `GET /api/v3/ticker/price?symbol=BTCUSDT`",
	workOrder: "order: `POST /api/v3/order` (form body, unique `Idempotency-Key`)",
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	o := r.Opts
	fmt.Fprintf(&b, "# keystile benchmark results\n\n")
	fmt.Fprintf(&b, "- machine: %d CPUs (`nproc`), %s, %s/%s\n", r.CPUs, r.CPUModel, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- Go: %s; date: %s\n", r.GoVersion, r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- command: `%s`; wall time %s\n", strings.TrimSpace(o.Command), r.Wall.Round(time.Second))
	fmt.Fprintf(&b, "- per row: %s closed-loop warm-up, %s at saturation (%d concurrent keep-alive clients), then %s at each offered load (open loop, %d workers)\n",
		o.Warmup, o.Duration, o.Conns, o.Duration, o.Conns)
	fmt.Fprintf(&b, "- upstream: the bench binary as a TLS 1.3 HTTP/1.1 server on 127.0.0.1 (its own process); the load generator runs in the bench process, on the same cores\n\n")

	fmt.Fprintf(&b, "## Saturation (closed loop)\n\n")
	fmt.Fprintf(&b, "| workload | system | req/s | × bare proxy | p50 | p90 | p99 | p99.9 | CPU/req | cores | RSS peak MB | errors |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Rows {
		if x.Status != statusOK {
			fmt.Fprintf(&b, "| %s | %s | %s | | | | | | | | | |\n", x.Workload, x.Title, x.Reason)
			continue
		}
		s := x.Sat
		title := x.Title
		if x.warnings() > 0 {
			title += " ⚠ not all configured features active (see notes)"
		}
		ratio := "—"
		if p := r.row(sysProxy, x.Workload); p != nil && p.Sat.Throughput > 0 {
			ratio = fmt.Sprintf("%.2f×", s.Throughput/p.Sat.Throughput)
		}
		cpu, cores := "—", "—"
		if x.System != sysDirect {
			cpu, cores = fmtDur(s.CPUPerReq), fmt.Sprintf("%.2f", s.Cores)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", x.Workload, title, s.Throughput, ratio,
			fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), cpu, cores, mb(x.HWM), s.Errors)
	}

	for _, w := range []string{workRead, workOrder} {
		var rows []*rowResult
		for _, x := range r.Rows {
			if x.Workload == w && x.Status == statusOK {
				rows = append(rows, x)
			}
		}
		if len(rows) == 0 {
			continue
		}
		direct := r.row(sysDirect, w)
		fmt.Fprintf(&b, "\n## Offered load, %s\n\n", workloadTitle[w])
		if bs := r.BaseSystem[w]; bs != "" {
			fmt.Fprintf(&b, "Offered rates are fractions of the %s's saturation throughput, the same for every row.\n", titles[bs])
		}
		fmt.Fprintf(&b, "Latency is measured from each request's scheduled send time; \"added\" is over direct at the same offered rate.\n\n")
		fmt.Fprintf(&b, "| system | load | offered req/s | achieved | p50 | p90 | p99 | p99.9 | added p50 | added p99 | CPU/req | late | dropped | errors |\n")
		fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range rows {
			for _, s := range x.Rates {
				a50, a99 := "—", "—"
				if d := direct.rateAt(s.Load); d != nil && x.System != sysDirect {
					a50, a99 = fmtAdded(s.P50-d.P50), fmtAdded(s.P99-d.P99)
				}
				cpu := "—"
				if x.System != sysDirect {
					cpu = fmtDur(s.CPUPerReq)
				}
				fmt.Fprintf(&b, "| %s | %.0f%% | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |\n", x.Title, s.Load*100, s.Offered,
					s.Throughput, fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), a50, a99, cpu, s.Late, s.Dropped, s.Errors)
			}
		}
	}

	fmt.Fprintf(&b, "\n## Against the targets (DESIGN.md)\n\n")
	for _, t := range []struct{ sys, w string }{{sysKSFull, workOrder}, {sysKSToken, workRead}} {
		x, p, d := r.row(t.sys, t.w), r.row(sysProxy, t.w), r.row(sysDirect, t.w)
		if x == nil {
			fmt.Fprintf(&b, "- %s (%s): not measured in this run\n", titles[t.sys], t.w)
			continue
		}
		if p != nil && p.Sat.Throughput > 0 {
			ratio := x.Sat.Throughput / p.Sat.Throughput
			fmt.Fprintf(&b, "- %s (%s): throughput **%.2f×** the bare proxy's (target ≥ 1.0×: %s)", titles[t.sys], t.w, ratio, verdict(ratio >= 1.0))
			if n := r.row(sysNginx, t.w); n != nil && n.Sat.Throughput > 0 {
				fmt.Fprintf(&b, "; %.2f× nginx's (stretch ≥ 0.5×)", x.Sat.Throughput/n.Sat.Throughput)
			}
			b.WriteString("\n")
		}
		if s, ds := x.rateAt(0.5), d.rateAt(0.5); s != nil && ds != nil {
			a50, a99 := s.P50-ds.P50, s.P99-ds.P99
			fmt.Fprintf(&b, "- %s (%s) at half of saturation (%.0f req/s): added p50 **%s** (target ≤ 100 µs: %s), added p99 **%s** (target ≤ 1 ms: %s)\n",
				titles[t.sys], t.w, s.Offered, fmtAdded(a50), verdict(a50 <= 100*time.Microsecond), fmtAdded(a99), verdict(a99 <= time.Millisecond))
		}
	}
	// The forward proxy next to the reverse proxy, same run: what the
	// extra TLS leg and the CONNECT tunnel cost.
	for _, t := range []struct{ fwd, rev, w string }{{sysKSFwd, sysKSToken, workRead}, {sysKSFwdFull, sysKSFull, workOrder}} {
		f, rv, d := r.row(t.fwd, t.w), r.row(t.rev, t.w), r.row(sysDirect, t.w)
		if f == nil || rv == nil || rv.Sat.Throughput <= 0 {
			continue
		}
		fmt.Fprintf(&b, "- %s (%s): throughput **%.2f×** the reverse proxy's (%.0f vs %.0f req/s), CPU per request %s vs %s",
			titles[t.fwd], t.w, f.Sat.Throughput/rv.Sat.Throughput, f.Sat.Throughput, rv.Sat.Throughput, fmtDur(f.Sat.CPUPerReq), fmtDur(rv.Sat.CPUPerReq))
		if p := r.row(sysProxy, t.w); p != nil && p.Sat.Throughput > 0 {
			fmt.Fprintf(&b, "; %.2f× the bare proxy's", f.Sat.Throughput/p.Sat.Throughput)
		}
		if fs, rs, ds := f.rateAt(0.5), rv.rateAt(0.5), d.rateAt(0.5); fs != nil && rs != nil && ds != nil {
			fmt.Fprintf(&b, "; at half of saturation added p50 %s vs %s, added p99 %s vs %s",
				fmtAdded(fs.P50-ds.P50), fmtAdded(rs.P50-ds.P50), fmtAdded(fs.P99-ds.P99), fmtAdded(rs.P99-ds.P99))
		}
		b.WriteString("\n")
	}
	if p, n := r.row(sysProxy, workOrder), r.row(sysNginx, workOrder); p != nil && n != nil && p.Sat.Throughput > 0 {
		fmt.Fprintf(&b, "- reference: nginx does %.2f× the bare Go proxy's throughput (order workload)\n", n.Sat.Throughput/p.Sat.Throughput)
	}

	fmt.Fprintf(&b, "\n## Rows: what was on, what was verified\n\n")
	for _, x := range r.Rows {
		if x.Status != statusOK || len(x.Notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- **%s** (%s):\n", x.Title, x.Workload)
		for _, n := range x.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
		if x.Sat.FirstError != "" {
			fmt.Fprintf(&b, "  - first error: `%s`\n", x.Sat.FirstError)
		}
	}
	fmt.Fprintf(&b, "\nUpstream totals: %d requests, %d orders, %d signed requests checked, %d bad signatures.\n",
		r.Upstream.Requests, r.Upstream.Orders, r.Upstream.Signed, r.Upstream.BadSignatures)
	var lag time.Duration
	for _, x := range r.Rows {
		for _, s := range x.Rates {
			lag = max(lag, s.LagP99)
		}
	}
	fmt.Fprintf(&b, "Load generator lateness (p99 of scheduled → released, worst step): %s; it is part of every latency above, direct included.\n", fmtDur(lag))

	fmt.Fprintf(&b, "\n## Duration per step\n\n| step | time |\n|---|---:|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "| %s | %s |\n", s.Name, s.D.Round(10*time.Millisecond))
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// write writes results.md and latency.svg into dir.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latency.svg"), r.svg(), 0o600)
}

// Chart colours per system (colour-blind-safe palette).
var colours = map[string]string{
	sysDirect: "#000000", sysProxy: "#0072B2", sysNginx: "#009E73", sysKSToken: "#E69F00", sysKSFull: "#D55E00",
	sysKSSign: "#CC79A7", sysKSPolicy: "#56B4E9", sysKSAudit: "#F0E442",
	sysKSFwd: "#8C564B", sysKSFwdFull: "#7F3C8D",
	sysKSConsole: "#882255",
}

// svg draws p99 latency against offered load, one panel per workload,
// one line per system, log-scale latency axis.
func (r *report) svg() []byte {
	const (
		panelW, panelH = 460.0, 300.0
		left, top      = 70.0, 50.0
		gap            = 90.0
		legendH        = 24.0
	)
	workloads := []string{}
	for _, w := range []string{workRead, workOrder} {
		for _, x := range r.Rows {
			if x.Workload == w && x.Status == statusOK && len(x.Rates) > 0 {
				workloads = append(workloads, w)
				break
			}
		}
	}
	var systems []string
	for _, x := range r.Rows {
		if x.Status == statusOK && len(x.Rates) > 0 && !contains(systems, x.System) {
			systems = append(systems, x.System)
		}
	}
	n := max(len(workloads), 1)
	width := left + float64(n)*panelW + float64(n-1)*gap + 30
	height := top + panelH + 60 + legendH*float64((len(systems)+1)/2) + 20
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="#ffffff"/>
<text x="%.0f" y="22" font-size="15" font-weight="bold">p99 latency against offered load (open loop, from scheduled send time)</text>
`, width, height, width, height, left)
	// A common log-scale y range over every plotted point.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range r.Rows {
		for _, s := range x.Rates {
			if s.P99 > 0 {
				lo = math.Min(lo, float64(s.P99))
				hi = math.Max(hi, float64(s.P99))
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = float64(100*time.Microsecond), float64(10*time.Millisecond)
	}
	yLo := math.Pow(10, math.Floor(math.Log10(lo)))
	yHi := math.Pow(10, math.Ceil(math.Log10(hi)))
	if yHi <= yLo {
		yHi = yLo * 10
	}
	for i, w := range workloads {
		x0 := left + float64(i)*(panelW+gap)
		y0 := top
		maxX := 0.0
		for _, x := range r.Rows {
			if x.Workload == w && x.Status == statusOK {
				for _, s := range x.Rates {
					maxX = math.Max(maxX, s.Offered)
				}
			}
		}
		if maxX <= 0 {
			maxX = 1
		}
		maxX = niceCeil(maxX)
		px := func(v float64) float64 { return x0 + v/maxX*panelW }
		py := func(d float64) float64 {
			return y0 + panelH - (math.Log10(d)-math.Log10(yLo))/(math.Log10(yHi)-math.Log10(yLo))*panelH
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-weight="bold">%s</text>
<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>
`, x0, y0-8, html.EscapeString(strings.ReplaceAll(workloadTitle[w], "`", "")), x0, y0, panelW, panelH)
		for k := 0; k <= 5; k++ {
			v := maxX * float64(k) / 5
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>
`, px(v), y0, px(v), y0+panelH, px(v), y0+panelH+16, v)
		}
		for d := yLo; d <= yHi*1.0001; d *= 10 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>
`, x0, py(d), x0+panelW, py(d), x0-6, py(d)+4, html.EscapeString(fmtDur(time.Duration(d))))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered load (requests/s)</text>
<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">p99 latency (log scale)</text>
`, x0+panelW/2, y0+panelH+36, x0-52, y0+panelH/2)
		for _, x := range r.Rows {
			if x.Workload != w || x.Status != statusOK || len(x.Rates) == 0 {
				continue
			}
			var pts []string
			for _, s := range x.Rates {
				if s.P99 > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.Offered), py(float64(s.P99))))
				}
			}
			c := colours[x.System]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>
`, c, strings.Join(pts, " "))
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>
`, xy[0], xy[1], c)
			}
		}
	}
	ly := top + panelH + 56
	for i, s := range systems {
		lx := left + float64(i%2)*(panelW+gap)
		yy := ly + float64(i/2)*legendH
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/><text x="%.1f" y="%.1f">%s</text>
`, lx, yy, lx+28, yy, colours[s], lx+36, yy+4, html.EscapeString(titles[s]))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
