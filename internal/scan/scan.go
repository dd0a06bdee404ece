package scan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// Detector names the detector behind a finding.
type Detector string

// Detectors.
const (
	DetectorToken    Detector = "kst-token"
	DetectorGitleaks Detector = "gitleaks"
	DetectorVault    Detector = "vault"
)

// Rule names of the keystile detectors; gitleaks findings carry its rule id,
// vault findings "vault-value:<credential>.<field>" (or vault-compromised).
const (
	RuleToken       = "keystile-token"
	RuleVault       = "vault-value"
	RuleCompromised = "vault-compromised"
)

// DefaultMaxFileBytes is the size above which files are skipped.
const DefaultMaxFileBytes = 16 << 20

// ErrNotGitRepo is returned by ScanGit and ScanStaged outside a git work tree.
var ErrNotGitRepo = errors.New("scan: not a git repository")

// Vault is what the vault detector needs: the keyed fingerprints and lengths
// of the values held, and the same keyed fingerprint of a candidate.
// *vault.Vault implements it. Both methods must be safe for concurrent use.
type Vault interface {
	Fingerprint(value []byte) []byte
	Fingerprints(ctx context.Context) ([]vault.ValueFingerprint, error)
}

// Options configure a Scanner. The zero value scans with the token and
// gitleaks detectors only.
type Options struct {
	// Vault enables the vault detector; nil disables it.
	Vault Vault
	// Logger receives progress and skipped-file notes; nil discards.
	Logger *slog.Logger
	// MaxFileBytes skips larger files; 0 means DefaultMaxFileBytes.
	MaxFileBytes int64
	// Workers scanning files in parallel; 0 means GOMAXPROCS.
	Workers int
}

// Finding is one leaked secret. It never holds the secret: Preview is
// masked (see Mask) and Fingerprint is a hash over file, rule and a hash of
// the secret (the vault's keyed fingerprint for vault findings).
type Finding struct {
	File        string   `json:"file"`
	Line        int      `json:"line"`
	Commit      string   `json:"commit,omitempty"`
	Detector    Detector `json:"detector"`
	Rule        string   `json:"rule"`
	Preview     string   `json:"preview"`
	Fingerprint string   `json:"fingerprint"`
}

// Report is the result of a scan; its JSON form is what Baseline reads.
type Report struct {
	Version    int       `json:"version"`
	Findings   []Finding `json:"findings"`
	Suppressed int       `json:"suppressed,omitempty"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
	Skipped    int       `json:"skipped,omitempty"`
}

// ReportVersion is the version of the JSON report format.
const ReportVersion = 1

// Scanner runs the three detectors. It is safe for concurrent use.
type Scanner struct {
	rules   *ruleSet
	log     *slog.Logger
	maxFile int64
	workers int

	v       Vault
	wanted  []bool         // candidate lengths, any encoding
	encs    map[int]uint8  // candidate length -> encodings to try
	rawLens map[int]bool   // lengths of held values
	held    map[string]ref // keyed fingerprint -> where it is held
}

type ref struct {
	name        string
	compromised bool
}

const (
	encRaw uint8 = 1 << iota
	encHex
	encB64 // padded standard or URL alphabet
	encB64Raw
)

// New builds a Scanner: it compiles gitleaks' default rules (embedded) and,
// with a Vault, loads the fingerprints it holds.
func New(ctx context.Context, o Options) (*Scanner, error) {
	rules, err := parseRules(gitleaksRules)
	if err != nil {
		return nil, err
	}
	s := &Scanner{rules: rules, log: o.Logger, maxFile: o.MaxFileBytes, workers: o.Workers}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxFile <= 0 {
		s.maxFile = DefaultMaxFileBytes
	}
	if s.workers <= 0 {
		s.workers = runtime.GOMAXPROCS(0)
	}
	if o.Vault != nil {
		if err := s.loadVault(ctx, o.Vault); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// minValueLen is the shortest held value the vault detector looks for:
// shorter ones (PINs, usernames) would match ordinary words.
const minValueLen = 8

func (s *Scanner) loadVault(ctx context.Context, v Vault) error {
	fps, err := v.Fingerprints(ctx)
	if err != nil {
		return fmt.Errorf("scan: vault fingerprints: %w", err)
	}
	s.v = v
	s.held = make(map[string]ref, len(fps))
	s.encs = map[int]uint8{}
	s.rawLens = map[int]bool{}
	maxLen := 0
	add := func(n int, e uint8) {
		s.encs[n] |= e
		if n > maxLen {
			maxLen = n
		}
	}
	for _, f := range fps {
		r := ref{name: f.Credential + "." + f.Field, compromised: f.Compromised}
		if prev, ok := s.held[string(f.Fingerprint)]; ok && !prev.compromised {
			r.compromised = r.compromised || prev.compromised
		}
		s.held[string(f.Fingerprint)] = r
		if f.Len < minValueLen {
			continue
		}
		n := f.Len
		s.rawLens[n] = true
		add(n, encRaw)
		add(2*n, encHex)
		add(base64.StdEncoding.EncodedLen(n), encB64)
		add(base64.RawStdEncoding.EncodedLen(n), encB64Raw)
	}
	s.wanted = make([]bool, maxLen+1)
	for n := range s.encs {
		s.wanted[n] = true
	}
	return nil
}

// sink collects findings from concurrent detectors, dropping duplicates
// (the same secret on the same line found by two detectors: the more
// specific detector wins).
type sink struct {
	mu   sync.Mutex
	seen map[string]int
	out  []Finding
}

func detectorRank(d Detector) int {
	switch d {
	case DetectorToken:
		return 0
	case DetectorVault:
		return 1
	}
	return 2
}

func (k *sink) add(f Finding) {
	key := f.File + "\x00" + f.Commit + "\x00" + fmt.Sprint(f.Line) + "\x00" + f.Preview
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen == nil {
		k.seen = map[string]int{}
	}
	if i, ok := k.seen[key]; ok {
		if detectorRank(f.Detector) < detectorRank(k.out[i].Detector) {
			k.out[i] = f
		}
		return
	}
	k.seen[key] = len(k.out)
	k.out = append(k.out, f)
}

func (k *sink) sorted() []Finding {
	out := append([]Finding{}, k.out...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Commit != b.Commit {
			return a.Commit < b.Commit
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Rule < b.Rule
	})
	return out
}

// fingerprint binds a finding to its file, rule and a hash of its secret.
func fingerprint(file, rule string, secretHash []byte) string {
	h := sha256.New()
	h.Write([]byte("keystile-scan-v1\x00" + file + "\x00" + rule + "\x00"))
	h.Write(secretHash)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func shaOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func newFinding(file string, line int, commit string, d Detector, rule, value string, secretHash []byte) Finding {
	return Finding{File: file, Line: line, Commit: commit, Detector: d, Rule: rule, Preview: Mask(value),
		Fingerprint: fingerprint(file, rule, secretHash)}
}

// scanFragment runs every detector over one fragment. Lines are numbered
// from frag.StartLine (1 when unset).
func (s *Scanner) scanFragment(frag fragment, out *sink) {
	for _, f := range s.rules.detect(frag) {
		if f.Secret == "" {
			continue
		}
		out.add(newFinding(frag.FilePath, f.StartLine, frag.CommitSHA, DetectorGitleaks, f.RuleID, f.Secret, shaOf(f.Secret)))
	}
	line := frag.StartLine
	if line <= 0 {
		line = 1
	}
	raw := frag.Raw
	for len(raw) > 0 {
		end := strings.IndexByte(raw, '\n')
		var l string
		if end < 0 {
			l, raw = raw, ""
		} else {
			l, raw = raw[:end], raw[end+1:]
		}
		s.scanLine(frag.FilePath, line, frag.CommitSHA, l, out)
		line++
	}
}

// scanLine runs the kst_ token and vault detectors over one line.
func (s *Scanner) scanLine(file string, line int, commit, l string, out *sink) {
	for off := 0; ; {
		i := strings.Index(l[off:], "kst_")
		if i < 0 {
			break
		}
		i += off
		off = i + 4
		if i > 0 && isAlnum(l[i-1]) || i+token.Len > len(l) {
			continue
		}
		if j := i + token.Len; j < len(l) && isAlnum(l[j]) {
			continue
		}
		if tok := l[i : i+token.Len]; token.LooksValid(tok) {
			out.add(newFinding(file, line, commit, DetectorToken, RuleToken, tok, shaOf(tok)))
			off = i + token.Len
		}
	}
	if s.v == nil || len(s.wanted) == 0 {
		return
	}
	b := []byte(l)
	Candidates(b, s.wanted, func(a, e int) {
		c := b[a:e]
		if r, fp, ok := s.matchVault(c); ok {
			rule := RuleVault
			if r.compromised {
				rule = RuleCompromised
			}
			out.add(newFinding(file, line, commit, DetectorVault, rule+":"+r.name, string(c), fp))
		}
	})
}

// matchVault fingerprints a candidate, and its decodings when its length
// fits an encoding of a held value's length.
func (s *Scanner) matchVault(c []byte) (ref, []byte, bool) {
	e := s.encs[len(c)]
	try := func(v []byte) (ref, []byte, bool) {
		if !s.rawLens[len(v)] {
			return ref{}, nil, false
		}
		fp := s.v.Fingerprint(v)
		r, ok := s.held[string(fp)]
		return r, fp, ok
	}
	if e&encRaw != 0 {
		if r, fp, ok := try(c); ok {
			return r, fp, true
		}
	}
	if e&encHex != 0 {
		if d, err := hex.DecodeString(string(c)); err == nil {
			if r, fp, ok := try(d); ok {
				return r, fp, true
			}
		}
	}
	var encs []*base64.Encoding
	if e&encB64 != 0 {
		encs = append(encs, base64.StdEncoding, base64.URLEncoding)
	}
	if e&encB64Raw != 0 {
		encs = append(encs, base64.RawStdEncoding, base64.RawURLEncoding)
	}
	for _, enc := range encs {
		if d, err := enc.DecodeString(string(c)); err == nil {
			if r, fp, ok := try(d); ok {
				return r, fp, true
			}
		}
	}
	return ref{}, nil, false
}

// ScanPaths scans files and directory trees (skipping .git directories,
// symlinks, binary files and files over the size limit).
func (s *Scanner) ScanPaths(ctx context.Context, paths []string) (*Report, error) {
	rep := &Report{Version: ReportVersion}
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			if d.IsDir() {
				if d.Name() == ".git" {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var (
		out  sink
		mu   sync.Mutex
		wg   sync.WaitGroup
		ch   = make(chan string)
		ferr error
	)
	for w := 0; w < s.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range ch {
				n, skipped, err := s.scanFile(ctx, path, &out)
				mu.Lock()
				switch {
				case err != nil && ferr == nil:
					ferr = err
				case skipped:
					rep.Skipped++
				default:
					rep.Files++
					rep.Bytes += n
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case ch <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if ferr != nil {
		return nil, ferr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Findings = out.sorted()
	return rep, nil
}

func (s *Scanner) scanFile(ctx context.Context, path string, out *sink) (int64, bool, error) {
	f, err := os.Open(path) // #nosec G304 -- scanning user-named paths is the job
	if err != nil {
		return 0, false, fmt.Errorf("scan: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("scan: %w", err)
	}
	if fi.Size() > s.maxFile {
		s.log.Info("scan: skipped large file", "path", path, "bytes", fi.Size())
		return 0, true, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, s.maxFile+1))
	if err != nil {
		return 0, false, fmt.Errorf("scan: %w", err)
	}
	head := data
	if len(head) > 8000 {
		head = head[:8000]
	}
	if bytes.IndexByte(head, 0) >= 0 {
		s.log.Debug("scan: skipped binary file", "path", path)
		return 0, true, nil
	}
	s.scanFragment(fragment{Raw: string(data), FilePath: filepath.ToSlash(path), StartLine: 1}, out)
	return int64(len(data)), false, nil
}

// ScanGit scans every commit of the repository at repo: the lines each
// commit adds (git log -p --all, as gitleaks reads history).
func (s *Scanner) ScanGit(ctx context.Context, repo string) (*Report, error) {
	if err := checkRepo(ctx, repo); err != nil {
		return nil, err
	}
	return s.scanDiff(ctx, repo, "log", "-p", "-U0", "--full-history", "--all", "--diff-filter=tuxdb", "--format=commit %H")
}

// ScanStaged scans the changes staged in the repository at repo: what the
// next commit would add (for a pre-commit hook).
func (s *Scanner) ScanStaged(ctx context.Context, repo string) (*Report, error) {
	if err := checkRepo(ctx, repo); err != nil {
		return nil, err
	}
	return s.scanDiff(ctx, repo, "diff", "-U0", "--staged", ".")
}

// scanDiff runs git (without colour, external diff drivers or text
// conversion filters, whatever the repository configures) and scans the
// added lines of its diff output as it streams.
func (s *Scanner) scanDiff(ctx context.Context, repo string, args ...string) (*Report, error) {
	base := []string{"-C", repo, "-c", "core.quotePath=true", "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false"}
	args = append(append(base, args[0], "--no-color", "--no-ext-diff", "--no-textconv"), args[1:]...)
	cmd := exec.CommandContext(ctx, "git", args...) // #nosec G204 -- fixed git subcommands; repo is the user's path
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("scan: git: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scan: git: %w", err)
	}
	rep := &Report{Version: ReportVersion}
	var (
		out   sink
		mu    sync.Mutex
		wg    sync.WaitGroup
		ch    = make(chan fragment)
		files = map[string]bool{}
	)
	for w := 0; w < s.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				s.scanFragment(f, &out)
			}
		}()
	}
	perr := ParseDiff(stdout, func(commit, path string, line int, added string) error {
		mu.Lock()
		files[commit+"\x00"+path] = true
		rep.Bytes += int64(len(added))
		mu.Unlock()
		select {
		case ch <- fragment{Raw: added, FilePath: path, CommitSHA: commit, StartLine: line}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(ch)
	wg.Wait()
	if perr != nil {
		_, _ = io.Copy(io.Discard, stdout)
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case perr != nil:
		return nil, perr
	case werr != nil:
		return nil, fmt.Errorf("scan: git %s: %w: %s", args[len(base)], werr, strings.TrimSpace(stderr.String()))
	}
	rep.Files = len(files)
	rep.Findings = out.sorted()
	return rep, nil
}

// checkRepo fails with ErrNotGitRepo unless repo is inside a git work tree.
func checkRepo(ctx context.Context, repo string) error {
	if _, err := gitOutput(ctx, repo, "rev-parse", "--is-inside-work-tree"); err != nil {
		return fmt.Errorf("%w: %s", ErrNotGitRepo, repo)
	}
	return nil
}
