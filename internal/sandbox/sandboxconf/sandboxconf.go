// Package sandboxconf turns a running sandbox into keystile configuration:
// one venue per emulator (sandbox: true, plain HTTP to loopback, so only
// kst_test_ tokens reach it), each signing with a vault credential that
// holds the emulator's throwaway keys, and merges that venues block into
// an existing keystile.yaml without touching the rest of the file.
//
// Merge edits the file as text at positions the YAML parser reports:
// comments, ordering, quoting and every other key stay byte for byte. A
// venue id that already exists with other settings is refused (ErrExists)
// unless forced; one that already has exactly these settings is left as
// it is, so configuring again after a restart of the sandbox (same port
// base) changes nothing in the file.
package sandboxconf

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/keystile/keystile/internal/sandbox"
)

// Errors Merge returns.
var (
	// ErrExists: a venue id is already configured with other settings.
	ErrExists = errors.New("sandboxconf: venue already configured")
	// ErrLayout: the file cannot be edited safely (not YAML, several
	// documents, venues not a block mapping).
	ErrLayout = errors.New("sandboxconf: config file layout")
)

// CredentialPrefix starts the vault credential name of every sandbox venue.
const CredentialPrefix = "sandbox-"

// Venue is one emulator as a keystile venue.
type Venue struct {
	// ID is the venue id in keystile.yaml (the emulator's name) and the
	// gateway path prefix.
	ID string
	// Credential is the vault credential the venue signs with.
	Credential string
	// Fields are the emulator's credential fields (throwaway values).
	Fields map[string]string
	// settings is the YAML of the venue's mapping, indented by two spaces
	// per level, without the id line.
	settings string
}

// Venues returns the venues of a running sandbox in sandbox.AllVenues
// order. Emulators served over TLS are refused: their CA changes with
// every run, so a configuration could not outlive it.
func Venues(info sandbox.Info) ([]Venue, error) {
	var out []Venue
	for _, name := range sandbox.AllVenues() {
		vi, ok := info.Venues[name]
		if !ok {
			continue
		}
		if !strings.HasPrefix(vi.BaseURL, "http://") {
			return nil, fmt.Errorf("sandboxconf: %s is served at %s: only plain-HTTP emulators can be configured", name, vi.BaseURL)
		}
		v := Venue{ID: name, Credential: CredentialPrefix + name, Fields: vi.Credentials}
		var b strings.Builder
		typ := name
		if name == sandbox.VenueGeneric {
			typ = "generic"
		}
		fmt.Fprintf(&b, "type: %s\ncredential: %s\nbase_url: %s\nsandbox: true\n", typ, v.Credential, vi.BaseURL)
		if hosts := sandbox.SDKHosts(name); len(hosts) > 0 {
			// An unmodified SDK behind the forward proxy dials the real
			// host; its test token reaches this emulator.
			fmt.Fprintf(&b, "proxy_hosts: [%s]\n", strings.Join(hosts, ", "))
		}
		switch name {
		case sandbox.VenueBetfair:
			fmt.Fprintf(&b, "identity_url: %s\nlogin: login\n", vi.IdentityURL)
		case sandbox.VenueKraken:
			b.WriteString("tier: none\n")
		case sandbox.VenueGeneric:
			b.WriteString(genericSettings)
		}
		v.settings = b.String()
		out = append(out, v)
	}
	return out, nil
}

// genericSettings describe the generic emulator (an HMAC-signed betting
// API) to keystile's generic venue type.
const genericSettings = `auth:
  scheme: hmac
  key_field: api_key
  secret_field: secret
  hmac:
    template: "{timestamp}{method}{path}{query}{body}"
    algorithm: sha256
    encoding: hex
    timestamp_format: unix_ms
    key_header: X-API-KEY
    timestamp_header: X-TIMESTAMP
    signature_header: X-SIGNATURE
operations:
  - {method: GET, path: /api/v1/balance, op: account.read}
  - {method: GET, path: /api/v1/markets, op: market.read}
  - {method: GET, path: /api/v1/orders, op: order.read}
  - {method: POST, path: /api/v1/orders, op: order.place}
  - {method: DELETE, path: "/api/v1/orders/{id}", op: order.cancel}
`

// block renders the venue's entry, its id indented by indent spaces.
func (v Venue) block(indent int) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString(pad + v.ID + ":\n")
	for _, l := range strings.SplitAfter(v.settings, "\n") {
		if l != "" {
			b.WriteString(pad + "  " + l)
		}
	}
	return b.String()
}

// value is the venue's settings as decoded YAML, for comparison.
func (v Venue) value() (any, error) {
	var out any
	if err := yaml.Unmarshal([]byte(v.settings), &out); err != nil {
		return nil, fmt.Errorf("sandboxconf: %s settings: %w", v.ID, err)
	}
	return out, nil
}

// Action says what Merge did with a venue.
type Action string

// Actions.
const (
	Added     Action = "added"
	Unchanged Action = "unchanged"
	Replaced  Action = "replaced"
)

// Change is what Merge did with one venue.
type Change struct {
	ID     string `json:"id"`
	Action Action `json:"action"`
}

// Merge returns file with venues in its venues mapping (created at the end
// of the file if absent). A venue id already present with other settings
// is an error wrapping ErrExists naming every such id, unless force: then
// its entry is replaced where it stands. The rest of the file is kept
// byte for byte.
func Merge(file []byte, venues []Venue, force bool) ([]byte, []Change, error) {
	out, changes, err := merge(file, venues, force)
	if err != nil {
		return nil, nil, err
	}
	if err := check(file, out, venues); err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}

// check decodes the merged file: it must hold every venue with its
// settings and, where the original decodes, every other top-level key with
// its value. Text edits of odd YAML that break this are refused.
func check(file, out []byte, venues []Venue) error {
	var after map[string]any
	if err := yaml.Unmarshal(out, &after); err != nil {
		return fmt.Errorf("%w: the merged file does not decode: %w", ErrLayout, err)
	}
	vm, _ := after["venues"].(map[string]any)
	for _, v := range venues {
		want, err := v.value()
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(vm[v.ID], want) {
			return fmt.Errorf("%w: venues.%s could not be merged", ErrLayout, v.ID)
		}
	}
	var before map[string]any
	if yaml.Unmarshal(file, &before) == nil {
		for k, v := range before {
			if k != "venues" && !reflect.DeepEqual(after[k], v) {
				return fmt.Errorf("%w: merging would change %s", ErrLayout, k)
			}
		}
	}
	return nil
}

func merge(file []byte, venues []Venue, force bool) (out []byte, changes []Change, err error) {
	defer func() {
		// The YAML parser is third-party code; malformed input must not
		// take the process down.
		if r := recover(); r != nil {
			out, changes, err = nil, nil, fmt.Errorf("%w: invalid YAML (parser failure)", ErrLayout)
		}
	}()
	f, perr := parser.ParseBytes(file, parser.ParseComments)
	if perr != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrLayout, perr)
	}
	var bodies []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			if _, isComment := d.Body.(*ast.CommentGroupNode); !isComment {
				bodies = append(bodies, d.Body)
			}
		}
	}
	if len(bodies) > 1 {
		return nil, nil, fmt.Errorf("%w: more than one YAML document", ErrLayout)
	}
	var root []*ast.MappingValueNode
	if len(bodies) == 1 {
		if root, err = entries(bodies[0]); err != nil {
			return nil, nil, fmt.Errorf("%w: the file is not a YAML mapping", ErrLayout)
		}
	}
	if len(root) > 0 && root[0].Key.GetToken().Position.Column != 1 {
		return nil, nil, fmt.Errorf("%w: the top-level keys are indented", ErrLayout)
	}
	lines := splitLines(file)
	var venuesKey *ast.MappingValueNode
	for _, e := range root {
		if keyName(e) == "venues" {
			venuesKey = e
		}
	}
	if venuesKey == nil {
		var b bytes.Buffer
		b.Write(file)
		if len(file) > 0 && !bytes.HasSuffix(file, []byte("\n")) {
			b.WriteByte('\n')
		}
		b.WriteString("venues:\n")
		for _, v := range venues {
			b.WriteString(v.block(2))
			changes = append(changes, Change{v.ID, Added})
		}
		return b.Bytes(), changes, nil
	}

	keyLine := venuesKey.Key.GetToken().Position.Line // 1-based
	keyCol := venuesKey.Key.GetToken().Position.Column
	var existing []*ast.MappingValueNode
	indent := 2
	switch val := venuesKey.Value.(type) {
	case *ast.NullNode:
		if strings.TrimSpace(lineText(lines, keyLine)) != "venues:" {
			return nil, nil, fmt.Errorf("%w: line %d: write venues: on a line of its own", ErrLayout, keyLine)
		}
	case *ast.MappingNode:
		if val.IsFlowStyle {
			return nil, nil, fmt.Errorf("%w: line %d: venues is a flow mapping ({...}); write it as a block", ErrLayout, keyLine)
		}
		existing = val.Values
	case *ast.MappingValueNode:
		existing = []*ast.MappingValueNode{val}
	default:
		return nil, nil, fmt.Errorf("%w: line %d: venues is not a mapping", ErrLayout, keyLine)
	}
	if len(existing) > 0 {
		indent = existing[0].Key.GetToken().Position.Column - 1
		if existing[0].Key.GetToken().Position.Line <= keyLine {
			return nil, nil, fmt.Errorf("%w: line %d: venues is not a block mapping", ErrLayout, keyLine)
		}
	}
	blockEnd := contentEnd(lines, keyLine, keyCol-1, len(lines)) // last line of the venues block

	type replace struct {
		from, to int // 1-based line range
		v        Venue
	}
	var repl []replace
	var conflicts []string
	var adds []Venue
	for _, v := range venues {
		i := slices.IndexFunc(existing, func(e *ast.MappingValueNode) bool { return keyName(e) == v.ID })
		if i < 0 {
			adds = append(adds, v)
			changes = append(changes, Change{v.ID, Added})
			continue
		}
		from := existing[i].Key.GetToken().Position.Line
		limit := blockEnd
		if i+1 < len(existing) {
			limit = existing[i+1].Key.GetToken().Position.Line - 1
		}
		to := contentEnd(lines, from, indent, limit)
		same, err := sameSettings(lines, from, to, v)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case same:
			changes = append(changes, Change{v.ID, Unchanged})
		case force:
			repl = append(repl, replace{from, to, v})
			changes = append(changes, Change{v.ID, Replaced})
		default:
			conflicts = append(conflicts, v.ID)
		}
	}
	if len(conflicts) > 0 {
		return nil, nil, fmt.Errorf("%w with other settings: %s (pass --force to replace them)", ErrExists, strings.Join(conflicts, ", "))
	}
	// Edit from the bottom up so that earlier line numbers stay valid.
	var add strings.Builder
	for _, v := range adds {
		add.WriteString(v.block(indent))
	}
	lines = insertLines(lines, blockEnd, add.String())
	slices.SortFunc(repl, func(a, b replace) int { return b.from - a.from })
	for _, r := range repl {
		lines = append(lines[:r.from-1], lines[r.to:]...)
		lines = insertLines(lines, r.from-1, r.v.block(indent))
	}
	return []byte(strings.Join(lines, "")), changes, nil
}

// entries returns the key-value pairs of a mapping node.
func entries(n ast.Node) ([]*ast.MappingValueNode, error) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, nil
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, nil
	}
	return nil, errors.New("not a mapping")
}

func keyName(e *ast.MappingValueNode) string {
	if e == nil || e.Key == nil {
		return ""
	}
	return e.Key.GetToken().Value
}

// splitLines splits text after each newline (the last line may lack one).
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	ls := strings.SplitAfter(string(b), "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func lineText(lines []string, n int) string {
	if n < 1 || n > len(lines) {
		return ""
	}
	return strings.TrimRight(lines[n-1], "\r\n")
}

// contentEnd returns the last line (1-based, <= limit) of the block that
// starts at line start: the following lines indented more than col
// columns, or blank, or comments; trailing blank and comment lines are
// left to what follows.
func contentEnd(lines []string, start, col, limit int) int {
	end := start
	for n := start + 1; n <= limit && n <= len(lines); n++ {
		t := lineText(lines, n)
		trimmed := strings.TrimLeft(t, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if len(t)-len(trimmed) <= col {
			break
		}
		end = n
	}
	return end
}

// insertLines inserts text after line n (0: at the start). A last line
// without a newline gets one first.
func insertLines(lines []string, n int, text string) []string {
	if text == "" {
		return lines
	}
	if n > 0 && n <= len(lines) && !strings.HasSuffix(lines[n-1], "\n") {
		lines[n-1] += "\n"
	}
	return slices.Insert(lines, n, splitLines([]byte(text))...)
}

// sameSettings reports whether the entry on lines [from, to] holds exactly
// v's settings.
func sameSettings(lines []string, from, to int, v Venue) (bool, error) {
	var got map[string]any
	if err := yaml.Unmarshal([]byte(strings.Join(lines[from-1:to], "")), &got); err != nil {
		return false, fmt.Errorf("%w: venues.%s (lines %d-%d): %w", ErrLayout, v.ID, from, to, err)
	}
	want, err := v.value()
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(got[v.ID], want), nil
}
