package scan

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	glog "github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/sources"
)

// The gitleaks library is a test-only dependency: these tests check that
// the embedded rule file is gitleaks' own and that keystile's engine
// reports what gitleaks' detector reports.

var (
	refOnce sync.Once
	refDet  *detect.Detector
	refErr  error
)

// reference returns gitleaks' detector with its default rules (built once:
// its config loader uses package globals).
func reference(t testing.TB) *detect.Detector {
	t.Helper()
	refOnce.Do(func() {
		glog.Logger = zerolog.Nop()
		refDet, refErr = detect.NewDetectorDefaultConfig()
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refDet
}

func TestRulesFileMatchesGitleaks(t *testing.T) {
	if !bytes.Equal(gitleaksRules, []byte(config.DefaultConfig)) {
		t.Fatal("internal/scan/gitleaks/gitleaks.toml differs from the gitleaks module's config/gitleaks.toml: copy the module's file (see gitleaks/README.md)")
	}
}

func TestParseEmbeddedRules(t *testing.T) {
	rs, err := parseRules(gitleaksRules)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference(t)
	if len(rs.rules) != len(ref.Config.Rules) || len(rs.global) != len(ref.Config.Allowlists) {
		t.Fatalf("%d rules, %d global allowlists; gitleaks loads %d, %d", len(rs.rules), len(rs.global), len(ref.Config.Rules), len(ref.Config.Allowlists))
	}
	for _, r := range rs.rules {
		g, ok := ref.Config.Rules[r.id]
		if !ok {
			t.Errorf("rule %s unknown to gitleaks", r.id)
			continue
		}
		if len(g.Allowlists) != len(r.allow) || g.Entropy != r.entropy || g.SecretGroup != r.secretGroup || !slices.Equal(g.Keywords, r.keywords) {
			t.Errorf("rule %s compiled differently", r.id)
		}
	}
}

func TestParseRulesRefusals(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"unknown key", "[[rules]]\nid = \"a\"\nregex = \"x\"\nbogus = 1\n"},
		{"bad regex", "[[rules]]\nid = \"a\"\nregex = \"(\"\n"},
		{"no id", "[[rules]]\nregex = \"x\"\n"},
		{"nothing to match", "[[rules]]\nid = \"a\"\n"},
		{"secret group too high", "[[rules]]\nid = \"a\"\nregex = \"(x)\"\nsecretGroup = 2\n"},
		{"duplicate id", "[[rules]]\nid = \"a\"\nregex = \"x\"\n[[rules]]\nid = \"a\"\nregex = \"y\"\n"},
		{"unknown required", "[[rules]]\nid = \"a\"\nregex = \"x\"\n[[rules.required]]\nid = \"b\"\n"},
		{"empty allowlist", "[[rules]]\nid = \"a\"\nregex = \"x\"\n[[rules.allowlists]]\ndescription = \"d\"\n"},
		{"bad condition", "[allowlist]\ncondition = \"XOR\"\npaths = [\"x\"]\n"},
		{"bad target", "[allowlist]\nregexTarget = \"file\"\nregexes = [\"x\"]\n"},
		{"unknown target rule", "[[allowlists]]\ntargetRules = [\"z\"]\npaths = [\"x\"]\n"},
		{"extend", "[extend]\n"},
		{"not toml", "[[rules]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseRules([]byte(tc.file)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// sample returns a random string matched by the regular expression re
// (most of the time: boundaries and anchors are not enforced).
func sample(rng *rand.Rand, re *syntax.Regexp, b *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && rng.IntN(2) == 0 {
				r = []rune(strings.ToUpper(string(r)))[0]
			}
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return
		}
		var ranges [][2]rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if lo > 0x7e {
				continue
			}
			hi = min(hi, 0x7e)
			ranges = append(ranges, [2]rune{max(lo, 0x20), hi})
		}
		if len(ranges) == 0 {
			b.WriteByte('x')
			return
		}
		rg := ranges[rng.IntN(len(ranges))]
		if rg[1] < rg[0] {
			rg[1] = rg[0]
		}
		b.WriteRune(rg[0] + rune(rng.IntN(int(rg[1]-rg[0])+1)))
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		b.WriteByte(byte('a' + rng.IntN(26)))
	case syntax.OpCapture:
		sample(rng, re.Sub[0], b)
	case syntax.OpConcat:
		for _, s := range re.Sub {
			sample(rng, s, b)
		}
	case syntax.OpAlternate:
		sample(rng, re.Sub[rng.IntN(len(re.Sub))], b)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 3
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 3
			}
		}
		hi = min(hi, lo+12)
		n := lo + rng.IntN(hi-lo+1)
		for range n {
			sample(rng, re.Sub[0], b)
		}
	}
}

var agreePaths = []string{"", "app/config.yaml", "infra/main.tf", "web/index.php", "package-lock.json", "NuGet.config",
	"node_modules/@octokit/auth-token/README.md", "src/bot.py", "certs/client.p12", "recipes/x.bb", ".env"}

// agreeCorpus builds fragments that exercise every rule (every fourth one
// under the race detector): a random string
// from each rule's regex in a few settings (alone, after its keyword,
// quoted in an assignment, with a low-entropy twin), under paths that hit
// the path filters and allowlists, plus the scanner's test corpus.
func agreeCorpus(t *testing.T) []fragment {
	rs, err := parseRules(gitleaksRules)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11)) // #nosec G404 -- test data
	var frags []fragment
	for i, r := range rs.rules {
		if r.regex == nil || raceEnabled && i%4 != 0 {
			continue
		}
		parsed, err := syntax.Parse(r.regex.String(), syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for j := 0; j < 3; j++ {
			var b strings.Builder
			sample(rng, parsed, &b)
			s := b.String()
			kw := "key"
			if len(r.keywords) > 0 {
				kw = r.keywords[rng.IntN(len(r.keywords))]
			}
			lines = append(lines, s, kw+" = \""+s+"\"", "export "+strings.ToUpper(kw)+"_TOKEN="+s+" # note", "x"+s+"x", s+" gitleaks:allow")
		}
		raw := strings.Join(lines, "\n")
		fr := fragment{Raw: raw, FilePath: agreePaths[i%len(agreePaths)], StartLine: 1}
		if i%2 == 1 {
			fr.CommitSHA, fr.StartLine = "0123456789abcdef0123456789abcdef01234567", 17
		}
		frags = append(frags, fr)
	}
	err = filepath.WalkDir("testdata/corpus", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p) // #nosec G304 -- test corpus
		if err != nil {
			return err
		}
		frags = append(frags, fragment{Raw: string(b), FilePath: filepath.ToSlash(p), StartLine: 1})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return frags
}

func refMatches(d *detect.Detector, f fragment) []string {
	var out []string
	//lint:ignore SA1019 gitleaks v8's DetectContext takes only this type
	for _, m := range d.Detect(detect.Fragment(sources.Fragment{Raw: f.Raw, FilePath: f.FilePath, CommitSHA: f.CommitSHA, StartLine: f.StartLine})) {
		out = append(out, fmt.Sprintf("%s line %d col %d secret %q match %q", m.RuleID, m.StartLine, m.StartColumn, m.Secret, m.Match))
	}
	slices.Sort(out)
	return out
}

func ourMatches(rs *ruleSet, f fragment) []string {
	var out []string
	for _, m := range rs.detect(f) {
		out = append(out, fmt.Sprintf("%s line %d col %d secret %q match %q", m.RuleID, m.StartLine, m.StartColumn, m.Secret, m.Match))
	}
	slices.Sort(out)
	return out
}

func TestRulesAgreeWithGitleaks(t *testing.T) {
	rs, err := parseRules(gitleaksRules)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference(t)
	frags := agreeCorpus(t)
	total, rules := 0, map[string]bool{}
	for i, f := range frags {
		want, got := refMatches(ref, f), ourMatches(rs, f)
		if !slices.Equal(want, got) {
			t.Errorf("fragment %d (%s): gitleaks %d findings, keystile %d\n gitleaks: %q\n keystile: %q", i, f.FilePath, len(want), len(got), want, got)
		}
		total += len(want)
		for _, m := range rs.detect(f) {
			rules[m.RuleID] = true
		}
	}
	// The corpus must exercise most rules, or the comparison proves little.
	if want := len(rs.rules) * 3 / 4; raceEnabled && len(rules) < want/4 || !raceEnabled && len(rules) < want {
		t.Errorf("the corpus reaches only %d of %d rules (%d findings)", len(rules), len(rs.rules), total)
	}
	t.Logf("%d fragments, %d findings, %d rules reached", len(frags), total, len(rules))
}

func FuzzRulesAgreeWithGitleaks(f *testing.F) {
	f.Add("aws_access_key_id = AKIA2MATW2ZCEFAQJ4B6\n", uint8(0), false)
	f.Add("token: ghp_PJnjQSHxhJVsxSz89WTRvK8YxiRiX2SOhSGP\npassword = \"hunter2hunter2x9\"", uint8(5), true)
	f.Add("api_key=\"$API_KEY\"\nsecret: ${SECRET}\nclient_secret = 'Zx8vQ2mL9pT4rW7yK1nB6cJ3'", uint8(1), false)
	f.Add("-----BEGIN RSA PRIVATE KEY-----\nMIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAL\n-----END RSA PRIVATE KEY-----\n", uint8(2), false)
	rs, err := parseRules(gitleaksRules)
	if err != nil {
		f.Fatal(err)
	}
	ref := reference(f)
	f.Fuzz(func(t *testing.T, raw string, path uint8, commit bool) {
		if len(raw) > 1<<12 {
			return
		}
		fr := fragment{Raw: raw, FilePath: agreePaths[int(path)%len(agreePaths)], StartLine: 1}
		if commit {
			fr.CommitSHA, fr.StartLine = "89abcdef0123456789abcdef0123456789abcdef", 3
		}
		want, got := refMatches(ref, fr), ourMatches(rs, fr)
		if !slices.Equal(want, got) {
			t.Fatalf("gitleaks: %q\nkeystile: %q", want, got)
		}
	})
}

// TestBinaryDoesNotLinkGitleaks: the keystile binary evaluates gitleaks'
// rules with this package's engine; the gitleaks library and what it
// brings (viper, archive readers, the WebAssembly RE2, terminal styling)
// stay test-only.
func TestBinaryDoesNotLinkGitleaks(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "../../cmd/keystile").Output() // #nosec G204 -- fixed arguments
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/zricethezav/gitleaks", "github.com/spf13/viper", "github.com/mholt/archives",
			"github.com/tetratelabs/wazero", "github.com/wasilibs/", "github.com/charmbracelet/", "github.com/Masterminds/sprig", "github.com/rs/zerolog"} {
			if strings.HasPrefix(p, bad) {
				t.Errorf("cmd/keystile links %s", p)
			}
		}
	}
}
