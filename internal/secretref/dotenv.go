package secretref

import (
	"bytes"

	"github.com/keystile/keystile/internal/secret"
)

// LookupDotenv finds key in the .env-style content b and returns a copy of
// its value; the last assignment wins. Lines are KEY=VALUE, optionally
// preceded by "export "; blank lines and lines starting with # are
// skipped. A value may be single-quoted (literal), double-quoted (with \n,
// \r, \t, \", \\ escapes) or bare (an unquoted " #" starts a comment;
// surrounding blanks are dropped). Malformed lines are skipped, never
// reported: their text could be a secret.
func LookupDotenv(b []byte, key string) (secret.Value, bool) {
	var found []byte
	ok := false
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		k, v, good := dotenvLine(line)
		if good && k == key {
			secret.Wipe(found)
			found, ok = v, true
		} else {
			secret.Wipe(v)
		}
	}
	if !ok {
		return secret.Value{}, false
	}
	return secret.New(found), true
}

// dotenvLine parses one line; v is a fresh slice.
func dotenvLine(line []byte) (k string, v []byte, ok bool) {
	line = bytes.TrimRight(line, "\r")
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 || line[0] == '#' {
		return "", nil, false
	}
	if rest, found := bytes.CutPrefix(line, []byte("export")); found && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		line = bytes.TrimLeft(rest, " \t")
	}
	eq := bytes.IndexByte(line, '=')
	if eq <= 0 {
		return "", nil, false
	}
	name := string(bytes.TrimRight(line[:eq], " \t"))
	if !EnvName(name) {
		return "", nil, false
	}
	val := bytes.TrimLeft(line[eq+1:], " \t")
	switch {
	case len(val) > 0 && val[0] == '\'':
		end := bytes.IndexByte(val[1:], '\'')
		if end < 0 {
			return "", nil, false
		}
		return name, append([]byte(nil), val[1:1+end]...), true
	case len(val) > 0 && val[0] == '"':
		out := make([]byte, 0, len(val))
		for i := 1; i < len(val); i++ {
			c := val[i]
			switch {
			case c == '"':
				return name, out, true
			case c == '\\' && i+1 < len(val):
				i++
				switch val[i] {
				case 'n':
					out = append(out, '\n')
				case 'r':
					out = append(out, '\r')
				case 't':
					out = append(out, '\t')
				default:
					out = append(out, val[i])
				}
			default:
				out = append(out, c)
			}
		}
		secret.Wipe(out)
		return "", nil, false
	default:
		if i := bytes.Index(val, []byte(" #")); i >= 0 {
			val = val[:i]
		}
		if i := bytes.Index(val, []byte("\t#")); i >= 0 {
			val = val[:i]
		}
		return name, append([]byte(nil), bytes.TrimRight(val, " \t")...), true
	}
}
