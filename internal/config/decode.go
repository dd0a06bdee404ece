package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Load reads and parses the file at path. A missing file is reported as an
// error wrapping ErrNotFound that names the path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator chooses the config path
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (create one with `keystile init`, or pass --config)", ErrNotFound, path)
		}
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses data as keystile.yaml; name is used as the file name in
// errors. It starts from Default, overlays the file, fills per-type and
// per-scheme defaults and validates the result. On failure it returns nil
// and every problem found, joined (see Error and Errors). A YAML null
// (`key:` with no value) leaves the default in place.
func Parse(name string, data []byte) (cfg *Config, err error) {
	d := &decoder{file: name, pos: map[string]position{}, anchors: map[string]ast.Node{}}
	defer func() {
		// The YAML parser is third-party code fed untrusted bytes: never
		// let a bug in it take the process down.
		if r := recover(); r != nil {
			cfg, err = nil, &Error{File: name, Msg: "invalid YAML (parser failure)"}
		}
	}()
	f, perr := parser.ParseBytes(data, 0)
	if perr != nil {
		return nil, d.syntaxError(perr)
	}
	c := Default()
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc)
		}
	}
	switch {
	case len(docs) > 1:
		return nil, &Error{File: name, Msg: "more than one YAML document"}
	case len(docs) == 1:
		d.root = docs[0].Body
		ast.Walk(anchorCollector(d.anchors), d.root)
		d.decode(d.root, reflect.ValueOf(c).Elem(), "", nil)
	}
	decodeErrs := d.errs
	applyDefaults(c)
	// Semantic checks run even after decoding errors, so that one pass
	// reports everything; checks on keys that already failed to decode
	// (or their parents and children) are dropped as noise.
	for _, e := range validate(c, d) {
		if !related(e.Key, decodeErrs) {
			d.errs = append(d.errs, e)
		}
	}
	if len(d.errs) > 0 {
		return nil, d.join()
	}
	if len(d.pos) > 0 {
		c.src = &source{file: name, pos: make(map[string][2]int, len(d.pos))}
		for k, p := range d.pos {
			c.src.pos[k] = [2]int{p.line, p.col}
		}
		if d.root != nil {
			if tk := d.root.GetToken(); tk != nil {
				c.src.root = [2]int{tk.Position.Line, tk.Position.Column}
			}
		}
	}
	return c, nil
}

// source is where a parsed Config's keys were (see Locate). The yaml tags
// keep the schema checks (every field tagged) content; the decoder never
// fills unexported fields.
type source struct {
	file string            `yaml:"-"`
	pos  map[string][2]int `yaml:"-"` // key -> line, column
	root [2]int            `yaml:"-"`
}

// Locate reports where key (a dotted path such as
// "policies.scalper.max_notional[1]") was written in the file Parse read,
// or where its nearest written ancestor was. For a Config not made by
// Parse (or from an empty file) it returns "", 0, 0; for a key with no
// written ancestor, the file and the document's first position.
func (c *Config) Locate(key string) (file string, line, col int) {
	if c == nil || c.src == nil {
		return "", 0, 0
	}
	for k := key; ; {
		if p, ok := c.src.pos[k]; ok {
			return c.src.file, p[0], p[1]
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return c.src.file, c.src.root[0], c.src.root[1]
}

// related reports whether key is, or is inside, a key that failed to decode.
func related(key string, errs []*Error) bool {
	under := func(a, b string) bool { // a is b or inside b
		return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
	}
	for _, e := range errs {
		if under(key, e.Key) {
			return true
		}
	}
	return false
}

type position struct{ line, col int }

type decoder struct {
	file    string
	root    ast.Node
	pos     map[string]position
	anchors map[string]ast.Node
	errs    []*Error
}

func (d *decoder) join() error {
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i], d.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// tokenError is implemented by goccy's error types.
type tokenError interface {
	GetMessage() string
	GetToken() *token.Token
}

func (d *decoder) syntaxError(err error) error {
	var te tokenError
	if errors.As(err, &te) {
		e := &Error{File: d.file, Msg: "invalid YAML: " + te.GetMessage()}
		if tk := te.GetToken(); tk != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
		return e
	}
	return &Error{File: d.file, Msg: "invalid YAML: " + err.Error()}
}

// at reports where key (or its nearest present ancestor) is, for
// validation errors. It falls back to the document root.
func (d *decoder) at(key string) (int, int) {
	for k := key; ; {
		if p, ok := d.pos[k]; ok {
			return p.line, p.col
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	if d.root != nil {
		if tk := d.root.GetToken(); tk != nil {
			return tk.Position.Line, tk.Position.Column
		}
	}
	return 0, 0
}

func (d *decoder) present(key string) bool {
	_, ok := d.pos[key]
	return ok
}

func (d *decoder) errorf(tk *token.Token, key, format string, args ...any) {
	e := &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if tk != nil {
		e.Line, e.Column = tk.Position.Line, tk.Position.Column
	}
	if e.Line == 0 {
		e.Line, e.Column = d.at(key)
	}
	d.errs = append(d.errs, e)
}

type anchorCollector map[string]ast.Node

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		a[an.Name.String()] = an.Value
	}
	return a
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	amountsType  = reflect.TypeFor[Amounts]()
)

// resolve strips anchors and tags and follows aliases.
func (d *decoder) resolve(n ast.Node, key string, keyTok *token.Token) ast.Node {
	for i := 0; i < 64 && n != nil; i++ {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil {
				name = v.Value.String()
			}
			target, ok := d.anchors[name]
			if !ok {
				d.errorf(tokenOf(v, keyTok), key, "unknown alias *%s", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	if n != nil {
		d.errorf(tokenOf(n, keyTok), key, "too many nested aliases or tags")
	}
	return nil
}

func tokenOf(n ast.Node, fallback *token.Token) *token.Token {
	if fallback != nil {
		return fallback
	}
	if n != nil {
		return n.GetToken()
	}
	return nil
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return "a " + strings.ToLower(n.Type().String())
}

func scalarText(n ast.Node) string {
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

// decode stores node n into rv. keyTok is the token of the key that holds
// n (nil for the root and list elements); errors point at it.
func (d *decoder) decode(n ast.Node, rv reflect.Value, path string, keyTok *token.Token) {
	n = d.resolve(n, path, keyTok)
	if n == nil {
		return
	}
	if _, ok := n.(*ast.NullNode); ok {
		return // null keeps the default
	}
	tk := tokenOf(n, keyTok)
	if rv.Type() == durationType {
		s, ok := stringValue(n)
		if !ok {
			d.errorf(tk, path, "must be a duration string like \"5s\", got %s", kindName(n))
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.errorf(tk, path, "invalid duration %q (use Go syntax like \"500ms\", \"5s\", \"24h\")", s)
			return
		}
		rv.SetInt(int64(dur))
		return
	}
	switch rv.Kind() {
	case reflect.String:
		s, ok := stringValue(n)
		if !ok {
			if isScalar(n) {
				d.errorf(tk, path, "must be a string, got %s (quote it: \"%s\")", kindName(n), scalarText(n))
			} else {
				d.errorf(tk, path, "must be a string, got %s", kindName(n))
			}
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.errorf(tk, path, "must be true or false, got %s", kindName(n))
			return
		}
		rv.SetBool(b.Value)
	case reflect.Int, reflect.Int64:
		in, ok := n.(*ast.IntegerNode)
		if !ok {
			d.errorf(tk, path, "must be an integer, got %s", kindName(n))
			return
		}
		var v int64
		switch x := in.Value.(type) {
		case int64:
			v = x
		case uint64:
			if x > 1<<63-1 {
				d.errorf(tk, path, "integer %s out of range", scalarText(n))
				return
			}
			v = int64(x)
		default:
			d.errorf(tk, path, "must be an integer")
			return
		}
		if rv.OverflowInt(v) {
			d.errorf(tk, path, "integer %d out of range", v)
			return
		}
		rv.SetInt(v)
	case reflect.Float64:
		var f float64
		switch x := n.(type) {
		case *ast.FloatNode:
			f = x.Value
		case *ast.IntegerNode:
			switch v := x.Value.(type) {
			case int64:
				f = float64(v)
			case uint64:
				f = float64(v)
			}
		default:
			d.errorf(tk, path, "must be a number, got %s", kindName(n))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(tk, path, "must be a finite number")
			return
		}
		rv.SetFloat(f)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if s, isStr := stringValue(n); !ok && isStr && rv.Type() == amountsType {
			// Amounts: one string stands for a list of one.
			rv.Set(reflect.ValueOf(Amounts{s}))
			return
		}
		if !ok {
			d.errorf(tk, path, "must be a list, got %s", kindName(n))
			return
		}
		out := reflect.MakeSlice(rv.Type(), 0, len(seq.Values))
		for i, en := range seq.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			if etk := en.GetToken(); etk != nil {
				d.pos[p] = position{etk.Position.Line, etk.Position.Column}
			}
			ev := reflect.New(rv.Type().Elem()).Elem()
			d.decode(en, ev, p, nil)
			out = reflect.Append(out, ev)
		}
		rv.Set(out)
	case reflect.Pointer:
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		d.decode(n, rv.Elem(), path, keyTok)
	case reflect.Struct:
		d.mapping(n, tk, path, func(key string, ktk *token.Token, val ast.Node) {
			f, ok := fieldByTag(rv, key)
			if !ok {
				d.errorf(ktk, join(path, key), "%s", unknownKeyMsg(key, rv.Type()))
				return
			}
			d.decode(val, f, join(path, key), ktk)
		})
	case reflect.Map:
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
		d.mapping(n, tk, path, func(key string, ktk *token.Token, val ast.Node) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			if rv.Type().Elem() == reflect.TypeFor[Venue]() {
				ev.Set(reflect.ValueOf(DefaultVenue()))
			}
			d.decode(val, ev, join(path, key), ktk)
			rv.SetMapIndex(reflect.ValueOf(key), ev)
		})
	default:
		d.errorf(tk, path, "unsupported field type %s", rv.Type())
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isScalar(n ast.Node) bool {
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return true
	}
	return false
}

func stringValue(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value, true
		}
		return "", true
	}
	return "", false
}

// mapping calls fn for each entry of mapping node n, rejecting non-string
// keys, merge keys and duplicates.
func (d *decoder) mapping(n ast.Node, tk *token.Token, path string, fn func(key string, keyTok *token.Token, val ast.Node)) {
	var entries []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		entries = m.Values
	case *ast.MappingValueNode:
		entries = []*ast.MappingValueNode{m}
	default:
		d.errorf(tk, path, "must be a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e == nil || e.Key == nil {
			continue
		}
		ktk := e.Key.GetToken()
		var key string
		switch k := e.Key.(type) {
		case *ast.StringNode:
			key = k.Value
		case *ast.MergeKeyNode:
			d.errorf(ktk, path, "merge keys (<<) are not supported")
			continue
		default:
			d.errorf(ktk, path, "keys must be plain strings")
			continue
		}
		p := join(path, key)
		if seen[key] {
			d.errorf(ktk, p, "duplicate key %q", key)
			continue
		}
		seen[key] = true
		if ktk != nil {
			d.pos[p] = position{ktk.Position.Line, ktk.Position.Column}
		}
		fn(key, ktk, e.Value)
	}
}

func fieldByTag(rv reflect.Value, key string) (reflect.Value, bool) {
	t := rv.Type()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && tagName(f) == key {
			return rv.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func unknownKeyMsg(key string, t reflect.Type) string {
	best, bestD := "", 3
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		name := tagName(t.Field(i))
		if dist := editDistance(key, name); dist < bestD {
			best, bestD = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("unknown key %s", strconv.Quote(key))
}

// editDistance is the Levenshtein distance, capped for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
