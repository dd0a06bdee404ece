package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// IsEnvFile reports whether a file name looks like a dotenv file: .env,
// .env.* or *.env, except the conventional secret-free templates
// (.env.example, .env.sample, .env.template, .env.dist).
func IsEnvFile(name string) bool {
	base := filepath.Base(name)
	if !(base == ".env" || strings.HasPrefix(base, ".env.") || strings.HasSuffix(base, ".env")) {
		return false
	}
	for _, t := range []string{".example", ".sample", ".template", ".dist"} {
		if strings.HasSuffix(base, t) {
			return false
		}
	}
	return true
}

func splitNUL(b []byte) []string {
	var out []string
	for _, p := range bytes.Split(b, []byte{0}) {
		if len(p) > 0 {
			out = append(out, string(p))
		}
	}
	return out
}

func (r *run) envFiles() Check {
	c := Check{ID: "workdir.envfiles", Title: ".env files are ignored by git and not tracked", Severity: High,
		Fix: "add the files to .gitignore; for tracked ones `git rm --cached FILE`, rotate every key they held, and move them into keystile (`keystile secret set`)"}
	if r.WorkDir == "" {
		c.Result, c.Detail = Skip, "no working directory"
		return c
	}
	if _, err := r.Git(r.ctx, r.WorkDir, "rev-parse", "--is-inside-work-tree"); err != nil {
		c.Result, c.Detail = Skip, r.WorkDir+" is not inside a git work tree (or git is unavailable)"
		return c
	}
	tracked, err := r.Git(r.ctx, r.WorkDir, "ls-files", "-z", "--cached", "--full-name")
	if err != nil {
		c.Result, c.Detail = Skip, "git ls-files failed: "+err.Error()
		return c
	}
	untracked, err := r.Git(r.ctx, r.WorkDir, "ls-files", "-z", "--others", "--exclude-standard", "--full-name")
	if err != nil {
		c.Result, c.Detail = Skip, "git ls-files failed: "+err.Error()
		return c
	}
	var bad []string
	res := Pass
	for _, f := range splitNUL(tracked) {
		if IsEnvFile(f) {
			bad = append(bad, f+": tracked by git (its contents are in the history)")
			res = Fail
		}
	}
	for _, f := range splitNUL(untracked) {
		if IsEnvFile(f) {
			bad = append(bad, f+": not ignored by git (one `git add .` away from a commit)")
			if res == Pass {
				res = Warn
			}
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = res, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, "no tracked or unignored .env files in the work tree"
	return c
}

// historyFiles are the shell histories doctor reads, relative to $HOME.
func historyFiles() []string {
	return []string{".bash_history", ".zsh_history", filepath.Join(".local", "share", "fish", "fish_history")}
}

// readTail reads at most n bytes from the end of path.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the user's own history file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if off := st.Size() - n; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, n))
}

// histories calls fn for every line of every history file present.
func (r *run) histories(fn func(file string, line int, text string)) (read int, errs []string) {
	for _, rel := range historyFiles() {
		p := filepath.Join(r.Home, rel)
		b, err := readTail(p, r.MaxHistoryBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		read++
		for i, l := range strings.Split(string(b), "\n") {
			fn(p, i+1, l)
		}
	}
	return read, errs
}

// LineFindings returns the kinds of secret a shell history line holds:
// "kst_ token", "keystile secret value on the command line", or "secret
// in an exported variable NAME". It never returns the values.
func LineFindings(line string) []string {
	var out []string
	// zsh extended history ": 1700000000:0;cmd", fish "- cmd: cmd".
	if strings.HasPrefix(line, ": ") {
		if _, cmd, ok := strings.Cut(line, ";"); ok {
			line = cmd
		}
	}
	line = strings.TrimPrefix(line, "- cmd: ")
	for _, pfx := range []string{token.PrefixLive, token.PrefixTest} {
		rest := line
		for {
			i := strings.Index(rest, pfx)
			if i < 0 {
				break
			}
			if i+token.Len <= len(rest) && token.LooksValid(rest[i:i+token.Len]) {
				out = append(out, "kst_ token")
				break
			}
			rest = rest[i+len(pfx):]
		}
	}
	words := strings.Fields(line)
	for i, w := range words {
		if w == "keystile" || strings.HasSuffix(w, "/keystile") {
			if secretSetValue(words[i+1:]) {
				out = append(out, "keystile secret value on the command line")
			}
			break
		}
	}
	for i, w := range words {
		var assign string
		switch {
		case w == "export" || w == "declare" || w == "typeset":
			if i+1 < len(words) {
				assign = words[i+1]
			}
		case w == "set" && i+2 < len(words) && strings.HasPrefix(words[i+1], "-") && strings.Contains(words[i+1], "x"):
			// fish: set -x NAME VALUE / set -gx NAME VALUE
			assign = words[i+2] + "=" + strings.Join(words[i+3:], " ")
		default:
			continue
		}
		name, val, ok := strings.Cut(assign, "=")
		val = strings.Trim(val, `"'`)
		if ok && secretName(name) && val != "" && !strings.HasPrefix(val, "$") && !strings.HasPrefix(val, "`") {
			out = append(out, "secret in exported variable "+name)
		}
	}
	return out
}

// secretSetValue reports whether `keystile secret set|rotate NAME
// FIELD=VALUE` appears in args.
func secretSetValue(args []string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "secret" || (args[i+1] != "set" && args[i+1] != "rotate") {
			continue
		}
		for _, a := range args[i+2:] {
			if f, v, ok := strings.Cut(a, "="); ok && v != "" && vault.ValidField(f) {
				return true
			}
		}
		return false
	}
	return false
}

// secretName reports whether a variable name says it holds a secret.
func secretName(name string) bool {
	n := strings.ToUpper(name)
	for _, s := range []string{"_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_PASSPHRASE", "_APIKEY"} {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return n == "KEYSTILE_MASTER_KEY" || n == "SECRET" || n == "TOKEN" || n == "PASSWORD" || n == "API_KEY"
}

func (r *run) historyPatterns() Check {
	c := Check{ID: "history.secrets", Title: "no secrets in shell history", Severity: High,
		Fix: "remove the lines from the history file, rotate the exposed keys (`keystile token revoke`, `keystile secret rotate`), and pass secrets on stdin, never as arguments"}
	if r.Home == "" {
		c.Result, c.Detail = Skip, "no home directory"
		return c
	}
	var found []string
	n, errs := r.histories(func(file string, line int, text string) {
		for _, k := range LineFindings(text) {
			found = append(found, fmt.Sprintf("%s:%d: %s", file, line, k))
		}
	})
	return historyResult(c, n, errs, found)
}

func historyResult(c Check, read int, errs, found []string) Check {
	switch {
	case len(found) > 0:
		c.Result, c.Detail = Fail, list(found)
	case len(errs) > 0:
		c.Result, c.Detail = Skip, list(errs)
	case read == 0:
		c.Result, c.Detail = Pass, "no shell history files"
	default:
		c.Result, c.Detail = Pass, fmt.Sprintf("%d history file(s) clean", read)
	}
	return c
}

// candidates splits a line into the strings that could be a whole value.
func candidates(line string) []string {
	seps := func(r rune) bool {
		return r == ' ' || r == '\t' || r == '"' || r == '\'' || r == '=' || r == ';' || r == '`' || r == ','
	}
	return strings.FieldsFunc(line, seps)
}

func (r *run) historyVaultValues() Check {
	c := Check{ID: "history.vault-values", Title: "no vault value appears in shell history", Severity: High,
		Fix: "remove the lines, then rotate the credential at the venue and `keystile secret rotate` it"}
	if r.Home == "" {
		c.Result, c.Detail = Skip, "no home directory"
		return c
	}
	if r.Vault == nil {
		c.Result, c.Detail = Skip, "vault not opened ("+reason(r.VaultReason, "no vault")+")"
		return c
	}
	fps, err := r.Vault.Fingerprints(r.ctx)
	if err != nil {
		c.Result, c.Detail = Skip, "vault fingerprints: "+err.Error()
		return c
	}
	lens := map[int]bool{}
	byFP := map[string]vault.ValueFingerprint{}
	anyLen := false
	for _, f := range fps {
		if f.Len > 0 {
			lens[f.Len] = true
		} else {
			anyLen = true
		}
		byFP[string(f.Fingerprint)] = f
	}
	var found []string
	n, errs := r.histories(func(file string, line int, text string) {
		if len(byFP) == 0 {
			return
		}
		for _, cand := range candidates(text) {
			if len(cand) < 6 || !(lens[len(cand)] || anyLen) {
				continue
			}
			if f, ok := byFP[string(r.Vault.Fingerprint([]byte(cand)))]; ok {
				what := fmt.Sprintf("value of %s field %s", f.Credential, f.Field)
				if f.Compromised {
					what = fmt.Sprintf("compromised value of %s field %s", f.Credential, f.Field)
				}
				found = append(found, fmt.Sprintf("%s:%d: %s", file, line, what))
			}
		}
	})
	return historyResult(c, n, errs, found)
}
