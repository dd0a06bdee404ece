package config

// Suggest returns the candidate closest to s (edit distance at most 2, the
// same rule as unknown config keys), or "" if none is close: the "did you
// mean" of error messages.
func Suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD && c != s {
			best, bestD = c, d
		}
	}
	return best
}
