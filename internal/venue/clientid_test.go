package venue_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/venue"
)

func exact(name string) func(string) bool { return func(k string) bool { return k == name } }

func TestSetJSONMember(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"append", `{"a":1}`, `{"a":1,"id":"X"}`},
		{"append keeps layout", "{\n  \"a\": [1, {\"id\": 2}]\n}\n", "{\n  \"a\": [1, {\"id\": 2}],\"id\":\"X\"\n}\n"},
		{"empty", `{}`, `{"id":"X"}`},
		{"empty with space", ` { } `, ` {"id":"X" } `},
		{"replace number", `{"id":12.5e1,"b":true}`, `{"id":"X","b":true}`},
		{"replace every copy", `{"id":"a","id":{"x":[1]},"c":null,"id":null}`, `{"id":"X","id":"X","c":null,"id":"X"}`},
		{"escaped name", `{"\u0069d":"a"}`, `{"\u0069d":"X"}`},
		{"nested untouched", `{"o":{"id":"a"}}`, `{"o":{"id":"a"},"id":"X"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := venue.SetJSONMember([]byte(tt.in), "id", "X", exact("id"))
			if err != nil || string(got) != tt.want {
				t.Fatalf("= %s, %v; want %s", got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{``, `[]`, `{"a":}`, `{"a":1} x`, `{"a":1}{}`, `"s"`, `{"a" 1}`, `{`} {
		if _, err := venue.SetJSONMember([]byte(bad), "id", "X", exact("id")); !errors.Is(err, venue.ErrNotJSONObject) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// FuzzSetJSONMember: on any object, the result is an object whose member
// reads back as the value, with every other member unchanged.
func FuzzSetJSONMember(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{}`, ` {"id":[1,2],"id":"x"} `, `{"x":{"id":1}}`, `{"a":"\u00e9","b":1e400}`, `[1]`, `{"a":1}x`} {
		f.Add(s, "ks-0123")
	}
	f.Fuzz(func(t *testing.T, body, value string) {
		got, err := venue.SetJSONMember([]byte(body), "id", value, exact("id"))
		var before map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &before) != nil || before == nil {
			if err == nil {
				var after map[string]json.RawMessage
				if json.Unmarshal(got, &after) != nil {
					t.Fatalf("accepted non-object %q", body)
				}
			}
			return
		}
		if err != nil {
			return // e.g. trailing data json.Unmarshal also refuses differently
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(got, &after); err != nil {
			t.Fatalf("result %q of %q is not an object: %v", got, body, err)
		}
		var v, want string
		wb, _ := json.Marshal(value) // invalid UTF-8 becomes U+FFFD, as in SetJSONMember
		_ = json.Unmarshal(wb, &want)
		if err := json.Unmarshal(after["id"], &v); err != nil || v != want {
			t.Fatalf("id = %s, want %q", after["id"], value)
		}
		delete(before, "id")
		delete(after, "id")
		if len(before) != len(after) {
			t.Fatalf("members %d -> %d", len(before), len(after))
		}
		for k, b := range before {
			if string(after[k]) != string(b) {
				t.Fatalf("member %q changed: %s -> %s", k, b, after[k])
			}
		}
	})
}

func TestFormParams(t *testing.T) {
	got, ok := venue.SetFormParam("a=1&%69d=x&b=2&id=y&&c", "id", "v w")
	if !ok || got != "a=1&id=v+w&b=2&c" {
		t.Fatalf("SetFormParam = %q %v", got, ok)
	}
	if got, ok := venue.SetFormParam("a=1&&", "id", "v"); ok || got != "a=1&&" {
		t.Fatalf("SetFormParam without the name = %q %v", got, ok)
	}
	if got := venue.DropFormParam("id=1&a=%zz&id&b", "id"); got != "a=%zz&b" {
		t.Fatalf("DropFormParam = %q", got)
	}
	if got := venue.DropFormParam("a=1&b=2", "id"); got != "a=1&b=2" {
		t.Fatalf("DropFormParam unchanged = %q", got)
	}
	if venue.HasFormParam("a=1&&", "id") || !venue.HasFormParam("a=1&i%64=", "id") {
		t.Fatal("HasFormParam")
	}
	if got := venue.AppendFormParam("", "id", "1"); got != "id=1" {
		t.Fatal(got)
	}
	if got := venue.AppendFormParam("a=1&", "id", "1"); got != "a=1&id=1" {
		t.Fatal(got)
	}
}

// FuzzFormParams: after SetFormParam or AppendFormParam, the name has
// exactly one value, the given one; other names keep their values.
func FuzzFormParams(f *testing.F) {
	f.Add("a=1&id=2&id=3", "v")
	f.Add("i%64=1&&b", "x y")
	f.Add("a=%zz", "")
	f.Fuzz(func(t *testing.T, raw, value string) {
		before, err := url.ParseQuery(raw)
		out, ok := venue.SetFormParam(raw, "id", value)
		if !ok {
			out = venue.AppendFormParam(venue.DropFormParam(raw, "id"), "id", value)
		}
		if err != nil {
			return
		}
		after, err := url.ParseQuery(out)
		if err != nil {
			t.Fatalf("%q -> %q: %v", raw, out, err)
		}
		if len(after["id"]) != 1 || after.Get("id") != value {
			t.Fatalf("%q -> %q: id %q", raw, out, after["id"])
		}
		delete(before, "id")
		delete(after, "id")
		if before.Encode() != after.Encode() {
			t.Fatalf("%q -> %q: others changed", raw, out)
		}
	})
}

func TestIDFormats(t *testing.T) {
	s := [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if got := venue.UUID(s); got != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Fatal(got)
	}
	if got := venue.UUID([16]byte{}); got != "00000000-0000-4000-8000-000000000000" {
		t.Fatal(got)
	}
	if got := venue.HexID([16]byte{1}); got != "01000000000000000000000000000000" {
		t.Fatal(got)
	}
}

func TestLookupOutcome(t *testing.T) {
	undecided := errors.New("x")
	tests := []struct {
		name  string
		in    []venue.LookupResult
		id    string
		found bool
		err   error
	}{
		{"none", nil, "", false, venue.ErrLookupUndecided},
		{"all absent", []venue.LookupResult{{}, {}}, "", false, nil},
		{"found after an error", []venue.LookupResult{{Err: undecided}, {VenueOrderID: "7", Found: true}}, "7", true, nil},
		{"absent and undecided", []venue.LookupResult{{}, {Err: undecided}}, "", false, undecided},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, found, err := venue.LookupOutcome(tt.in)
			if id != tt.id || found != tt.found || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("= %q %v %v", id, found, err)
			}
		})
	}
}

// FuzzJSONArray: JSONArray's elements are exactly body's bytes at their
// offsets and each is valid JSON; replacing one with itself gives body
// back; anything else than one array is an error, never a panic.
func FuzzJSONArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1, "a" ,{"b":[2]}]`, ` [ {"x":1} ] `, `[1,]`, `[1] 2`, `{}`, `[[[]]]`, `["\u0022]"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		elems, offsets, err := venue.JSONArray([]byte(body))
		if err != nil {
			if elems != nil || offsets != nil {
				t.Fatal("elements returned with an error")
			}
			return
		}
		if !json.Valid([]byte(body)) || len(elems) != len(offsets) || len(elems) > venue.MaxBatch {
			t.Fatalf("accepted %q: %d elements, %d offsets", body, len(elems), len(offsets))
		}
		for i, e := range elems {
			if !json.Valid(e) || body[offsets[i]:offsets[i]+len(e)] != string(e) {
				t.Fatalf("element %d %q is not at offset %d of %q", i, e, offsets[i], body)
			}
			same, err := venue.ReplaceJSONElement([]byte(body), offsets[i], e, e)
			if err != nil || string(same) != body {
				t.Fatalf("replacing element %d with itself: %q, %v", i, same, err)
			}
		}
	})
}

func TestJSONArrayLimits(t *testing.T) {
	big := "[" + strings.Repeat("1,", venue.MaxBatch) + "1]"
	if _, _, err := venue.JSONArray([]byte(big)); !errors.Is(err, venue.ErrNotJSONArray) {
		t.Fatalf("%d elements: %v", venue.MaxBatch+1, err)
	}
	if _, err := venue.ReplaceJSONElement([]byte(`[1]`), 1, []byte("2"), []byte("3")); err == nil {
		t.Fatal("replaced bytes that were not the element")
	}
}
