package runexec

import (
	"net/url"
	"slices"
	"strings"
)

// credentialWords are the name fragments that make a variable look like a
// credential: any `_`-separated segment of the (uppercased) name that
// contains one of them. PASS covers PASSWORD, PASSWD and PASSPHRASE; CRED
// covers CREDENTIAL(S); AUTH covers AUTHORIZATION, OAUTH, XAUTHORITY and
// SSH_AUTH_SOCK (a handle on the user's SSH keys).
var credentialWords = []string{"KEY", "SECRET", "TOKEN", "PASS", "CRED", "AUTH", "PRIVATE", "COOKIE"}

// harmlessSegments contain a credential word without being one: keystile's
// own prefix (KEYSTILE_URL, KEYSTILE_DATA_DIR, KEYSTILE_CONFIG; its
// master-key variables are stripped by name) and git's author variables.
var harmlessSegments = []string{"KEYSTILE", "AUTHOR", "AUTHORS"}

// venueFieldSuffixes are venue credential field names (uppercased) that no
// credential word matches; a variable ending in _<FIELD> is a venue
// credential (BETFAIR_USERNAME, STAPI_CLIENT_ID, BETFAIR_CLIENT_CERT).
var venueFieldSuffixes = []string{"USERNAME", "CLIENT_ID", "CLIENT_CERT", "KEY_NAME"}

// LooksSecret reports whether a parent variable looks like a credential and
// is therefore not passed to a child by default:
//
//   - keystile's master-key variables (see Stripped), always;
//   - a name with a `_`-separated segment containing KEY, SECRET, TOKEN,
//     PASS, CRED, AUTH, PRIVATE or COOKIE (case-insensitive; the segments
//     KEYSTILE, AUTHOR and AUTHORS do not count);
//   - a name ending in _USERNAME, _CLIENT_ID, _CLIENT_CERT or _KEY_NAME
//     (venue credential fields the words above miss);
//   - a value that starts with kst_ (a keystile token);
//   - a value that is a URL with a password (scheme://user:pass@host).
func LooksSecret(name, value string) bool {
	if Stripped(name) {
		return true
	}
	up := strings.ToUpper(name)
	for seg := range strings.SplitSeq(up, "_") {
		if seg == "" || slices.Contains(harmlessSegments, seg) {
			continue
		}
		for _, w := range credentialWords {
			if strings.Contains(seg, w) {
				return true
			}
		}
	}
	for _, s := range venueFieldSuffixes {
		if strings.HasSuffix(up, "_"+s) {
			return true
		}
	}
	if strings.HasPrefix(value, "kst_") {
		return true
	}
	return urlWithPassword(value)
}

func urlWithPassword(v string) bool {
	i := strings.Index(v, "://")
	if i <= 0 || !strings.Contains(v[i:], "@") {
		return false
	}
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || u.User == nil {
		return false
	}
	_, has := u.User.Password()
	return has
}

// EnvPolicy decides which of the parent's variables a child gets.
type EnvPolicy struct {
	// Keep are variables passed even though they look like credentials.
	// The master-key variables (Stripped) are never passed.
	Keep []string
}

// ChildEnv builds a child's environment: parent minus the variables that
// look like credentials (LooksSecret; those in Keep excepted) and minus
// every name in set, then set, in order. It also returns the names it
// stripped (never values), sorted. The values in set are secret and are
// copied into the returned strings, as exec needs them.
func (p EnvPolicy) ChildEnv(parent []string, set []Var) (env, stripped []string) {
	drop := map[string]bool{}
	for _, v := range set {
		drop[v.Name] = true
	}
	env = make([]string, 0, len(parent)+len(set))
	for _, kv := range parent {
		name, value, _ := strings.Cut(kv, "=")
		if name == "" || drop[name] {
			continue
		}
		if Stripped(name) || (LooksSecret(name, value) && !slices.Contains(p.Keep, name)) {
			if !slices.Contains(stripped, name) {
				stripped = append(stripped, name)
			}
			continue
		}
		env = append(env, kv)
	}
	for _, v := range set {
		env = append(env, v.Name+"="+string(v.Value.Reveal()))
	}
	slices.Sort(stripped)
	return env, stripped
}
