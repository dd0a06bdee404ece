package sandbox_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
)

// startAtFreeBase starts venues on a port base whose ports are free,
// trying a few random bases.
func startAtFreeBase(t *testing.T, venues []string) (*sandbox.Server, int) {
	t.Helper()
	for range 20 {
		base := 20000 + rand.IntN(30000) // #nosec G404 -- test port choice
		s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: venues, PortBase: base})
		if errors.Is(err, sandbox.ErrPortInUse) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, base
	}
	t.Fatal("no free port base found")
	return nil, 0
}

func TestPortBase(t *testing.T) {
	s, base := startAtFreeBase(t, nil)
	for i, v := range sandbox.AllVenues() {
		u, err := url.Parse(s.Info().Venues[v].BaseURL)
		if err != nil {
			t.Fatal(err)
		}
		if u.Port() != strconv.Itoa(base+i) || sandbox.Port(base, v) != base+i {
			t.Errorf("%s on %s, want port %d", v, u.Host, base+i)
		}
	}
	if sandbox.Port(base, "nope") != 0 {
		t.Error("Port of an unknown venue")
	}

	t.Run("a subset keeps its ports", func(t *testing.T) {
		s2, base2 := startAtFreeBase(t, []string{sandbox.VenueKraken})
		if want := "127.0.0.1:" + strconv.Itoa(base2+6); !strings.HasSuffix(s2.Info().Venues[sandbox.VenueKraken].BaseURL, want) {
			t.Errorf("kraken at %s, want %s", s2.Info().Venues[sandbox.VenueKraken].BaseURL, want)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		_, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueOKX}, PortBase: base})
		if !errors.Is(err, sandbox.ErrPortInUse) || !strings.Contains(err.Error(), "okx needs 127.0.0.1:"+strconv.Itoa(base+7)) {
			t.Fatalf("err = %v", err)
		}
	})
	for _, b := range []int{-1, sandbox.MaxPortBase() + 1, 70000} {
		if _, err := sandbox.Start(context.Background(), sandbox.Options{PortBase: b}); !errors.Is(err, sandbox.ErrBadPortBase) {
			t.Errorf("base %d: err = %v", b, err)
		}
	}
}
