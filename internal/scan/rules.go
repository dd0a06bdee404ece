package scan

import (
	"bytes"
	_ "embed" // the rule set
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// gitleaksRules is gitleaks' default rule set, copied verbatim (MIT; see
// gitleaks/README.md and gitleaks/LICENSE).
//
//go:embed gitleaks/gitleaks.toml
var gitleaksRules []byte

// GitleaksRules returns the embedded gitleaks rule file (a copy).
func GitleaksRules() []byte { return bytes.Clone(gitleaksRules) }

// ErrRules wraps every error about a rule file.
var ErrRules = errors.New("scan: rules")

// ruleSet is a compiled gitleaks-format rule file. It is immutable once
// built, so one ruleSet serves every goroutine.
//
// The engine follows the semantics gitleaks documents for its rule files
// and implements in its detector, so that the same file reports the same
// findings (the tests compare the two on corpora and under fuzzing):
// keyword prefilter (case-insensitive), regex, secret group (else the
// first non-empty group, taken from the match re-matched on its own),
// Shannon entropy above the rule's threshold, path filters, global and
// per-rule allowlists (commits, paths, regexes on the secret, match or
// line, stop words; OR or AND), `gitleaks:allow` on the line, composite
// rules (required rules within lines/columns), and "generic" findings
// dropped where a specific rule found the same secret on the same line.
// Encoded content is not decoded (gitleaks' default decode depth is 0).
type ruleSet struct {
	rules  []*rule
	byID   map[string]*rule
	global []*allowlist
}

type rule struct {
	id          string
	regex       *regexp.Regexp
	path        *regexp.Regexp
	secretGroup int
	entropy     float64
	keywords    []string // lower case
	allow       []*allowlist
	required    []required
	skipReport  bool
}

type required struct {
	id                   string
	withinLines, withinC *int
}

type allowlist struct {
	and       bool
	commits   map[string]bool // lower case
	paths     *regexp.Regexp
	target    string // "" (the secret), "match" or "line"
	regexes   *regexp.Regexp
	stopwords []string // lower case
}

// The file format (gitleaks' TOML schema). Unknown keys are errors, so a
// newer rule file using a feature this engine lacks fails to load rather
// than scanning differently.
type rulesFile struct {
	Title       string      `toml:"title"`
	Description string      `toml:"description"`
	MinVersion  string      `toml:"minVersion"`
	Extend      *struct{}   `toml:"extend"`
	Allowlist   *allowFile  `toml:"allowlist"`
	Allowlists  []allowFile `toml:"allowlists"`
	Rules       []ruleFile  `toml:"rules"`
}

type ruleFile struct {
	ID          string         `toml:"id"`
	Description string         `toml:"description"`
	Regex       string         `toml:"regex"`
	Path        string         `toml:"path"`
	SecretGroup int            `toml:"secretGroup"`
	Entropy     float64        `toml:"entropy"`
	Keywords    []string       `toml:"keywords"`
	Tags        []string       `toml:"tags"`
	Allowlist   *allowFile     `toml:"allowlist"`
	Allowlists  []allowFile    `toml:"allowlists"`
	Required    []requiredFile `toml:"required"`
	SkipReport  bool           `toml:"skipReport"`
}

type allowFile struct {
	Description string   `toml:"description"`
	Condition   string   `toml:"condition"`
	Commits     []string `toml:"commits"`
	Paths       []string `toml:"paths"`
	RegexTarget string   `toml:"regexTarget"`
	Regexes     []string `toml:"regexes"`
	StopWords   []string `toml:"stopwords"`
	TargetRules []string `toml:"targetRules"`
}

type requiredFile struct {
	ID            string `toml:"id"`
	WithinLines   *int   `toml:"withinLines"`
	WithinColumns *int   `toml:"withinColumns"`
}

// parseRules compiles a gitleaks-format rule file.
func parseRules(data []byte) (*ruleSet, error) {
	var f rulesFile
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	if f.Extend != nil {
		return nil, fmt.Errorf("%w: [extend] is not supported", ErrRules)
	}
	rs := &ruleSet{byID: map[string]*rule{}}
	for i, rf := range f.Rules {
		r, err := compileRule(rf)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d (%q): %w", ErrRules, i+1, rf.ID, err)
		}
		if _, dup := rs.byID[r.id]; dup {
			return nil, fmt.Errorf("%w: rule %q defined twice", ErrRules, r.id)
		}
		rs.rules = append(rs.rules, r)
		rs.byID[r.id] = r
	}
	for _, r := range rs.rules {
		for _, q := range r.required {
			if rs.byID[q.id] == nil {
				return nil, fmt.Errorf("%w: rule %q requires unknown rule %q", ErrRules, r.id, q.id)
			}
		}
	}
	globals := f.Allowlists
	if f.Allowlist != nil {
		if len(globals) > 0 {
			return nil, fmt.Errorf("%w: [allowlist] and [[allowlists]] exclude each other", ErrRules)
		}
		globals = []allowFile{*f.Allowlist}
	}
	for i, af := range globals {
		a, err := compileAllowlist(af)
		if err != nil {
			return nil, fmt.Errorf("%w: allowlist %d: %w", ErrRules, i+1, err)
		}
		if len(af.TargetRules) == 0 {
			rs.global = append(rs.global, a)
			continue
		}
		for _, id := range af.TargetRules {
			r := rs.byID[id]
			if r == nil {
				return nil, fmt.Errorf("%w: allowlist %d targets unknown rule %q", ErrRules, i+1, id)
			}
			r.allow = append(r.allow, a)
		}
	}
	return rs, nil
}

func compileRule(rf ruleFile) (*rule, error) {
	if strings.TrimSpace(rf.ID) == "" {
		return nil, errors.New("missing id")
	}
	r := &rule{id: rf.ID, secretGroup: rf.SecretGroup, entropy: rf.Entropy, skipReport: rf.SkipReport}
	var err error
	if rf.Regex != "" {
		if r.regex, err = regexp.Compile(rf.Regex); err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
	}
	if rf.Path != "" {
		if r.path, err = regexp.Compile(rf.Path); err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
	}
	if r.regex == nil && r.path == nil {
		return nil, errors.New("neither regex nor path")
	}
	if r.secretGroup < 0 || r.regex != nil && r.secretGroup > r.regex.NumSubexp() {
		return nil, fmt.Errorf("secretGroup %d out of range", r.secretGroup)
	}
	for _, k := range rf.Keywords {
		r.keywords = append(r.keywords, strings.ToLower(k))
	}
	lists := rf.Allowlists
	if rf.Allowlist != nil {
		if len(lists) > 0 {
			return nil, errors.New("[rules.allowlist] and [[rules.allowlists]] exclude each other")
		}
		lists = []allowFile{*rf.Allowlist}
	}
	for _, af := range lists {
		if len(af.TargetRules) > 0 {
			return nil, errors.New("targetRules in a rule's allowlist")
		}
		a, err := compileAllowlist(af)
		if err != nil {
			return nil, err
		}
		r.allow = append(r.allow, a)
	}
	for _, q := range rf.Required {
		if q.ID == "" {
			return nil, errors.New("required rule without id")
		}
		r.required = append(r.required, required{id: q.ID, withinLines: q.WithinLines, withinC: q.WithinColumns})
	}
	return r, nil
}

func compileAllowlist(af allowFile) (*allowlist, error) {
	a := &allowlist{}
	switch strings.ToUpper(af.Condition) {
	case "AND", "&&":
		a.and = true
	case "", "OR", "||":
	default:
		return nil, fmt.Errorf("condition %q: want AND or OR", af.Condition)
	}
	switch af.RegexTarget {
	case "", "secret":
	case "match", "line":
		a.target = af.RegexTarget
	default:
		return nil, fmt.Errorf("regexTarget %q: want secret, match or line", af.RegexTarget)
	}
	if len(af.Commits)+len(af.Paths)+len(af.Regexes)+len(af.StopWords) == 0 {
		return nil, errors.New("an allowlist needs commits, paths, regexes or stopwords")
	}
	if len(af.Commits) > 0 {
		a.commits = map[string]bool{}
		for _, c := range af.Commits {
			a.commits[strings.ToLower(strings.TrimSpace(c))] = true
		}
	}
	for _, w := range af.StopWords {
		if w = strings.ToLower(w); !slices.Contains(a.stopwords, w) {
			a.stopwords = append(a.stopwords, w)
		}
	}
	var err error
	if a.paths, err = joinPatterns(af.Paths); err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	if a.regexes, err = joinPatterns(af.Regexes); err != nil {
		return nil, fmt.Errorf("regexes: %w", err)
	}
	return a, nil
}

// joinPatterns compiles patterns as one alternation "(?:p1|p2|...)", the
// form gitleaks evaluates them in. An inline flag group such as "(?i)" at
// the start of one pattern therefore also applies to the alternatives after
// it; rule files are written (and tested by gitleaks) against that form,
// so it is kept. Each pattern must also compile on its own.
func joinPatterns(ps []string) (*regexp.Regexp, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	for _, p := range ps {
		if _, err := regexp.Compile(p); err != nil {
			return nil, err
		}
	}
	return regexp.Compile("(?:" + strings.Join(ps, "|") + ")")
}

func (a *allowlist) commitAllowed(c string) bool {
	return c != "" && a.commits[strings.ToLower(c)]
}

func (a *allowlist) pathAllowed(p string) bool {
	return p != "" && a.paths != nil && a.paths.MatchString(p)
}

func (a *allowlist) regexAllowed(s string) bool {
	return s != "" && a.regexes != nil && a.regexes.MatchString(s)
}

func (a *allowlist) hasStopword(secret string) bool {
	if secret == "" {
		return false
	}
	s := strings.ToLower(secret)
	for _, w := range a.stopwords {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// fragment is a piece of text to scan: a whole file, or the lines a git
// hunk adds (StartLine is the line number of its first line).
type fragment struct {
	Raw       string
	FilePath  string
	CommitSHA string
	StartLine int
}

// ruleMatch is one finding of the rule engine.
type ruleMatch struct {
	RuleID      string
	StartLine   int
	StartColumn int
	Match       string
	Secret      string
	Line        string
}

// skipped reports whether a fragment's commit or path is allowed by one of
// lists. Allowlists with an AND condition that also test content are
// decided per finding instead.
func skipped(f fragment, lists []*allowlist) bool {
	if f.FilePath == "" && f.CommitSHA == "" {
		return false
	}
	for _, a := range lists {
		commit, path := a.commitAllowed(f.CommitSHA), a.pathAllowed(f.FilePath)
		if !a.and {
			if commit || path {
				return true
			}
			continue
		}
		if a.regexes != nil || len(a.stopwords) > 0 {
			continue
		}
		if (a.commits == nil || commit) && (a.paths == nil || path) {
			return true
		}
	}
	return false
}

// allowed reports whether a finding is allowed by one of lists.
func allowed(m ruleMatch, f fragment, lists []*allowlist) bool {
	for _, a := range lists {
		target := m.Secret
		switch a.target {
		case "match":
			target = m.Match
		case "line":
			target = m.Line
		}
		re, stop := a.regexAllowed(target), a.hasStopword(m.Secret)
		if !a.and {
			if re || stop {
				return true
			}
			continue
		}
		if (a.commits == nil || a.commitAllowed(f.CommitSHA)) && (a.paths == nil || a.pathAllowed(f.FilePath)) &&
			(a.regexes == nil || re) && (len(a.stopwords) == 0 || stop) {
			return true
		}
	}
	return false
}

// detect runs every rule over a fragment.
func (rs *ruleSet) detect(f fragment) []ruleMatch {
	if skipped(f, rs.global) {
		return nil
	}
	lower := strings.ToLower(f.Raw)
	var out []ruleMatch
	for _, r := range rs.rules {
		if len(r.keywords) > 0 && !slices.ContainsFunc(r.keywords, func(k string) bool { return strings.Contains(lower, k) }) {
			continue
		}
		out = append(out, rs.detectRule(f, r, false)...)
	}
	return dropGeneric(out)
}

func (rs *ruleSet) detectRule(f fragment, r *rule, inherited bool) []ruleMatch {
	if r.skipReport && !inherited || skipped(f, r.allow) {
		return nil
	}
	if r.path != nil {
		if r.regex == nil {
			// A path-only rule reports the file, without a secret.
			if r.path.MatchString(f.FilePath) {
				return []ruleMatch{{RuleID: r.id, Match: "file detected: " + f.FilePath}}
			}
			return nil
		}
		if !r.path.MatchString(f.FilePath) {
			return nil
		}
	}
	if r.regex == nil {
		return nil
	}
	idx := r.regex.FindAllStringIndex(f.Raw, -1)
	if len(idx) == 0 {
		return nil
	}
	nl := newlines(f.Raw)
	var out []ruleMatch
	for _, m := range idx {
		text := strings.Trim(f.Raw[m[0]:m[1]], "\n")
		end := m[0] + len(text)
		line, col, ls, le := locate(nl, f.Raw, m[0], end)
		if end > le {
			le = end
		}
		rm := ruleMatch{RuleID: r.id, StartLine: f.StartLine + line, StartColumn: col, Match: text, Secret: text, Line: f.Raw[ls:le]}
		if strings.Contains(rm.Line, "gitleaks:allow") {
			continue
		}
		if groups := r.regex.FindStringSubmatch(text); len(groups) >= 2 {
			if r.secretGroup > 0 {
				if len(groups) <= r.secretGroup {
					continue
				}
				rm.Secret = groups[r.secretGroup]
			} else if i := slices.IndexFunc(groups[1:], func(s string) bool { return s != "" }); i >= 0 {
				rm.Secret = groups[1+i]
			}
		}
		if r.entropy != 0 && shannon(rm.Secret) <= r.entropy {
			continue
		}
		if allowed(rm, f, rs.global) || allowed(rm, f, r.allow) {
			continue
		}
		out = append(out, rm)
	}
	if inherited || len(r.required) == 0 || len(out) == 0 {
		return out
	}
	return rs.composite(f, r, out)
}

// composite keeps the findings of a rule with required rules that have a
// finding of every required rule close enough.
func (rs *ruleSet) composite(f fragment, r *rule, primary []ruleMatch) []ruleMatch {
	found := map[string][]ruleMatch{}
	for _, q := range r.required {
		found[q.id] = rs.detectRule(f, rs.byID[q.id], true)
	}
	var out []ruleMatch
	for _, p := range primary {
		ok := true
		for _, q := range r.required {
			if !slices.ContainsFunc(found[q.id], func(m ruleMatch) bool { return near(p, m, q) }) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

func near(p, m ruleMatch, q required) bool {
	if q.withinLines != nil && absInt(p.StartLine-m.StartLine) > *q.withinLines {
		return false
	}
	return q.withinC == nil || absInt(p.StartColumn-m.StartColumn) <= *q.withinC
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// dropGeneric drops a finding of a "generic" rule when a specific rule
// found a secret containing it on the same line.
func dropGeneric(ms []ruleMatch) []ruleMatch {
	var out []ruleMatch
	for _, m := range ms {
		if strings.Contains(strings.ToLower(m.RuleID), "generic") && slices.ContainsFunc(ms, func(o ruleMatch) bool {
			return o.StartLine == m.StartLine && o.RuleID != m.RuleID && strings.Contains(o.Secret, m.Secret) &&
				!strings.Contains(strings.ToLower(o.RuleID), "generic")
		}) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// shannon is the Shannon entropy of s in bits per character, counting
// characters as runes over the byte length (as gitleaks' thresholds assume).
func shannon(s string) float64 {
	if s == "" {
		return 0
	}
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
	}
	var e float64
	inv := 1 / float64(len(s))
	for _, n := range counts {
		p := float64(n) * inv
		e -= p * math.Log2(p)
	}
	return e
}

// newlines returns the offsets of every '\n' in s.
func newlines(s string) []int {
	var out []int
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '\n')
		if j < 0 {
			return out
		}
		out = append(out, i+j)
		i += j + 1
	}
}

// locate places the match [start,end) in raw: its 0-based line, its
// 1-based column and the bounds of the text reported as its line. Lines
// are delimited by the offsets of the newlines, and a line's bounds start
// at the newline before it (gitleaks' convention, which its rules'
// line-targeted allowlists are written against).
func locate(nl []int, raw string, start, end int) (line, col, lineStart, lineEnd int) {
	if len(nl) == 0 {
		nl = []int{len(raw)}
	}
	prev, set := 0, false
	for i, n := range nl {
		if prev <= start && start < n {
			set, line, col, lineStart, lineEnd = true, i, start-prev+1, prev, n
		}
		if prev < end && end <= n {
			lineEnd = n
		}
		prev = n
	}
	if set {
		return line, col, lineStart, lineEnd
	}
	i := end
	for i < len(raw) && raw[i] != '\n' && raw[i] != '\r' {
		i++
	}
	return len(nl), start - prev + 1, 0, i
}
