package scan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrBadBaseline is returned by ParseBaseline for input that is not a
// keystile JSON scan report.
var ErrBadBaseline = errors.New("scan: baseline is not a keystile JSON report")

// maxBaselineBytes bounds what ParseBaseline reads.
const maxBaselineBytes = 64 << 20

// Baseline is a set of finding fingerprints from an earlier report. Known
// findings are matched by fingerprint (file, rule and secret hash), never by
// value, so a baseline file holds no secret.
type Baseline struct {
	fps map[string]bool
}

// ParseBaseline reads a JSON report written by WriteJSON.
func ParseBaseline(r io.Reader) (*Baseline, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBaselineBytes+1))
	if err != nil {
		return nil, fmt.Errorf("scan: baseline: %w", err)
	}
	if len(data) > maxBaselineBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadBaseline, maxBaselineBytes)
	}
	var rep struct {
		Version  int `json:"version"`
		Findings []struct {
			Fingerprint string `json:"fingerprint"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBaseline, err)
	}
	if rep.Version != ReportVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadBaseline, rep.Version)
	}
	b := &Baseline{fps: make(map[string]bool, len(rep.Findings))}
	for _, f := range rep.Findings {
		if f.Fingerprint == "" {
			return nil, fmt.Errorf("%w: finding without fingerprint", ErrBadBaseline)
		}
		b.fps[f.Fingerprint] = true
	}
	return b, nil
}

// Len is the number of known findings.
func (b *Baseline) Len() int { return len(b.fps) }

// Contains reports whether a finding with this fingerprint is known.
func (b *Baseline) Contains(fingerprint string) bool { return b != nil && b.fps[fingerprint] }

// Suppress removes the findings known to b from rep and counts them in
// rep.Suppressed. A nil Baseline suppresses nothing.
func (rep *Report) Suppress(b *Baseline) {
	if b == nil {
		return
	}
	kept := rep.Findings[:0]
	for _, f := range rep.Findings {
		if b.Contains(f.Fingerprint) {
			rep.Suppressed++
			continue
		}
		kept = append(kept, f)
	}
	rep.Findings = kept
}
