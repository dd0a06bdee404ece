package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are small SVGs drawn on the server: numbers in attributes, no
// script, no inline style (the stylesheet colours them by class).

// chartSeries is one line.
type chartSeries struct {
	Class  string
	Label  string
	Points string // SVG polyline points
	Last   string // the last value, formatted
}

// chartView is one line chart.
type chartView struct {
	Title      string
	W, H       int
	PlotH      int
	Series     []chartSeries
	YMax       string // label of the top grid line
	YMid       string
	XFrom, XTo string
	Empty      bool
}

const (
	chartW = 600
	chartH = 140
	chartT = 8  // top margin
	chartB = 18 // bottom margin (x labels)
)

// lineChart draws series of equal length (values ≥ 0) on a common scale;
// format prints a value for the axis.
func lineChart(title string, from, to time.Time, format func(float64) string, classes, labels []string, values ...[]float64) chartView {
	cv := chartView{Title: title, W: chartW, H: chartH, PlotH: chartH - chartB, XFrom: from.UTC().Format("15:04:05"), XTo: to.UTC().Format("15:04:05 UTC")}
	top := 0.0
	for _, vs := range values {
		for _, v := range vs {
			top = math.Max(top, v)
		}
	}
	cv.Empty = top == 0
	top = niceCeil(top)
	cv.YMax, cv.YMid = format(top), format(top/2)
	plot := float64(chartH - chartB - chartT)
	for i, vs := range values {
		var b strings.Builder
		n := len(vs)
		for j, v := range vs {
			x := 0.0
			if n > 1 {
				x = float64(j) * chartW / float64(n-1)
			}
			y := float64(chartT) + plot - v/top*plot
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
		}
		s := chartSeries{Class: classes[i], Label: labels[i], Points: b.String()}
		if n > 0 {
			s.Last = format(vs[n-1])
		}
		cv.Series = append(cv.Series, s)
	}
	return cv
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatRate(v float64) string {
	switch {
	case v >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64) + "/s"
	case v < 1:
		return strconv.FormatFloat(v, 'f', 2, 64) + "/s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
}

func formatMillis(v float64) string {
	return formatDuration(time.Duration(v * float64(time.Millisecond)))
}

// formatDuration prints a latency compactly: 180µs, 2.4ms, 1.2s.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
}

// barView is a budget bar: used of limit.
type barView struct {
	Width   int // of 100
	Class   string
	Percent string
}

// bar draws used/limit; over 80% is "warn", at or over 100% "full".
func bar(used, limit float64) barView {
	if limit <= 0 {
		return barView{Width: 100, Class: "full", Percent: "—"}
	}
	p := used / limit * 100
	b := barView{Width: int(math.Round(math.Min(math.Max(p, 0), 100))), Class: "ok", Percent: strconv.FormatFloat(p, 'f', 1, 64) + "%"}
	switch {
	case p >= 100:
		b.Class = "full"
	case p >= 80:
		b.Class = "warn"
	}
	return b
}

func strconvF(f float64, prec int) string { return strconv.FormatFloat(f, 'f', prec, 64) }
