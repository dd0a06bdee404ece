package sandbox

// exchangesA lists the exchange emulators defined in this file (in start
// order). Owned by one engineer: see exchanges_a.go / exchanges_b.go.
func exchangesA() []string { return nil }

// newExchangeA builds the emulator named name, reporting ok=false if this
// file does not define it.
func newExchangeA(name string, vs *venueServer, creds map[string]string) (emu emulator, ok bool, err error) {
	return nil, false, nil
}
