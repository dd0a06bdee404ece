package config

import (
	"errors"
	"fmt"
)

// ErrNotFound is wrapped by Load when the file does not exist.
var ErrNotFound = errors.New("config: file not found")

// Error is one problem in a configuration file. Parse and Load return all
// problems at once, joined with errors.Join; use errors.As on the elements
// (or Errors) to inspect them.
//
// Line and Column are 1-based; both are 0 for a file-level error (the file
// cannot be read, or is not one YAML document) and for errors returned by
// Config.Validate, which has no source. Key is the dotted path of the
// offending key, e.g. "venues.dmarket.timeouts.total", with list indexes in
// brackets ("admin.allowed_uids[1]"); "" for a file-level error.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string
	Msg    string
}

// Error formats the error as file:line:col: key: msg, omitting empty parts.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s = fmt.Sprintf("%s:%d:%d", s, e.Line, e.Column)
	}
	if s != "" {
		s += ": "
	}
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Msg
}

// Errors returns every *Error inside err (as built by Parse, Load or
// Validate), in order. It returns nil if err holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok { //nolint:errorlint // exact element of a join
			out = append(out, e)
			return
		}
		switch u := err.(type) { //nolint:errorlint // walking the join tree
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
