package scan

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrDiff wraps errors about diff text that cannot be read.
var ErrDiff = errors.New("scan: diff")

// ParseDiff reads the unified diffs of `git log -p -U0 --format="commit %H"`
// or `git diff -U0` and calls fn once per hunk that adds lines, with the
// commit, the file's new path and the added text (its lines joined, each
// with its newline unless git marked it "\ No newline at end of file"),
// starting at line startLine of the new file. Deleted files, binary files
// and removed lines yield nothing. Hunks are read by their line counts, so
// an added line that looks like a header ("+++ x", "+commit y") stays
// content. fn's error stops the parse and is returned.
func ParseDiff(r io.Reader, fn func(commit, path string, startLine int, added string) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		commit, path string
		add          strings.Builder
		start        int
		inHunk       bool // a hunk was opened and not flushed
		oldLeft      int  // lines of the hunk not yet read
		newLeft      int
		lastAdded    bool // the last content line read was an added line
		lineNo       int
	)
	flush := func() error {
		if inHunk && add.Len() > 0 && path != "" {
			if err := fn(commit, path, start, add.String()); err != nil {
				return err
			}
		}
		inHunk, oldLeft, newLeft, lastAdded = false, 0, 0, false
		add.Reset()
		return nil
	}
	for {
		line, err := br.ReadString('\n')
		if line == "" && err != nil {
			if errors.Is(err, io.EOF) {
				return flush()
			}
			return fmt.Errorf("%w: read: %w", ErrDiff, err)
		}
		lineNo++
		body := strings.TrimSuffix(line, "\n")
		if oldLeft > 0 || newLeft > 0 {
			switch {
			case strings.HasPrefix(body, "+") && newLeft > 0:
				add.WriteString(line[1:])
				newLeft--
				lastAdded = true
				continue
			case strings.HasPrefix(body, "-") && oldLeft > 0:
				oldLeft--
				lastAdded = false
				continue
			case strings.HasPrefix(body, " ") && oldLeft > 0 && newLeft > 0:
				oldLeft--
				newLeft--
				lastAdded = false
				continue
			case strings.HasPrefix(body, `\`):
				noNewline(&add, lastAdded)
				continue
			}
			return fmt.Errorf("%w: line %d: hunk ends early", ErrDiff, lineNo)
		}
		switch {
		case inHunk && strings.HasPrefix(body, `\`):
			noNewline(&add, lastAdded)
		case strings.HasPrefix(body, "@@ "):
			if err := flush(); err != nil {
				return err
			}
			o, s, n, ok := parseHunkHeader(body)
			if !ok {
				return fmt.Errorf("%w: line %d: malformed hunk header", ErrDiff, lineNo)
			}
			inHunk, oldLeft, start, newLeft = true, o, s, n
		case strings.HasPrefix(body, "commit "):
			if err := flush(); err != nil {
				return err
			}
			commit = strings.TrimSpace(strings.TrimPrefix(body, "commit "))
			if i := strings.IndexByte(commit, ' '); i >= 0 {
				commit = commit[:i]
			}
		case strings.HasPrefix(body, "diff "):
			if err := flush(); err != nil {
				return err
			}
			path = ""
		case strings.HasPrefix(body, "+++ "):
			if err := flush(); err != nil {
				return err
			}
			p, err := diffPath(body[4:])
			if err != nil {
				return fmt.Errorf("%w: line %d: %w", ErrDiff, lineNo, err)
			}
			path = p
		default:
			// Commit headers and messages, "---", "index", mode, rename
			// and "Binary files ... differ" lines carry nothing to scan.
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// noNewline removes the newline of the last added line.
func noNewline(add *strings.Builder, lastAdded bool) {
	if !lastAdded {
		return
	}
	if s := add.String(); strings.HasSuffix(s, "\n") {
		add.Reset()
		add.WriteString(strings.TrimSuffix(s, "\n"))
	}
}

// parseHunkHeader reads "@@ -a[,b] +c[,d] @@...": the old line count b,
// the new start c and the new line count d (counts default to 1).
func parseHunkHeader(h string) (oldN, newStart, newN int, ok bool) {
	rest, found := strings.CutPrefix(h, "@@ -")
	if !found {
		return 0, 0, 0, false
	}
	oldSpec, rest, found := strings.Cut(rest, " +")
	if !found {
		return 0, 0, 0, false
	}
	newSpec, _, found := strings.Cut(rest, " @@")
	if !found {
		return 0, 0, 0, false
	}
	_, oldN, ok1 := rangeSpec(oldSpec)
	newStart, newN, ok2 := rangeSpec(newSpec)
	return oldN, newStart, newN, ok1 && ok2
}

func rangeSpec(s string) (start, n int, ok bool) {
	a, b, hasN := strings.Cut(s, ",")
	start, err := strconv.Atoi(a)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	n = 1
	if hasN {
		if n, err = strconv.Atoi(b); err != nil || n < 0 {
			return 0, 0, false
		}
	}
	return start, n, true
}

// diffPath reads the path of a "+++ " line: "b/<path>" (a trailing tab,
// which git adds to names with spaces, removed), a C-quoted "\"b/...\"",
// or /dev/null (a deleted file: "").
func diffPath(s string) (string, error) {
	if s == "/dev/null" {
		return "", nil
	}
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		if err != nil {
			return "", errors.New("malformed quoted path")
		}
		s = u
	} else {
		s = strings.TrimSuffix(s, "\t")
	}
	p, ok := strings.CutPrefix(s, "b/")
	if !ok || p == "" {
		return "", errors.New("path without the b/ prefix")
	}
	return p, nil
}
