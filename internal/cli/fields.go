package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/keystile/keystile/internal/secret"
)

// MaxFieldInput bounds what ParseFields reads.
const MaxFieldInput = 1 << 20

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ParseFields reads FIELD=VALUE lines: blank lines and lines starting with
// # are skipped, a trailing CR is dropped, the value is everything after the
// first '=' (not trimmed, not unquoted). Field names are lowercase
// identifiers; duplicates are errors. Errors name the line, never a value.
func ParseFields(r io.Reader) (map[string][]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFieldInput+1))
	if err != nil {
		return nil, fmt.Errorf("read fields: %w", err)
	}
	defer secret.Wipe(data)
	if len(data) > MaxFieldInput {
		return nil, fmt.Errorf("field input larger than %d bytes", MaxFieldInput)
	}
	out := map[string][]byte{}
	fail := func(err error) (map[string][]byte, error) {
		for _, v := range out {
			secret.Wipe(v)
		}
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxFieldInput)
	line := 0
	for sc.Scan() {
		line++
		l := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(l)) == 0 || bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			continue
		}
		name, val, ok := bytes.Cut(l, []byte("="))
		if !ok {
			return fail(fmt.Errorf("line %d: want FIELD=VALUE", line))
		}
		n := string(bytes.TrimSpace(name))
		if !fieldName.MatchString(n) {
			return fail(fmt.Errorf("line %d: invalid field name (lowercase letters, digits, _; up to 32)", line))
		}
		if _, dup := out[n]; dup {
			return fail(fmt.Errorf("line %d: field %q given twice", line, n))
		}
		if len(val) == 0 {
			return fail(fmt.Errorf("line %d: field %q has an empty value", line, n))
		}
		out[n] = append([]byte(nil), val...)
	}
	if err := sc.Err(); err != nil {
		return fail(fmt.Errorf("read fields: %w", err))
	}
	if len(out) == 0 {
		return nil, errors.New("no FIELD=VALUE lines on stdin")
	}
	return out, nil
}
