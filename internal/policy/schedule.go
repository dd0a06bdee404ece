package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// rateSpec is a parsed rate[].limit.
type rateSpec struct {
	perSec rate.Limit
	n      int // events per unit: the default burst
	per    time.Duration
}

// parseRate parses "N/s", "N/m" or "N/h" with N a positive integer.
func parseRate(s string) (rateSpec, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return rateSpec{}, fmt.Errorf("%q: want N/s, N/m or N/h", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 || n > 1_000_000 {
		return rateSpec{}, fmt.Errorf("%q: N must be an integer from 1 to 1000000", s)
	}
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return rateSpec{}, fmt.Errorf("%q: unit must be s, m or h", s)
	}
	return rateSpec{perSec: rate.Limit(float64(n) / per.Seconds()), n: n, per: per}, nil
}

// window is one allowed weekly window: on the days in days (bit 0 =
// Sunday), from start to end minutes after midnight. end <= start means
// the window crosses midnight into the next day.
type window struct {
	days       uint8
	start, end int
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseWindow parses "[DAYS ]HH:MM-HH:MM" where DAYS is a comma list of
// days (Mon) and day ranges (Mon-Fri, Fri-Mon wraps). Without DAYS the
// window applies every day. 24:00 is allowed as an end; an end before the
// start crosses midnight ("Fri 22:00-02:00" ends Saturday 02:00).
func parseWindow(s string) (window, error) {
	f := strings.Fields(s)
	var w window
	var span string
	switch len(f) {
	case 1:
		w.days, span = 0x7f, f[0]
	case 2:
		d, err := parseDays(f[0])
		if err != nil {
			return window{}, fmt.Errorf("%q: %w", s, err)
		}
		w.days, span = d, f[1]
	default:
		return window{}, fmt.Errorf("%q: want \"[Mon-Fri] HH:MM-HH:MM\"", s)
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return window{}, fmt.Errorf("%q: want a time range HH:MM-HH:MM", s)
	}
	var err error
	if w.start, err = parseClock(a, false); err != nil {
		return window{}, fmt.Errorf("%q: %w", s, err)
	}
	if w.end, err = parseClock(b, true); err != nil {
		return window{}, fmt.Errorf("%q: %w", s, err)
	}
	if w.start == w.end {
		return window{}, fmt.Errorf("%q: empty time range", s)
	}
	return w, nil
}

func parseDays(s string) (uint8, error) {
	var mask uint8
	for part := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		da, ok := dayNames[strings.ToLower(a)]
		if !ok {
			return 0, fmt.Errorf("unknown day %q (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)", a)
		}
		if !isRange {
			mask |= 1 << da
			continue
		}
		db, ok := dayNames[strings.ToLower(b)]
		if !ok {
			return 0, fmt.Errorf("unknown day %q (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)", b)
		}
		for d := da; ; d = (d + 1) % 7 {
			mask |= 1 << d
			if d == db {
				break
			}
		}
	}
	return mask, nil
}

// parseClock parses HH:MM (00:00-23:59; 24:00 too when end is set) into
// minutes after midnight.
func parseClock(s string, end bool) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || s[0] == '+' || s[3] == '+' || s[0] == '-' || s[3] == '-' {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	if h == 24 && m == 0 && end {
		return 24 * 60, nil
	}
	if h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("time %q: out of range", s)
	}
	return h*60 + m, nil
}

// contains reports whether local time t (already in the policy's zone) is
// inside the window.
func (w window) contains(t time.Time) bool {
	d := t.Weekday()
	m := t.Hour()*60 + t.Minute()
	on := func(day time.Weekday) bool { return w.days&(1<<day) != 0 }
	if w.start < w.end {
		return on(d) && m >= w.start && m < w.end
	}
	// Crossing midnight: the evening part today, or the morning part of a
	// window that started yesterday.
	return (on(d) && m >= w.start) || (on((d+6)%7) && m < w.end)
}
