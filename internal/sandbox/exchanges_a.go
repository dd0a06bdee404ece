package sandbox

// Exchange venues emulated by this file's owner.
const (
	VenueBinance = "binance"
	VenueKraken  = "kraken"
)

// exchangesA lists the exchange emulators defined in this file (in start
// order). Owned by one engineer: see exchanges_a.go / exchanges_b.go.
func exchangesA() []string { return []string{VenueBinance, VenueKraken} }

// newExchangeA builds the emulator named name, reporting ok=false if this
// file does not define it.
func newExchangeA(name string, vs *venueServer, creds map[string]string) (emu emulator, ok bool, err error) {
	switch name {
	case VenueBinance:
		b, err := newBinance(vs, creds)
		return b, true, err
	case VenueKraken:
		k, err := newKraken(vs, creds)
		return k, true, err
	}
	return nil, false, nil
}
