package scan

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteText writes one line per finding and a summary line.
func WriteText(w io.Writer, rep *Report) error {
	var b strings.Builder
	for _, f := range rep.Findings {
		loc := fmt.Sprintf("%s:%d", f.File, f.Line)
		if f.Commit != "" {
			loc = shortCommit(f.Commit) + " " + loc
		}
		fmt.Fprintf(&b, "%s: %s %s %s\n", loc, f.Detector, f.Rule, f.Preview)
	}
	fmt.Fprintf(&b, "%d finding(s) in %d file(s), %d bytes scanned", len(rep.Findings), rep.Files, rep.Bytes)
	if rep.Suppressed > 0 {
		fmt.Fprintf(&b, ", %d suppressed by baseline", rep.Suppressed)
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(&b, ", %d file(s) skipped (binary or too large)", rep.Skipped)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// WriteJSON writes the report as indented JSON (the baseline format).
func WriteJSON(w io.Writer, rep *Report) error {
	r := *rep
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SARIF 2.1.0 (OASIS), the subset keystile writes.
const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID               string    `json:"id"`
	ShortDescription sarifText `json:"shortDescription"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]string `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// WriteSARIF writes the report as a SARIF 2.1.0 log with one run.
func WriteSARIF(w io.Writer, rep *Report) error {
	idx := map[string]int{}
	var rules []sarifRule
	ids := make([]string, 0)
	for _, f := range rep.Findings {
		if _, ok := idx[f.Rule]; !ok {
			idx[f.Rule] = -1
			ids = append(ids, f.Rule)
		}
	}
	sort.Strings(ids)
	for i, id := range ids {
		idx[id] = i
		rules = append(rules, sarifRule{ID: id, ShortDescription: sarifText{Text: "leaked secret: " + id}})
	}
	if rules == nil {
		rules = []sarifRule{}
	}
	results := make([]sarifResult, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		line := f.Line
		if line < 1 {
			line = 1
		}
		r := sarifResult{
			RuleID: f.Rule, RuleIndex: idx[f.Rule], Level: "error",
			Message: sarifText{Text: fmt.Sprintf("%s found a secret (%s)", f.Detector, f.Preview)},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: sarifArtifact{URI: f.File}, Region: sarifRegion{StartLine: line}}}},
			PartialFingerprints: map[string]string{"keystile/v1": f.Fingerprint},
		}
		if f.Commit != "" {
			r.Properties = map[string]string{"commit": f.Commit}
		}
		results = append(results, r)
	}
	log := sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{{
		Tool:    sarifTool{Driver: sarifDriver{Name: "keystile", InformationURI: "https://github.com/keystile/keystile", Rules: rules}},
		Results: results,
	}}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}
