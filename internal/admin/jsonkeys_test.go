package admin

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/vault"
)

var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// JSONKeyErrors walks a type as encoding/json would marshal it and returns
// every object key that is not snake_case (as "Type.Field: key").
func JSONKeyErrors(t reflect.Type) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, at string)
	walk = func(t reflect.Type, at string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			t = t.Elem()
		}
		if t.Kind() == reflect.Map {
			walk(t.Elem(), at+"[]")
			return
		}
		if t.Kind() != reflect.Struct || seen[t] || t == reflect.TypeFor[time.Time]() {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				walk(f.Type, at)
				continue
			}
			if name == "" {
				name = f.Name
			}
			if !snakeKey.MatchString(name) {
				out = append(out, at+"."+f.Name+": "+name)
			}
			walk(f.Type, at+"."+name)
		}
	}
	walk(t, t.String())
	return out
}

// TestJSONKeysSnakeCase: every request and answer type of the admin API
// marshals to snake_case keys only.
func TestJSONKeysSnakeCase(t *testing.T) {
	for _, v := range []any{
		Status{}, TokenInfo{}, MintedToken{}, CreateTokenRequest{}, RotateTokenRequest{},
		SetSecretRequest{}, RevokeSecretRequest{}, OAuthLoginRequest{}, OAuthLoginEvent{}, ErrorBody{},
		vault.Info{}, vault.RekeyResult{},
		PanicRequest{}, PanicResult{}, ClearRequest{}, ClearResult{}, KillSwitchStatus{}, DetectStatus{}, detect.ProfileView{},
	} {
		typ := reflect.TypeOf(v)
		t.Run(typ.String(), func(t *testing.T) {
			for _, e := range JSONKeyErrors(typ) {
				t.Errorf("not snake_case: %s", e)
			}
		})
	}
}

// TestJSONKeyErrorsCatches: the walk sees through pointers, slices, maps
// and embedded structs, and reports untagged and camelCase keys.
func TestJSONKeyErrorsCatches(t *testing.T) {
	type inner struct {
		OK  string `json:"ok_key"`
		Bad string `json:"badKey"`
	}
	type Emb struct{ Untagged int }
	type outer struct {
		Emb
		In  []*inner          `json:"in"`
		M   map[string]inner  `json:"m"`
		Ign string            `json:"-"`
		X   *struct{ Y bool } `json:"x,omitempty"`
	}
	got := JSONKeyErrors(reflect.TypeFor[outer]())
	want := []string{"admin.outer.Untagged: Untagged", "admin.outer.in.Bad: badKey", "admin.outer.x.Y: Y"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q (a type is reported once)", got, want)
	}
}
