package venue_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/venue"
)

// fields is a plain venue.Credential.
type fields map[string]secret.Value

func (f fields) Field(name string) (secret.Value, error) {
	v, ok := f[name]
	if !ok {
		return secret.Value{}, errors.New("no field " + name)
	}
	return v, nil
}

// deriving keeps derived values, as *vault.Credential does.
type deriving struct {
	fields
	mu      sync.Mutex
	kept    map[string]secret.Value
	derives int
}

func (d *deriving) Derived(name string, fn func() (secret.Value, error)) (secret.Value, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.kept[name]; ok {
		return v, nil
	}
	v, err := fn()
	if err != nil {
		return v, err
	}
	d.derives++
	d.kept[name] = v
	return v, nil
}

// TestSignEd25519: the same signature as sign.Ed25519 (RFC 8032 test 1),
// with the key expanded once when the credential keeps derived values.
func TestSignEd25519(t *testing.T) {
	seed := "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	msg := []byte("POST/exchange/v1/offers/create{}1700000000")
	want, err := sign.Ed25519(secret.FromString(seed), msg)
	if err != nil {
		t.Fatal(err)
	}
	plain := fields{"secret_key": secret.FromString(seed)}
	keeping := &deriving{fields: fields{"secret_key": secret.FromString(seed)}, kept: map[string]secret.Value{}}
	for name, c := range map[string]venue.Credential{"plain": plain, "deriver": keeping} {
		t.Run(name, func(t *testing.T) {
			for range 3 {
				got, err := venue.SignEd25519(c, "secret_key", msg)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("sig %s, %v; want %s", hex.EncodeToString(got), err, hex.EncodeToString(want))
				}
			}
		})
	}
	if keeping.derives != 1 {
		t.Fatalf("expanded %d times, want once", keeping.derives)
	}
	if _, err := venue.SignEd25519(plain, "missing", msg); err == nil {
		t.Fatal("missing field: want error")
	}
	bad := &deriving{fields: fields{"secret_key": secret.FromString("short")}, kept: map[string]secret.Value{}}
	if _, err := venue.SignEd25519(bad, "secret_key", msg); !errors.Is(err, sign.ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
}
