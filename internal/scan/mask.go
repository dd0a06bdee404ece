package scan

// Mask returns a preview of s that shows at most its first and last four
// characters and never more than a quarter of it: values shorter than eight
// characters are masked entirely. The masked middle has a fixed width so the
// preview does not reveal the value's length.
func Mask(s string) string {
	n := len(s)
	k := n / 8
	if k > 4 {
		k = 4
	}
	if k == 0 {
		return "****"
	}
	return s[:k] + "****" + s[n-k:]
}
