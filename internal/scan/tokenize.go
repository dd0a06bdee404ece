package scan

// isSpace reports the bytes that end a field: whitespace and other control
// characters. Secrets never contain them.
func isSpace(c byte) bool { return c <= ' ' || c == 0x7f }

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Candidates calls fn(start, end) for every substring line[start:end] that
// may be a secret of a wanted length: it contains no whitespace, wanted[end-start]
// is true, and both of its ends fall on a token boundary (the edge of a
// whitespace-separated field, or next to a character that is not a letter or
// digit). So `KEY="abc+/=="`, `key=abc&x=1` and `Bearer abc.def` all yield
// their value whatever punctuation the value itself holds. Lengths beyond
// len(wanted)-1 are never produced. Candidates does not retain line.
func Candidates(line []byte, wanted []bool, fn func(start, end int)) {
	maxLen := len(wanted) - 1
	if maxLen <= 0 {
		return
	}
	var bounds []int
	i := 0
	for i < len(line) {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		a := i
		for i < len(line) && !isSpace(line[i]) {
			i++
		}
		b := i
		if a == b {
			continue
		}
		bounds = bounds[:0]
		for p := a; p <= b; p++ {
			if p == a || p == b || !isAlnum(line[p-1]) || !isAlnum(line[p]) {
				bounds = append(bounds, p)
			}
		}
		for x, s := range bounds {
			for _, e := range bounds[x+1:] {
				n := e - s
				if n > maxLen {
					break
				}
				if wanted[n] {
					fn(s, e)
				}
			}
		}
	}
}
